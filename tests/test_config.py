from __future__ import annotations

from pathlib import Path

import pytest

from pxed.config import SETTINGS, HttpBackend, load_config
from pxed.errors import ConfigError
from pxed.model import Firmware


def write(p: Path, text: str) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def test_missing_file_gives_unconfigured_defaults(tmp_path: Path) -> None:
    c = load_config(tmp_path / "pxed.conf", system_root=tmp_path)  # a system with nothing installed
    assert not c.configured
    assert c.boot_file(Firmware.BIOS) == "lpxelinux.0"
    assert c.boot_file(Firmware.EFI64) == "efi64/syslinux.efi"
    assert c.boot_file(Firmware.EFI32) is None
    assert c.http_backend is HttpBackend.AUTO


def test_uefi_defaults_to_grub_where_the_signed_shim_and_grub_are_installed(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for rel in ("usr/lib/shim/shimx64.efi.signed", "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"MZ")
    c = load_config(tmp_path / "pxed.conf", system_root=root)
    assert c.loaders[Firmware.EFI64] == "grub" and c.loaders[Firmware.HTTP64] == "syslinux"  # not for HTTP Boot
    assert c.boot_file(Firmware.EFI64) == "shimx64.efi" and c.boot_file(Firmware.BIOS) == "lpxelinux.0"
    assert Firmware.ARM64 not in c.loaders  # no arm64 chain installed: no arm64 boot file, as before
    (tmp_path / "pxed.conf").write_text("[Boot]\nEFI64Loader=syslinux\n")  # named in pxed.conf: that one
    c = load_config(tmp_path / "pxed.conf", system_root=root)
    assert c.boot_file(Firmware.EFI64) == "efi64/syslinux.efi"
    di = root / "usr/lib/debian-installer/images/12/arm64/text/debian-installer/arm64"
    di.mkdir(parents=True)
    (di / "bootnetaa64.efi").write_bytes(b"MZ")
    (di / "grubaa64.efi").write_bytes(b"MZ")
    assert load_config(tmp_path / "none.conf", system_root=root).boot_file(Firmware.ARM64) == "shimaa64.efi"


def test_dropins_override_in_lexical_order_and_empty_resets(tmp_path: Path) -> None:
    main = write(tmp_path / "pxed.conf",
                 "[Network]\nInterface=eth0\n[HTTP]\nPort=8080\n[Boot]\nBIOS=bios/lpxelinux.0\n")
    write(tmp_path / "pxed.conf.d/20-b.conf", "[HTTP]\nPort=9090\n")
    write(tmp_path / "pxed.conf.d/10-a.conf", "[HTTP]\nPort=1\n[Network]\nAllowRelay=yes\n")
    write(tmp_path / "pxed.conf.d/30-c.conf", "[Boot]\nBIOS=\n")
    write(tmp_path / "pxed.conf.d/ignored.txt", "garbage")
    c = load_config(main)
    assert c.interface == "eth0" and c.http_port == 9090 and c.allow_relay
    assert c.boot_file(Firmware.BIOS) == "lpxelinux.0"
    assert [p.name for p in c.sources] == ["pxed.conf", "10-a.conf", "20-b.conf", "30-c.conf"]


@pytest.mark.parametrize(
    "text,line,needle",
    [
        ("[Network]\nInterfac=eth0\n", 2, "Interfac"),
        ("[Network]\nInterface=eth0 eth1\n", 2, "Interface"),
        ("[HTTP]\nPort=70000\n", 2, "Port"),
        ("[Network]\nAllowRelay=maybe\n", 2, "AllowRelay"),
        ("[Nope]\nX=1\n", 2, "unknown section"),
        ("Interface=eth0\n", 1, "outside of a section"),
        ("[Network\n", 1, "malformed"),
        ("[Boot]\nBIOS=../etc/passwd\n", 2, "BIOS"),
        ("[Entry Bad Id]\nKernel=x\n", 2, "id"),
        ("[Entry ok]\nTitle=a\\x\n", 0, ""),
    ],
)
def test_bad_files_name_file_line_and_key(tmp_path: Path, text: str, line: int, needle: str) -> None:
    p = write(tmp_path / "pxed.conf", text)
    if not line:  # a backslash is printable: accepted, but the entry has no kernel
        with pytest.raises(ConfigError, match="no Kernel"):
            load_config(p)
        return
    with pytest.raises(ConfigError) as ei:
        load_config(p)
    assert str(ei.value).startswith(f"{p}:{line}: ")
    assert needle in str(ei.value)


def test_entries(tmp_path: Path) -> None:
    p = write(tmp_path / "pxed.conf", "[Entry debian]\nTitle=Debian\nKernel=d/linux\nInitrd=d/a.gz\nInitrd=d/b.gz\n"
              "Append=console=ttyS0 quiet\n")
    (e,) = load_config(p).entries
    assert (e.id, e.title, e.kernel, e.initrds, e.append) == ("debian", "Debian", "d/linux", ("d/a.gz", "d/b.gz"),
                                                              "console=ttyS0 quiet")


@pytest.mark.parametrize("title", ["a\nLABEL x", "x\rMENU DEFAULT", "{{ evil }}", "", "x" * 61])
def test_hostile_titles_refused(tmp_path: Path, title: str) -> None:
    p = write(tmp_path / "pxed.conf", "[Entry a]\nKernel=k\n")
    p.write_bytes(p.read_bytes() + b"Title=" + title.encode() + b"\n")
    if "\n" in title or "\r" in title:  # the newline splits the line: the tail is a bad line
        with pytest.raises(ConfigError):
            load_config(p)
        return
    with pytest.raises(ConfigError, match="Title"):
        load_config(p)


def test_every_setting_has_help_and_unique_key() -> None:
    keys = [(s.section, s.key) for s in SETTINGS]
    assert len(keys) == len(set(keys))
    assert all(s.help.endswith(".") or s.help.endswith(")") for s in SETTINGS)
