"""SYSLINUX as a boot loader backend: lpxelinux.0 for BIOS, syslinux.efi for x86-64 UEFI.

Boot root layout::

    lpxelinux.0, ldlinux.c32, *.c32, memdisk      BIOS (option 210 prefix "/")
    pxelinux.0                                    BIOS on iPXE's network stack
    efi64/syslinux.efi, efi64/ldlinux.e64, *.c32  x86-64 UEFI, PXE and HTTP Boot (prefix "efi64/")
    <prefix>pxelinux.cfg/default                  whichsys.c32: the PXE menu, or the local disk
    <prefix>pxelinux.cfg/pxe.cfg, sys.cfg

On iPXE's network stack (the NIC ROM of QEMU and of many servers, or a chained
undionly.kpxe) BIOS clients get ``pxelinux.0`` instead: the same syslinux without lwIP,
which fetches ``http://`` through iPXE's own TCP (PXENV_FILE_OPEN).  lpxelinux's lwIP ends
about one HTTP download in fifteen early there ("Boot failed"; docs/boot-failures.md).

Option 209 names the config file and 210 the directory the boot file came from, so
both builds find their own modules and menus (pxelinux reads them before its own
guesses).  Whole ISOs (memdisk) boot on BIOS only; power off needs poweroff.c32,
which exists for BIOS only.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pxed.dhcp.options import Opt
from pxed.loaders.base import Needed
from pxed.model import Firmware, Menu, Tool

CONFIG_FILE = b"pxelinux.cfg/default"
# The menus of each firmware class: directory (the option-210 path prefix), and the
# firmware name the templates see.
_DIRS: Mapping[Firmware, tuple[str, str]] = {
    Firmware.BIOS: ("", "bios"),
    Firmware.EFI64: ("efi64/", "efi64"),
    Firmware.HTTP64: ("efi64/", "efi64"),
}
_BOOT_FILES: Mapping[Firmware, str] = {
    Firmware.BIOS: "lpxelinux.0",
    Firmware.EFI64: "efi64/syslinux.efi",
    Firmware.HTTP64: "efi64/syslinux.efi",
}
_BIOS = frozenset({Firmware.BIOS})
_EFI = frozenset({Firmware.EFI64, Firmware.HTTP64})
_DEBIAN, _ARCH = "Debian/Ubuntu", "Arch"

REQUIRED_BIOS_MODULES = ("ldlinux.c32", "libcom32.c32", "libutil.c32", "vesamenu.c32", "menu.c32", "whichsys.c32",
                         "chain.c32", "reboot.c32", "poweroff.c32")
REQUIRED_EFI64_MODULES = ("ldlinux.e64", "libcom32.c32", "libutil.c32", "vesamenu.c32", "menu.c32",
                          "whichsys.c32", "reboot.c32")
NEEDED: tuple[Needed, ...] = (
    Needed("lpxelinux.0", ("/usr/lib/PXELINUX/lpxelinux.0", "/usr/lib/syslinux/bios/lpxelinux.0",
                           "/usr/share/syslinux/lpxelinux.0"),
           "lpxelinux.0", ((_DEBIAN, "pxelinux"), (_ARCH, "syslinux")), _BIOS),
    Needed("pxelinux.0", ("/usr/lib/PXELINUX/pxelinux.0", "/usr/lib/syslinux/bios/pxelinux.0",
                          "/usr/share/syslinux/pxelinux.0"),
           "pxelinux.0", ((_DEBIAN, "pxelinux"), (_ARCH, "syslinux")), _BIOS),
    Needed("memdisk", ("/usr/lib/syslinux/memdisk", "/usr/lib/syslinux/bios/memdisk", "/usr/share/syslinux/memdisk"),
           "memdisk", ((_DEBIAN, "syslinux-common"), (_ARCH, "syslinux")), _BIOS),
    Needed("BIOS syslinux modules", ("/usr/lib/syslinux/modules/bios", "/usr/lib/syslinux/bios", "/usr/share/syslinux"),
           "", ((_DEBIAN, "syslinux-common"), (_ARCH, "syslinux")), _BIOS,
           suffixes=(".c32",), required=REQUIRED_BIOS_MODULES),
    Needed("syslinux.efi", ("/usr/lib/SYSLINUX.EFI/efi64/syslinux.efi", "/usr/lib/syslinux/efi64/syslinux.efi",
                            "/usr/share/syslinux/efi64/syslinux.efi"),
           "efi64/syslinux.efi", ((_DEBIAN, "syslinux-efi"), (_ARCH, "syslinux")), _EFI),
    Needed("x86-64 UEFI syslinux modules",
           ("/usr/lib/syslinux/modules/efi64", "/usr/lib/syslinux/efi64", "/usr/share/syslinux/efi64"),
           "efi64/", ((_DEBIAN, "syslinux-efi"), (_ARCH, "syslinux")), _EFI,
           suffixes=(".c32", ".e64"), required=REQUIRED_EFI64_MODULES),
)
# What each tool needs from syslinux beyond the tool's own firmware.
# syslinux.efi cannot start EFI programs (memtest86+'s EFI build) nor enter firmware setup.
_TOOL_FIRMWARE: Mapping[str, frozenset[Firmware]] = {"poweroff": _BIOS, "memtest": _BIOS, "fwsetup": frozenset()}


def path_prefix(boot_file: str) -> bytes:
    head, sep, _ = boot_file.rpartition("/")
    return (head + "/").encode() if sep else b"/"


class Syslinux:
    name = "syslinux"
    firmware: frozenset[Firmware] = frozenset(_DIRS)

    def boot_file(self, firmware: Firmware) -> str:
        return _BOOT_FILES[firmware]

    def ipxe_boot_file(self, firmware: Firmware) -> str | None:
        return "pxelinux.0" if firmware is Firmware.BIOS else None

    def dhcp_options(self, boot_file: str) -> tuple[tuple[int, bytes], ...]:
        return ((Opt.PXELINUX_CONFIGFILE, CONFIG_FILE), (Opt.PXELINUX_PATHPREFIX, path_prefix(boot_file)))

    def needed(self, firmware: frozenset[Firmware]) -> tuple[Needed, ...]:
        return tuple(n for n in NEEDED if n.firmware & firmware)

    def render(self, menu: Menu, firmware: frozenset[Firmware], *,
               template_dir: Path | None) -> Mapping[str, str]:
        from pxed.loaders import render  # jinja2: imported when first needed, off pxed's cold start

        def url(path: str) -> str:
            return f"http://{menu.host}/{render.boot_path(path)}"

        env = render.environment(template_dir, {"url": url})
        head = {"title": menu.title, "timeout": menu.timeout, "serial": menu.serial, "splash": menu.splash}
        files: dict[str, str] = {}
        for fw in sorted(firmware & self.firmware, key=list(Firmware).index):
            prefix, name = _DIRS[fw]
            if f"{prefix}pxelinux.cfg/default" in files:
                continue  # UEFI PXE and HTTP Boot share efi64/
            entries, default = render.entries(menu, whole_isos=fw is Firmware.BIOS)
            tools = [_tool(t) for t in menu.tools if fw in t.firmware and fw in _TOOL_FIRMWARE.get(t.id, {fw})]
            ctx = {"menu": head, "entries": entries, "default": default, "tools": tools,
                   "firmware": name, "server": menu.host}
            for template, rel in (("top", "default"), ("pxe", "pxe.cfg"), ("sys", "sys.cfg")):
                files[f"{prefix}pxelinux.cfg/{rel}"] = render.render(env, f"syslinux/{template}.cfg.j2", ctx)
        return files


def _tool(tool: Tool) -> dict[str, Any]:
    return {"id": tool.id, "title": tool.title, "path": tool.path, "args": list(tool.args)}


SYSLINUX = Syslinux()
