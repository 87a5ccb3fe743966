"""The GRUB backend: golden grub.cfg, GRUB's own syntax check, and hostile values held as single words."""

from __future__ import annotations

import ipaddress
import os
import re
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxed import boottree, loaders
from pxed.config import load_config
from pxed.errors import InvalidArgument, MissingPackage
from pxed.loaders.grub import quote
from pxed.menus import render_menus
from pxed.model import BootEntry, Firmware, Installed
from pxed.rules import RESERVED_IDS
from tests.conftest import need_tool
from tests.test_menu import GOLDEN, SEED_CONF

SERVER = ipaddress.IPv4Address("10.77.0.1")
INSTALLED = Installed(memtest="memtest/memtest.bin", memtest_efi="memtest/memtest64.efi", hdt="hdt.c32")
GRUB_CONF = "[Boot]\nEFI64Loader=grub\nHTTP64Loader=grub\nARM64Loader=grub\n"
COMMANDS = {"serial", "terminal_input", "terminal_output", "set", "source", "echo", "menuentry", "linux", "initrd", "}",
            "if", "fi", "chainloader", "exit", "fwsetup", "reboot", "halt"}


def grub_files(tmp_path: Path, conf: str, entries: list[BootEntry] | None = None) -> dict[str, str]:
    path = tmp_path / "pxed.conf"
    path.write_text(conf)
    c = load_config(path)
    files = render_menus(c, c.entries if entries is None else entries, SERVER, installed=INSTALLED, template_dir=None)
    return {k: v for k, v in files.items() if k.startswith("grub/")}


def grub_cfg(tmp_path: Path, conf: str, entries: list[BootEntry] | None = None) -> str:
    return grub_files(tmp_path, conf, entries)["grub/grub.cfg"]


def grub_words(line: str) -> list[str]:
    """A line split as GRUB's lexer does for what pxed writes: '...' quoting, \\ outside quotes."""
    out, word, i, quoted, in_word = [], "", 0, False, False
    while i < len(line):
        ch = line[i]
        if quoted:
            if ch == "'":
                quoted = False
            else:
                word += ch
        elif ch == "'":
            quoted, in_word = True, True
        elif ch == "\\" and i + 1 < len(line):
            i += 1
            word, in_word = word + line[i], True
        elif ch in " \t":
            if in_word:
                out.append(word)
            word, in_word = "", False
        else:
            word, in_word = word + ch, True
        i += 1
    assert not quoted, line
    if in_word:
        out.append(word)
    return out


def commands(text: str) -> list[list[str]]:
    return [grub_words(ln) for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_seed_like_grub_cfg_matches_golden_and_grubs_own_check(tmp_path: Path) -> None:
    text = grub_cfg(tmp_path, SEED_CONF.replace("[Menu]\n", GRUB_CONF + "[Menu]\nSerial=0 115200\n"))
    golden = GOLDEN / "grub__grub.cfg"
    if os.environ.get("PXED_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.read_text() == text
    need_tool("grub-script-check")
    (tmp_path / "grub.cfg").write_text(text)
    subprocess.run(["grub-script-check", str(tmp_path / "grub.cfg")], check=True)
    assert "clonezilla" not in text  # whole ISOs boot through memdisk: BIOS only
    assert "hdt" not in text  # a syslinux BIOS module
    assert "set timeout=15\n" in text and "set default='arch'\n" in text
    assert "serial --unit=0 --speed=115200\n" in text
    entries = [c[1] for c in commands(text) if c[0] == "menuentry"]
    assert entries == ["Arch Linux install medium (x86_64, HTTP)", "Boot existing OS", "Run Memtest86+ (RAM test)",
                       "UEFI Firmware Settings", "Reboot", "Power Off"]
    # memtest86+'s EFI build is unsigned and x86-64: offered only outside lockdown, on x86_64
    assert re.search(r"if \[ \"\$grub_cpu\" = 'x86_64' \]; then\nif \[ \"\$lockdown\" != \"y\" \]; then\n"
                     r"menuentry 'Run Memtest86\+ \(RAM test\)'", text)


def test_kernels_come_over_http_when_grub_has_it_else_tftp(tmp_path: Path) -> None:
    text = grub_cfg(tmp_path, GRUB_CONF + "[Entry x]\nTitle=x\nKernel=k/linux\nInitrd=k/i\n")
    assert "set pxed='(tftp,10.77.0.1)'\nsource '(http,10.77.0.1)/grub/http.cfg'\n" in text
    assert "linux ${pxed}/'k/linux'\n" in text and "initrd ${pxed}/'k/i'\n" in text
    probe = grub_files(tmp_path, GRUB_CONF)["grub/http.cfg"]
    assert commands(probe) == [["set", "pxed=(http,10.77.0.1)"]]
    # GRUB 2.06 speaks HTTP on port 80 only
    text = grub_cfg(tmp_path, GRUB_CONF + "[HTTP]\nPort=8080\n[Entry x]\nTitle=x\nKernel=k/linux\n")
    assert "set pxed='(tftp,10.77.0.1)'\n" in text and "http" not in text


def test_timeouts_in_whole_seconds_and_zero_waits_for_ever(tmp_path: Path) -> None:
    assert "set timeout=1\n" in grub_cfg(tmp_path, GRUB_CONF + "[Menu]\nTimeout=3\n")
    assert "set timeout=-1\n" in grub_cfg(tmp_path, GRUB_CONF + "[Menu]\nTimeout=0\n")


def test_quote_is_grub_mkconfigs_rule() -> None:
    assert quote("a'b") == "'a'\\''b'"
    assert grub_words(quote("it's $x; }")) == ["it's $x; }"]


@pytest.mark.parametrize("title", ["x\nmenuentry pwn {", "x\rreboot", "a\x00b", "line\u2028two", "{{ 7*7 }}"])
def test_hostile_titles_are_refused(tmp_path: Path, title: str) -> None:
    with pytest.raises(InvalidArgument):
        grub_cfg(tmp_path, GRUB_CONF, [BootEntry(id="x", title=title, kernel="k")])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True), st.text(max_size=80),
                          st.text(max_size=120)), max_size=4, unique_by=lambda t: t[0]))
def test_any_title_or_command_line_is_refused_or_stays_one_value(items: list[tuple[str, str, str]]) -> None:
    """What either renderer accepts, GRUB holds as words: the same commands, the same title and arguments."""
    c = load_config(Path("/nonexistent"))
    entries = [BootEntry(id=i, title=t, kernel="k/linux", append=a) for i, t, a in items if i not in RESERVED_IDS]
    from dataclasses import replace

    c = replace(c, loaders={**c.loaders, **{fw: "grub" for fw in c.loaders if fw.is_uefi}})
    try:
        text = render_menus(c, entries, SERVER, installed=INSTALLED, template_dir=None)["grub/grub.cfg"]
    except InvalidArgument:
        return
    cmds = commands(text)
    assert {cmd[0] for cmd in cmds} <= COMMANDS
    titles = [cmd[1] for cmd in cmds if cmd[0] == "menuentry"]
    assert titles[:len(entries)] == [" ".join(e.title.split()).replace("^", "") for e in entries]
    lines = [cmd for cmd in cmds if cmd[0] == "linux"]
    assert [cmd[2:] for cmd in lines] == [e.append.split() for e in entries]


def _touch(root: Path, *rels: str) -> None:
    for rel in rels:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"MZ" + rel.encode())


@pytest.mark.parametrize("layout", ["debian", "fedora", "d-i"])
def test_the_signed_chain_is_installed_from_each_distributions_paths(tmp_path: Path, layout: str) -> None:

    root, boot = tmp_path / "root", tmp_path / "boot"
    if layout == "debian":
        _touch(root, "usr/lib/shim/shimx64.efi.signed", "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
               "usr/lib/shim/mmx64.efi.signed", "boot/memtest86+x64.efi")
    elif layout == "fedora":
        _touch(root, "boot/efi/EFI/fedora/shimx64.efi", "boot/efi/EFI/fedora/grubx64.efi")
    else:  # debian-installer-12-netboot-amd64's copy of the same signed chain
        di = "usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64"
        _touch(root, f"{di}/bootnetx64.efi", f"{di}/grubx64.efi")
    needed = loaders.get("grub").needed(frozenset({Firmware.EFI64}))
    assert boottree.available(needed, system_root=root)
    got = boottree.populate(boot, needed, system_root=root)
    assert (boot / "shimx64.efi").read_bytes().startswith(b"MZ") and (boot / "grubx64.efi").exists()
    assert (boot / "mmx64.efi").exists() == (layout == "debian")  # MokManager: optional
    assert (got.memtest_efi == "memtest/memtest64.efi") == (layout == "debian")
    before = {p: p.stat().st_mtime_ns for p in boot.rglob("*") if p.is_file()}
    boottree.populate(boot, needed, system_root=root)  # idempotent: unchanged files are left alone
    assert before == {p: p.stat().st_mtime_ns for p in boot.rglob("*") if p.is_file()}


def test_a_missing_signed_grub_names_its_package(tmp_path: Path) -> None:

    _touch(tmp_path, "usr/lib/shim/shimx64.efi.signed")
    needed = loaders.get("grub").needed(frozenset({Firmware.EFI64}))
    assert not boottree.available(needed, system_root=tmp_path)
    with pytest.raises(MissingPackage) as e:
        boottree.populate(tmp_path / "boot", needed, system_root=tmp_path)
    assert "signed network GRUB (x64)" in str(e.value) and "grub-efi-amd64-signed" in e.value.hint
