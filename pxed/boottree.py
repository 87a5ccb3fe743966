"""Fill the boot root with the installed bootloader files (syslinux, memdisk, memtest86+).

Sources are looked up on Debian/Ubuntu paths (packages pxelinux, syslinux-common,
syslinux-efi) and Arch paths (package syslinux).  Copies are atomic and idempotent:
an unchanged file is left alone, a changed one is replaced by rename.

Layout in the boot root::

    lpxelinux.0, ldlinux.c32, *.c32, memdisk     BIOS (option 210 prefix "/")
    efi64/syslinux.efi, efi64/ldlinux.e64, efi64/*.c32   x86-64 UEFI (prefix "efi64/")
    memtest/memtest.bin                            memtest86+ for BIOS, when installed
    hdt/pci.ids, hdt/modules.alias                 PCI names and driver aliases for HDT, when installed
"""

from __future__ import annotations

import filecmp
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pxed.errors import MissingPackage

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Source:
    """Where one piece comes from: candidate paths in order, and the packages providing it."""

    what: str
    candidates: tuple[str, ...]
    debian: str
    arch: str


LPXELINUX = Source("lpxelinux.0", ("/usr/lib/PXELINUX/lpxelinux.0", "/usr/lib/syslinux/bios/lpxelinux.0",
                                   "/usr/share/syslinux/lpxelinux.0"),
                   "pxelinux", "syslinux")
BIOS_MODULES = Source("BIOS syslinux modules", ("/usr/lib/syslinux/modules/bios", "/usr/lib/syslinux/bios",
                                                "/usr/share/syslinux"),
                      "syslinux-common", "syslinux")
MEMDISK = Source("memdisk", ("/usr/lib/syslinux/memdisk", "/usr/lib/syslinux/bios/memdisk",
                              "/usr/share/syslinux/memdisk"),
                 "syslinux-common", "syslinux")
EFI64 = Source("syslinux.efi", ("/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi", "/usr/lib/syslinux/efi64/syslinux.efi",
                                 "/usr/share/syslinux/efi64/syslinux.efi"),
               "syslinux-efi", "syslinux")
EFI64_MODULES = Source("x86-64 UEFI syslinux modules",
                       ("/usr/lib/syslinux/modules/efi64", "/usr/lib/syslinux/efi64", "/usr/share/syslinux/efi64"),
                       "syslinux-efi", "syslinux")
MEMTEST = Source("memtest86+", ("/boot/memtest86+x64.bin", "/boot/memtest86+.bin", "/boot/memtest86+/memtest.bin"),
                 "memtest86+", "memtest86+")
PCI_IDS = Source("pci.ids", ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"), "pci.ids", "hwdata")

REQUIRED_BIOS_MODULES = ("ldlinux.c32", "libcom32.c32", "libutil.c32", "vesamenu.c32", "menu.c32", "whichsys.c32",
                         "chain.c32", "reboot.c32", "poweroff.c32")
REQUIRED_EFI64_MODULES = ("ldlinux.e64", "libcom32.c32", "libutil.c32", "vesamenu.c32", "menu.c32",
                          "whichsys.c32", "reboot.c32")


@dataclass(frozen=True, slots=True)
class MenuExtras:
    """Optional tools found in the boot root, which the menu offers when present."""

    memtest: str | None = None  # path relative to the boot root
    hdt: bool = False
    pciids: str | None = None
    modalias: str | None = None
    efi64: bool = False


def _find(src: Source, root: Path) -> Path | None:
    for c in src.candidates:
        p = root / c.lstrip("/")
        if p.exists():
            return p
    return None


def _require(src: Source, root: Path) -> Path:
    p = _find(src, root)
    if p is None:
        raise MissingPackage(
            f"{src.what} not found (looked in {', '.join(src.candidates)})",
            hint=f"install the {src.debian} package (Debian/Ubuntu) or {src.arch} (Arch)",
        )
    return p


def install_file(src: Path, dest: Path) -> bool:
    """Copy src to dest atomically unless identical; returns whether dest changed."""
    if dest.is_file() and not dest.is_symlink() and filecmp.cmp(src, dest, shallow=False):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = dest.with_name(f".{dest.name}.tmp{os.getpid()}")
    try:
        with open(src, "rb") as fi, open(tmp, "xb") as fo:
            shutil.copyfileobj(fi, fo, 1 << 20)
            fo.flush()
            os.fchmod(fo.fileno(), 0o644)
            os.fsync(fo.fileno())
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()
    return True


def _modules(directory: Path, suffixes: Iterable[str]) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in suffixes)


def populate(boot_root: Path, *, system_root: Path = Path("/"), efi64: bool = True) -> MenuExtras:
    """Install the bootloader files into ``boot_root``; returns what optional tools exist."""
    boot_root.mkdir(parents=True, exist_ok=True, mode=0o755)
    changed: list[str] = []

    def put(src: Path, rel: str) -> None:
        if install_file(src, boot_root / rel):
            changed.append(rel)

    put(_require(LPXELINUX, system_root), "lpxelinux.0")
    put(_require(MEMDISK, system_root), "memdisk")
    bios = _require(BIOS_MODULES, system_root)
    for m in _modules(bios, (".c32",)):
        put(m, m.name)
    for name in REQUIRED_BIOS_MODULES:
        if not (boot_root / name).exists():
            raise MissingPackage(f"{name} missing from {bios}", hint=f"reinstall {BIOS_MODULES.debian}")
    have_efi = False
    if efi64:
        put(_require(EFI64, system_root), "efi64/syslinux.efi")
        mods = _require(EFI64_MODULES, system_root)
        for m in _modules(mods, (".c32", ".e64")):
            put(m, f"efi64/{m.name}")
        missing = [n for n in REQUIRED_EFI64_MODULES if not (boot_root / "efi64" / n).exists()]
        if missing:
            raise MissingPackage(f"{', '.join(missing)} missing from {mods}", hint=f"reinstall {EFI64.debian}")
        have_efi = True
    memtest = _find(MEMTEST, system_root)
    if memtest is not None:
        put(memtest, "memtest/memtest.bin")
    pci = _find(PCI_IDS, system_root)
    if pci is not None:
        put(pci, "hdt/pci.ids")
    alias = _modalias(system_root)
    if alias is not None:
        put(alias, "hdt/modules.alias")
    if changed:
        logger.info("boot tree %s: installed %d file(s)", boot_root, len(changed))
    return MenuExtras(
        memtest="memtest/memtest.bin" if memtest is not None else None,
        hdt=(boot_root / "hdt.c32").exists(),
        pciids="hdt/pci.ids" if pci is not None else None,
        modalias="hdt/modules.alias" if alias is not None else None,
        efi64=have_efi,
    )


def _modalias(root: Path) -> Path | None:
    """The newest installed kernel's modules.alias (HDT maps PCI ids to driver names with it)."""
    found = sorted((root / "lib/modules").glob("*/modules.alias"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def extras_of(boot_root: Path) -> MenuExtras:
    """What an already populated boot root offers (no copying)."""
    return MenuExtras(
        memtest="memtest/memtest.bin" if (boot_root / "memtest/memtest.bin").exists() else None,
        hdt=(boot_root / "hdt.c32").exists(),
        pciids="hdt/pci.ids" if (boot_root / "hdt/pci.ids").exists() else None,
        modalias="hdt/modules.alias" if (boot_root / "hdt/modules.alias").exists() else None,
        efi64=(boot_root / "efi64/syslinux.efi").exists(),
    )

