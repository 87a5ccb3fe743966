"""SYSLINUX on iPXE's network stack for every BIOS client: undionly.kpxe first, then pxelinux.0.

``[Boot] BIOSLoader=syslinux-ipxe``.  A BIOS client whose PXE ROM is not iPXE gets
``undionly.kpxe`` (Debian's ``ipxe``), which runs iPXE over the ROM's UNDI driver and asks
again; pxed sees iPXE and answers ``pxelinux.0``, which fetches ``http://`` through iPXE's TCP
(PXENV_FILE_OPEN) instead of lpxelinux's lwIP, the stack that ends about one HTTP download in
fifteen early (docs/boot-failures.md).  Clients whose ROM is iPXE already get ``pxelinux.0``
straight away, as with ``syslinux``.  Menus, modules and the boot-root layout are syslinux's.
"""

from __future__ import annotations

from pxed.loaders.base import Needed
from pxed.loaders.syslinux import Syslinux
from pxed.model import Firmware

UNDIONLY = Needed("undionly.kpxe", ("/usr/lib/ipxe/undionly.kpxe", "/usr/share/ipxe/undionly.kpxe"),
                  "undionly.kpxe", (("Debian/Ubuntu", "ipxe"), ("Fedora", "ipxe-bootimgs-x86"), ("Arch", "ipxe")),
                  frozenset({Firmware.BIOS}))


class SyslinuxIpxe(Syslinux):
    name = "syslinux-ipxe"
    firmware: frozenset[Firmware] = frozenset({Firmware.BIOS})

    def boot_file(self, firmware: Firmware) -> str:
        return UNDIONLY.dest

    def needed(self, firmware: frozenset[Firmware]) -> tuple[Needed, ...]:
        return (*super().needed(firmware), UNDIONLY)


SYSLINUX_IPXE = SyslinuxIpxe()
