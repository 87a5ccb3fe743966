"""`make install` into a DESTDIR, and the shipped default configuration."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pxed.config import SETTINGS, load_config
from tests.conftest import REPO, need_tool


def test_default_config_is_generated_from_settings_and_parses() -> None:
    shipped = REPO / "etc/pxed/pxed.conf"
    r = subprocess.run([sys.executable, str(REPO / "tools/gen-default-conf"), "/dev/stdout"], capture_output=True,
                       text=True, check=True)
    assert r.stdout == shipped.read_text(), "run tools/gen-default-conf after changing SETTINGS"
    text = shipped.read_text()
    assert all(f"#{s.key}=" in text for s in SETTINGS)
    assert not load_config(shipped).configured  # all commented out: installing it serves nothing


@pytest.mark.slow
def test_make_install_into_destdir(tmp_path: Path) -> None:
    need_tool("make", "pkg-config")
    dest = tmp_path / "root"
    r = subprocess.run(["make", "-s", "install", f"DESTDIR={dest}", "PREFIX=/usr"], cwd=REPO, capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    unitdir = subprocess.run(["pkg-config", "--variable=systemdsystemunitdir", "systemd"], capture_output=True,
                             text=True).stdout.strip() or "/usr/lib/systemd/system"
    for unit in ("pxed.socket", "pxed-pxe.socket", "pxed.service"):
        assert (dest / unitdir.lstrip("/") / unit).is_file(), unit
    assert "ExecStart=/usr/bin/pxed\n" in (dest / unitdir.lstrip("/") / "pxed.service").read_text()
    gendir = subprocess.run(["pkg-config", "--variable=systemdsystemgeneratordir", "systemd"], capture_output=True,
                            text=True).stdout.strip() or "/usr/lib/systemd/system-generators"
    assert os.readlink(dest / gendir.lstrip("/") / "pxed-generator") == "/usr/bin/pxed-generator"
    assert (dest / "usr/bin/pxed").is_file() and (dest / "usr/bin/pxed-generator").is_file()
    site = next(dest.glob("usr/lib/python3*/*-packages"))
    assert (site / "pxed/templates/syslinux/pxe.cfg.j2").is_file() and (site / "pxed/templates/units/lighttpd.conf.j2")
    assert (dest / "usr/lib/sysusers.d/pxed.conf").read_text().count("\nu ") >= 2
    assert (dest / "etc/pxed/pxed.conf").is_file() and (dest / "etc/pxed/pxed.conf.d").is_dir()
    # an admin's edited configuration survives a reinstall
    (dest / "etc/pxed/pxed.conf").write_text("[Network]\nInterface=eno1\n")
    subprocess.run(["make", "-s", "install-data", f"DESTDIR={dest}"], cwd=REPO, check=True, capture_output=True)
    assert (dest / "etc/pxed/pxed.conf").read_text() == "[Network]\nInterface=eno1\n"


def test_make_install_never_runs_systemctl() -> None:
    assert "systemctl" not in "\n".join(ln for ln in (REPO / "Makefile").read_text().splitlines()
                                        if ln.startswith("\t"))


def test_sysusers_creates_the_users_and_the_group_the_polkit_rule_names(tmp_path: Path) -> None:
    need_tool("systemd-sysusers")
    (tmp_path / "etc").mkdir()
    r = subprocess.run(["systemd-sysusers", f"--root={tmp_path}", str(REPO / "packaging/sysusers.d/pxed.conf")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    users = {ln.split(":")[0] for ln in (tmp_path / "etc/passwd").read_text().splitlines()}
    groups = {ln.split(":")[0] for ln in (tmp_path / "etc/group").read_text().splitlines()}
    assert {"pxed", "pxed-tftp", "pxed-http"} <= users
    rule = (REPO / "packaging/polkit/rules.d/50-pxed.rules").read_text()
    assert 'isInGroup("pxed-admin")' in rule and "pxed-admin" in groups
