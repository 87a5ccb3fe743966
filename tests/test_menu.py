"""syslinux menus: golden output for a seed-like configuration, and hostile values refused."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxed.config import load_config
from pxed.errors import InvalidArgument
from pxed.menus import render_menus, write_menus
from pxed.model import BootEntry, Installed
from pxed.rules import RESERVED_IDS

GOLDEN = Path(__file__).parent / "data" / "menu"
SERVER = ipaddress.IPv4Address("10.77.0.1")
EXTRAS = Installed(memtest="memtest/memtest.bin", hdt="hdt.c32", pciids="hdt/pci.ids", modalias="hdt/modules.alias")
SEED_CONF = """\
[Network]
Interface=eno1
[Menu]
Title=Arch Linux network boot
Timeout=150
Default=arch
[Entry arch]
Title=Arch Linux install medium (x86_64, HTTP)
Kernel=images/arch/arch/boot/x86_64/vmlinuz-linux
Initrd=images/arch/arch/boot/intel-ucode.img
Initrd=images/arch/arch/boot/amd-ucode.img
Initrd=images/arch/arch/boot/x86_64/initramfs-linux.img
Append=archisobasedir=arch archiso_http_srv=http://10.77.0.1/images/arch/ ip=dhcp cms_verify=y
SysAppend=2
[Entry clonezilla-iso]
Title=Clonezilla (whole ISO)
Type=memdisk
Kernel=iso/clonezilla.iso
"""

DIRECTIVES = {"LABEL", "MENU", "LINUX", "INITRD", "APPEND", "SYSAPPEND", "COM32", "LOCALBOOT", "TIMEOUT",
              "ONTIMEOUT", "UI", "SERIAL", "DEFAULT", "CONFIG", "PROMPT"}


def seed(tmp_path: Path) -> dict[str, str]:
    conf = tmp_path / "pxed.conf"
    conf.write_text(SEED_CONF)
    c = load_config(conf, system_root=None)  # syslinux for every class, whatever is installed here
    return render_menus(c, c.entries, SERVER, installed=EXTRAS, template_dir=None)


def test_seed_like_menus_match_golden_files(tmp_path: Path) -> None:
    files = seed(tmp_path)
    assert sorted(files) == ["efi64/pxelinux.cfg/default", "efi64/pxelinux.cfg/pxe.cfg", "efi64/pxelinux.cfg/sys.cfg",
                             "pxelinux.cfg/default", "pxelinux.cfg/pxe.cfg", "pxelinux.cfg/sys.cfg"]
    for rel, text in files.items():
        golden = GOLDEN / rel.replace("/", "__")
        if os.environ.get("PXED_UPDATE_GOLDEN"):
            golden.write_text(text)
        assert golden.read_text() == text, rel
    bios = files["pxelinux.cfg/pxe.cfg"]
    assert "INITRD http://10.77.0.1/images/arch/arch/boot/intel-ucode.img,http://10.77.0.1/images/arch/arch/boot/amd" \
           "-ucode.img,http://10.77.0.1/images/arch/arch/boot/x86_64/initramfs-linux.img" in bios
    assert "LINUX memdisk\nINITRD http://10.77.0.1/iso/clonezilla.iso\nAPPEND iso raw" in bios
    assert "clonezilla" not in files["efi64/pxelinux.cfg/pxe.cfg"]  # memdisk is BIOS only
    assert "COM32 whichsys.c32\nAPPEND -pxe- pxe -sys- sys -iso- sys" in files["pxelinux.cfg/default"]


def parse_syslinux(text: str) -> tuple[list[str], set[str]]:
    labels, directives = [], set()
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word = line.split()[0].upper()
        directives.add(word)
        if word == "LABEL":
            labels.append(line.split(None, 1)[1])
    return labels, directives


@pytest.mark.parametrize("title", ["x\nLABEL pwn", "x\rMENU DEFAULT", "a\x00b", "line\u2028two", "{{ 7*7 }}"])
def test_hostile_titles_are_refused(title: str) -> None:
    c = load_config(Path("/nonexistent"))
    with pytest.raises(InvalidArgument):
        render_menus(c, [BootEntry(id="x", title=title, kernel="k")], SERVER, installed=EXTRAS, template_dir=None)


@pytest.mark.parametrize("entry", [
    BootEntry(id="Bad Id", title="t", kernel="k"),
    BootEntry(id="local", title="t", kernel="k"),
    BootEntry(id="x", title="t", kernel="k space"),
    BootEntry(id="x", title="t", kernel="k", initrds=("a\nAPPEND init=/bin/sh",)),
    BootEntry(id="x", title="t", kernel="k", append="quiet\ninit=/bin/sh"),
    BootEntry(id="x", title="t", kernel="k", append="a" * 2048),
])
def test_hostile_entries_are_refused(entry: BootEntry) -> None:
    c = load_config(Path("/nonexistent"))
    with pytest.raises(InvalidArgument):
        render_menus(c, [entry], SERVER, installed=EXTRAS, template_dir=None)


def test_duplicate_ids_refused() -> None:
    c = load_config(Path("/nonexistent"))
    e = BootEntry(id="x", title="t", kernel="k")
    with pytest.raises(InvalidArgument, match="duplicate"):
        render_menus(c, [e, e], SERVER, installed=EXTRAS, template_dir=None)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,10}", fullmatch=True), st.text(max_size=80)),
                max_size=5, unique_by=lambda t: t[0]))
def test_any_title_either_refused_or_adds_no_directive(items: list[tuple[str, str]]) -> None:
    c = load_config(Path("/nonexistent"))
    entries = [BootEntry(id=i, title=t, kernel="k/linux") for i, t in items
               if i not in RESERVED_IDS]
    try:
        files = render_menus(c, entries, SERVER, installed=EXTRAS, template_dir=None)
    except InvalidArgument:
        return
    labels, directives = parse_syslinux(files["pxelinux.cfg/pxe.cfg"])
    assert labels == [e.id for e in entries] + ["local", "memtest", "hdt", "reboot", "poweroff"]
    assert directives <= DIRECTIVES


def test_admin_template_override(tmp_path: Path) -> None:
    (tmp_path / "syslinux").mkdir()
    (tmp_path / "syslinux/sys.cfg.j2").write_text("# site policy\nDEFAULT local\nLABEL local\nLOCALBOOT 0\n")
    c = load_config(Path("/nonexistent"))
    files = render_menus(c, [], SERVER, installed=EXTRAS, template_dir=tmp_path)
    assert files["pxelinux.cfg/sys.cfg"].startswith("# site policy")
    (tmp_path / "syslinux/sys.cfg.j2").write_text("{{ ''.__class__.__mro__ }}")  # sandboxed
    with pytest.raises(Exception, match="unsafe|access"):
        render_menus(c, [], SERVER, installed=EXTRAS, template_dir=tmp_path)


def test_write_menus_is_atomic_and_leaves_no_temp_files(tmp_path: Path) -> None:
    write_menus(tmp_path, {"pxelinux.cfg/default": "one\n"})
    write_menus(tmp_path, {"pxelinux.cfg/default": "two\n"})
    assert (tmp_path / "pxelinux.cfg/default").read_text() == "two\n"
    assert [p.name for p in (tmp_path / "pxelinux.cfg").iterdir()] == ["default"]
