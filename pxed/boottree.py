"""Fill the boot root with the installed files the boot loaders and menu tools need.

What to copy comes from the loaders (:class:`~pxed.loaders.base.Needed`) plus the menu's
tools: memtest86+ and HDT's PCI names and driver aliases, offered when installed.
Copies are atomic and idempotent: an unchanged file is left alone, a changed one is
replaced by rename (:func:`pxed.fsutil.atomic_copy`).  :func:`scan` says what an already
populated boot root offers, without copying.

Tools in the boot root::

    memtest/memtest.bin                            memtest86+ for BIOS, when installed
    memtest/memtest64.efi                          memtest86+ for x86-64 UEFI (unsigned), when installed
    hdt/pci.ids, hdt/modules.alias                 PCI names and driver aliases for HDT, when installed
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

from pxed.errors import MissingPackage
from pxed.fsutil import atomic_copy
from pxed.loaders.base import Needed
from pxed.model import Firmware, Installed

logger = logging.getLogger(__name__)

_BIOS = frozenset({Firmware.BIOS})
MEMTEST = Needed("memtest86+", ("/boot/memtest86+x64.bin", "/boot/memtest86+.bin", "/boot/memtest86+/memtest.bin"),
                 "memtest/memtest.bin", (("Debian/Ubuntu", "memtest86+"), ("Arch", "memtest86+")), _BIOS,
                 optional=True)
MEMTEST_EFI = Needed("memtest86+ (UEFI)", ("/boot/memtest86+x64.efi", "/boot/memtest86+/memtest.efi"),
                     "memtest/memtest64.efi", (("Debian/Ubuntu", "memtest86+"), ("Arch", "memtest86+-efi")),
                     frozenset({Firmware.EFI64, Firmware.HTTP64}), optional=True)
PCI_IDS = Needed("pci.ids", ("/usr/share/misc/pci.ids", "/usr/share/hwdata/pci.ids"), "hdt/pci.ids",
                 (("Debian/Ubuntu", "pci.ids"), ("Arch", "hwdata")), _BIOS, optional=True)
MODALIAS = "hdt/modules.alias"
HDT = "hdt.c32"  # a syslinux BIOS module


def _find(src: Needed, root: Path) -> Path | None:
    for c in src.candidates:
        p = root / c.lstrip("/")
        if p.exists():
            return p
    return None


def _require(src: Needed, root: Path) -> Path:
    p = _find(src, root)
    if p is None:
        raise MissingPackage(f"{src.what} not found (looked in {', '.join(src.candidates)})", hint=src.hint())
    return p


def _modules(directory: Path, suffixes: Iterable[str]) -> list[Path]:
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in suffixes)


def available(needed: Sequence[Needed], *, system_root: Path = Path("/")) -> bool:
    """Whether every file ``needed`` requires is installed (a few stats, nothing copied)."""
    return all(n.optional or _find(n, system_root) is not None for n in needed)


def populate(boot_root: Path, needed: Sequence[Needed], *, system_root: Path = Path("/")) -> Installed:
    """Install ``needed`` and the tools into ``boot_root``; raises MissingPackage naming the package."""
    boot_root.mkdir(parents=True, exist_ok=True, mode=0o755)
    changed: list[str] = []

    def put(src: Path, rel: str) -> None:
        if atomic_copy(src, boot_root / rel):
            changed.append(rel)

    for n in needed:
        if n.optional and _find(n, system_root) is None:
            continue
        found = _require(n, system_root)
        if not n.is_dir:
            put(found, n.dest)
            continue
        for m in _modules(found, n.suffixes):
            put(m, f"{n.dest}{m.name}")
        missing = [r for r in n.required if not (boot_root / n.dest / r).exists()]
        if missing:
            raise MissingPackage(f"{', '.join(missing)} missing from {found}",
                                 hint=f"reinstall {n.packages[0][1]}")
    for tool in (MEMTEST, MEMTEST_EFI, PCI_IDS):
        if (found_tool := _find(tool, system_root)) is not None:
            put(found_tool, tool.dest)
    alias = _modalias(system_root)
    if alias is not None:
        put(alias, MODALIAS)
    if changed:
        logger.info("boot tree %s: installed %d file(s)", boot_root, len(changed))
    return scan(boot_root)


def _modalias(root: Path) -> Path | None:
    """The newest installed kernel's modules.alias (HDT maps PCI ids to driver names with it)."""
    found = sorted((root / "lib/modules").glob("*/modules.alias"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


def scan(boot_root: Path) -> Installed:
    """What an already populated boot root offers (a few stats, no copying)."""

    def have(rel: str) -> str | None:
        return rel if (boot_root / rel).exists() else None

    return Installed(memtest=have(MEMTEST.dest), memtest_efi=have(MEMTEST_EFI.dest), hdt=have(HDT),
                     pciids=have(PCI_IDS.dest), modalias=have(MODALIAS))
