"""Boot policies for the DHCP core's tests: syslinux-like, as pxed.conf's defaults give (209/210 beside
every PXE boot file, nothing beside an HTTP Boot one), written out here so the core's tests do not
go through pxed.policy; tests/test_policy.py checks that boot_policy() builds the same."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from pxed.config import DEFAULT_BOOT_FILES
from pxed.dhcp.proxy import BootFile, BootPolicy
from pxed.model import Firmware


def syslinux_file(path: str, *, http: bool = False) -> BootFile:
    """`path` with what syslinux reads first in a PXE reply: 209 (config file) and 210 (its directory)."""
    if http:
        return BootFile(path)
    head, sep, _ = path.rpartition("/")
    return BootFile(path, ((209, b"pxelinux.cfg/default"), (210, (head + "/").encode() if sep else b"/")))


def syslinux_policy(boot_files: Mapping[Firmware, str] = DEFAULT_BOOT_FILES, ipxe_boot_file: str | None = None,
                    **kw: Any) -> BootPolicy:
    """A policy serving `boot_files` (firmware → path) and `ipxe_boot_file` as syslinux files, and
    pxelinux.0 to BIOS clients on iPXE when BIOS has lpxelinux.0, as pxed.conf's defaults do; `kw`: the rest."""
    files = MappingProxyType({fw: syslinux_file(p, http=fw.is_http) for fw, p in boot_files.items()})
    on_ipxe = {Firmware.BIOS: syslinux_file("pxelinux.0")} if boot_files.get(Firmware.BIOS) == "lpxelinux.0" else {}
    kw.setdefault("ipxe_boot_files", MappingProxyType(on_ipxe))
    return BootPolicy(boot_files=files, ipxe_boot_file=syslinux_file(ipxe_boot_file) if ipxe_boot_file else None,
                      **kw)
