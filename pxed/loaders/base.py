"""What a boot-loader backend is: the interface every loader implements, and its file list.

A loader is pure: it names the files it needs from the installed system
(:class:`Needed`, copied by :mod:`pxed.boottree`), its boot file for each firmware class
it serves, the DHCP options it wants next to that boot file, and renders the one menu
model (:class:`~pxed.model.Menu`) into its own configuration files (path → text).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from pxed.model import Firmware, Menu


@dataclass(frozen=True, slots=True)
class Needed:
    """A file, or a directory of modules, copied from the installed system into the boot root.

    ``candidates`` are tried in order (Debian/Ubuntu, Arch, Fedora paths); ``packages``
    names the package providing it on each, for the error when none is there.  A
    directory copies its files ending in one of ``suffixes`` into ``dest`` and must
    hold ``required``.  ``firmware``: the classes that need it.
    """

    what: str
    candidates: tuple[str, ...]
    dest: str  # a file's path in the boot root, or a directory's ("" is the root)
    packages: tuple[tuple[str, str], ...]  # (distribution, package)
    firmware: frozenset[Firmware]
    suffixes: tuple[str, ...] = ()  # set for a directory of modules
    required: tuple[str, ...] = ()
    optional: bool = False

    @property
    def is_dir(self) -> bool:
        return bool(self.suffixes)

    def hint(self) -> str:
        (dist, pkg), *rest = self.packages
        return f"install the {pkg} package ({dist})" + "".join(f" or {p} ({d})" for d, p in rest)


class Loader(Protocol):
    """A boot loader pxed can hand to firmware (see :mod:`pxed.loaders.syslinux`)."""

    @property
    def name(self) -> str: ...

    @property
    def firmware(self) -> frozenset[Firmware]:
        """The firmware classes this loader can boot."""
        ...

    def boot_file(self, firmware: Firmware) -> str:
        """The file, relative to the boot root, that firmware of this class loads first."""
        ...

    def ipxe_boot_file(self, firmware: Firmware) -> str | None:
        """The build to give firmware of this class whose network stack is iPXE, if it differs."""
        ...

    def dhcp_options(self, boot_file: str) -> tuple[tuple[int, bytes], ...]:
        """Extra DHCP options (code, value) for PXE replies naming ``boot_file``."""
        ...

    def needed(self, firmware: frozenset[Firmware]) -> tuple[Needed, ...]:
        """The files to install for serving ``firmware``."""
        ...

    def render(self, menu: Menu, firmware: frozenset[Firmware], *,
               template_dir: Path | None) -> Mapping[str, str]:
        """The configuration files for ``firmware`` (path under the boot root → text).

        Raises :class:`~pxed.errors.InvalidArgument` for a value the format cannot hold.
        """
        ...
