"""Boot-loader backends.  Each firmware class's loader is chosen in pxed.conf ([Boot] BIOSLoader=, ...).

A new loader is one module here implementing :class:`~pxed.loaders.base.Loader`, its
templates under ``pxed/templates/<name>/``, and one line in :data:`LOADERS`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType

from pxed.loaders.base import Loader, Needed
from pxed.loaders.grub import GRUB
from pxed.loaders.syslinux import SYSLINUX
from pxed.loaders.syslinux_ipxe import SYSLINUX_IPXE
from pxed.model import Firmware

LOADERS: Mapping[str, Loader] = MappingProxyType(
    {SYSLINUX.name: SYSLINUX, SYSLINUX_IPXE.name: SYSLINUX_IPXE, GRUB.name: GRUB})
# The loader of each firmware class when pxed.conf names none and nothing better is installed;
# a class missing here gets no boot file unless [Boot] sets one.
DEFAULT_LOADERS: Mapping[Firmware, str] = MappingProxyType(
    {Firmware.BIOS: "syslinux", Firmware.EFI64: "syslinux", Firmware.HTTP64: "syslinux"})
# Loaders preferred to those defaults when their files are installed: the distribution's signed
# shim + GRUB boots with Secure Boot on, syslinux.efi does not (and arm64 has nothing else).
# Not for UEFI HTTP Boot: Debian 12's GRUB, started that way, finds no server for its menu
# (docs/uefi-secure-boot.md); [Boot] HTTP64Loader=grub still chooses it.
PREFERRED: Mapping[Firmware, str] = MappingProxyType({Firmware.EFI64: "grub", Firmware.ARM64: "grub"})


def defaults(installed: Callable[[Loader, Firmware], bool] | None = None) -> dict[Firmware, str]:
    """Each firmware class's loader when pxed.conf names none: its preferred loader where
    ``installed(loader, firmware)`` says that loader's files are there, else the default."""
    chosen = dict(DEFAULT_LOADERS)
    if installed is not None:
        chosen |= {fw: name for fw, name in PREFERRED.items() if installed(LOADERS[name], fw)}
    return chosen


def plan(assignment: Mapping[Firmware, str]) -> list[tuple[Loader, frozenset[Firmware]]]:
    """Each loader in use, with the firmware classes it serves ([Boot] *Loader=), in a fixed order."""
    return [(LOADERS[name], frozenset(fw for fw, n in assignment.items() if n == name))
            for name in sorted(set(assignment.values()))]


def needed(assignment: Mapping[Firmware, str]) -> tuple[Needed, ...]:
    """The files from the installed system that serving ``assignment`` takes."""
    return tuple(n for loader, classes in plan(assignment) for n in loader.needed(classes))


def get(name: str) -> Loader:
    """The loader called ``name``; KeyError names the known ones."""
    try:
        return LOADERS[name]
    except KeyError:
        raise KeyError(f"unknown boot loader {name!r}; known: {', '.join(sorted(LOADERS))}") from None


__all__ = ["DEFAULT_LOADERS", "LOADERS", "PREFERRED", "Loader", "Needed", "defaults", "get", "needed", "plan"]
