"""The boot tree from installed bootloader packages: complete, idempotent, and clear when a package is missing."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from pxed import loaders
from pxed.boottree import populate as populate_needed
from pxed.boottree import scan
from pxed.errors import MissingPackage
from pxed.loaders.syslinux import REQUIRED_BIOS_MODULES, REQUIRED_EFI64_MODULES
from pxed.model import Installed

NEEDED = loaders.needed(loaders.DEFAULT_LOADERS)


def populate(boot: Path, system_root: Path = Path("/")) -> Installed:
    return populate_needed(boot, NEEDED, system_root=system_root)


def fake_root(root: Path, layout: str) -> Path:
    """A system tree with syslinux laid out as Debian's, Fedora's or Arch's packages do (dummy bytes)."""
    if layout == "debian":
        files = ["usr/lib/PXELINUX/lpxelinux.0", "usr/lib/PXELINUX/pxelinux.0", "usr/lib/syslinux/memdisk",
                 "usr/lib/SYSLINUX.EFI/efi64/syslinux.efi", "boot/memtest86+x64.bin", "usr/share/misc/pci.ids",
                 "lib/modules/6.1.0-9-amd64/modules.alias"]
        files += [f"usr/lib/syslinux/modules/bios/{m}" for m in (*REQUIRED_BIOS_MODULES, "hdt.c32")]
        files += [f"usr/lib/syslinux/modules/efi64/{m}" for m in REQUIRED_EFI64_MODULES]
    elif layout == "fedora":  # syslinux-nonlinux and syslinux-efi64
        files = ["usr/share/syslinux/lpxelinux.0", "usr/share/syslinux/pxelinux.0", "usr/share/syslinux/memdisk",
                 "usr/share/syslinux/efi64/syslinux.efi", "usr/share/hwdata/pci.ids"]
        files += [f"usr/share/syslinux/{m}" for m in REQUIRED_BIOS_MODULES]
        files += [f"usr/share/syslinux/efi64/{m}" for m in REQUIRED_EFI64_MODULES]
    else:
        files = ["usr/lib/syslinux/bios/lpxelinux.0", "usr/lib/syslinux/bios/pxelinux.0",
                 "usr/lib/syslinux/bios/memdisk", "usr/lib/syslinux/efi64/syslinux.efi"]
        files += [f"usr/lib/syslinux/bios/{m}" for m in REQUIRED_BIOS_MODULES]
        files += [f"usr/lib/syslinux/efi64/{m}" for m in REQUIRED_EFI64_MODULES]
    for f in files:
        p = root / f
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(f.encode())
    return root


@pytest.mark.parametrize("layout", ["debian", "fedora", "arch"])
def test_populate_from_distro_layouts(tmp_path: Path, layout: str) -> None:
    root = fake_root(tmp_path / "sys", layout)
    boot = tmp_path / "boot"
    extras = populate(boot, system_root=root)
    for name in ("lpxelinux.0", "pxelinux.0", "memdisk", "ldlinux.c32", "vesamenu.c32", "whichsys.c32", "chain.c32",
                 "efi64/syslinux.efi", "efi64/ldlinux.e64", "efi64/menu.c32"):
        assert (boot / name).is_file(), name
    assert oct((boot / "lpxelinux.0").stat().st_mode & 0o777) == "0o644"
    assert extras == scan(boot)
    assert (extras.memtest is not None) == (layout == "debian") and (boot / "efi64/ldlinux.e64").is_file()
    assert (extras.modalias == "hdt/modules.alias") == (layout == "debian")


def test_populate_is_idempotent(tmp_path: Path) -> None:
    root = fake_root(tmp_path / "sys", "debian")
    boot = tmp_path / "boot"
    populate(boot, system_root=root)
    before = {p: p.stat().st_mtime_ns for p in boot.rglob("*") if p.is_file()}
    populate(boot, system_root=root)
    assert {p: p.stat().st_mtime_ns for p in boot.rglob("*") if p.is_file()} == before
    (root / "usr/lib/PXELINUX/lpxelinux.0").write_bytes(b"new version")
    populate(boot, system_root=root)
    assert (boot / "lpxelinux.0").read_bytes() == b"new version"
    assert not list(boot.rglob(".*.tmp*"))


@pytest.mark.parametrize("missing,package", [("usr/lib/PXELINUX/lpxelinux.0", "pxelinux"),
                                             ("usr/lib/SYSLINUX.EFI", "syslinux-efi"),
                                             ("usr/lib/syslinux/modules/bios", "syslinux-common")])
def test_missing_package_is_named(tmp_path: Path, missing: str, package: str) -> None:
    root = fake_root(tmp_path / "sys", "debian")
    p = root / missing
    shutil.rmtree(p) if p.is_dir() else p.unlink()
    with pytest.raises(MissingPackage, match=f"install the {package} package"):
        populate(tmp_path / "boot", system_root=root)


def test_real_system_tree(tmp_path: Path) -> None:
    from tests.conftest import need

    need(Path("/usr/lib/PXELINUX/lpxelinux.0").exists(), "pxelinux is not installed (make deps)")
    extras = populate(tmp_path)
    assert extras.hdt and (tmp_path / "hdt.c32").exists() and (tmp_path / "memdisk").exists()
