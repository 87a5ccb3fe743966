"""Man pages and bash completion: generated parts are current, pages render without
warnings and document every setting, verb, option and D-Bus member; completion completes."""

from __future__ import annotations

import os
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pxed import cli, daemon
from pxed.config import SETTINGS
from tests.conftest import REPO, need_tool

MAN = REPO / "man"
PAGES = ("pxectl.1", "pxed.8", "pxed.conf.5")


def rendered(page: str) -> str:
    r = subprocess.run(["groff", "-man", "-Tutf8", "-P-cbou", str(MAN / page)], capture_output=True, text=True,
                       check=True, env={**os.environ, "GROFF_NO_SGR": "1"})
    return r.stdout.replace("\u2010", "-").replace("\u2212", "-")


def test_pxed_conf_5_is_generated_from_the_settings_table() -> None:
    r = subprocess.run([str(REPO / "tools" / "gen-man-conf"), "--check"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    text = (MAN / "pxed.conf.5").read_text()
    for s in SETTINGS:
        assert f".BI {s.key}= value\n" in text, s.key
    sections = re.findall(r"^\.SS \[(\w+)\]$", text, re.M)
    assert sections == list(dict.fromkeys(s.section for s in SETTINGS))


@pytest.mark.parametrize("page", PAGES)
def test_pages_render_without_warnings(page: str) -> None:
    need_tool("groff")
    r = subprocess.run(["groff", "-man", "-ww", "-z", str(MAN / page)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == "", r.stderr
    assert "NAME" in rendered(page) and "SEE ALSO" in rendered(page)


def _options(parser: object) -> set[str]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    out: set[str] = set()
    for action in parser._actions:
        out.update(o for o in action.option_strings if o.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                out |= _options(sub)
    return out


def test_pxectl_1_documents_every_verb_and_option() -> None:
    need_tool("groff")
    text = rendered("pxectl.1")
    for verb in cli.Verb:
        assert re.search(rf"^       {verb.value}\b", text, re.M), verb
    for opt in _options(cli.build_parser()):
        assert opt in text, opt
    for code in ("64", "65", "66", "69", "70", "73", "77", "130"):
        assert re.search(rf"^       {code}\s", text, re.M), code


def test_pxed_8_documents_options_and_the_whole_d_bus_api() -> None:
    need_tool("groff")
    text = rendered("pxed.8")
    for opt in _options(daemon.build_parser()):
        assert opt in text, opt
    for xml in ("org.pxed.Pxed1.Manager.xml", "org.pxed.Pxed1.Job.xml"):
        root = ET.parse(REPO / "packaging" / "dbus" / xml).getroot()
        for kind in ("method", "property", "signal"):
            for el in root.iter(kind):
                assert re.search(rf"\b{el.get('name')}\b", text), (xml, kind, el.get("name"))
    for action in ("org.pxed.pxed1.import", "org.pxed.pxed1.remove", "org.pxed.pxed1.reload", "pxed-admin"):
        assert action in text


def complete(line: str, tmp_path: Path) -> list[str]:
    """What bash completion offers for ``line`` (cursor at the end)."""
    need_tool("/usr/share/bash-completion/bash_completion")
    fake = tmp_path / "bin"
    fake.mkdir(exist_ok=True)
    stub = fake / "pxectl"  # stands in for the daemon's answer to `pxectl list -q`
    stub.write_text('#!/bin/sh\ncase "$*" in *"list -q"*) printf "alpha\\nbeta-2\\n" ;; esac\n')
    stub.chmod(0o755)
    (tmp_path / "disk.iso").touch()
    (tmp_path / "notes.txt").touch()
    script = f"""
source /usr/share/bash-completion/bash_completion
source {REPO}/etc/bash-completion/pxectl
COMP_LINE={line!r}
COMP_POINT=${{#COMP_LINE}}
read -ra COMP_WORDS <<< "$COMP_LINE"
[[ "$COMP_LINE" == *" " ]] && COMP_WORDS+=("")
COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))
_pxectl
printf '%s\\n' "${{COMPREPLY[@]}}"
"""
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=tmp_path,
                       env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    assert r.returncode == 0, r.stderr
    return sorted(w for w in r.stdout.split("\n") if w)


def test_bash_completion(tmp_path: Path) -> None:
    assert complete("pxectl ", tmp_path) == sorted(v.value for v in cli.Verb)
    assert complete("pxectl re", tmp_path) == ["reload", "remove"]
    assert complete("pxectl --j", tmp_path) == ["--json"]
    assert complete("pxectl show ", tmp_path) == ["alpha", "beta-2"]
    assert complete("pxectl --json remove b", tmp_path) == ["beta-2"]
    assert complete("pxectl add --n", tmp_path) == ["--name", "--no-memdisk"]
    assert complete("pxectl add ", tmp_path) == ["bin", "disk.iso"]  # ISOs and directories
    assert complete("pxectl list -", tmp_path) == ["--help", "--json", "--quiet", "-q"]
