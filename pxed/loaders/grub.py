"""GRUB as a boot loader backend: the distribution's signed shim + GRUB, for UEFI on x86-64 and arm64.

Boot root layout::

    shimx64.efi, grubx64.efi, mmx64.efi      x86-64 UEFI, PXE and HTTP Boot (arch 7, 9, 16)
    shimaa64.efi, grubaa64.efi, mmaa64.efi   arm64 UEFI, PXE and HTTP Boot (arch 11, 19)
    grub/grub.cfg                            the menu, for both
    debian-installer/<arch>/grub/grub.cfg    the same, where debian-installer's GRUB build looks

The firmware loads shim (signed by Microsoft's UEFI CA); shim loads ``grub<arch>.efi``
(signed by the distribution) from the directory it came from, and MokManager when a key
change is pending; GRUB verifies each kernel through shim.  Debian's network GRUB has the
prefix ``/grub`` on its boot server and reads ``grub/grub.cfg`` there.

Proxy DHCP: shim takes its server and file from pxed's answer when the network's DHCP ACK
names no file, but Debian 12's GRUB (2.06) takes its server from the network's ACK only
(``next-server``/siaddr, else option 66): it finds pxed's menu only when that names pxed.
docs/uefi-secure-boot.md has the capture and the fallback.

Kernels and initrds come over HTTP when GRUB can read ``grub/http.cfg`` over HTTP, else over
TFTP from the same boot root: Debian 12's signed GRUB cannot ("disk `http,...' not found"),
and GRUB 2.06 speaks HTTP on port 80 only.  Whole ISOs (memdisk) and HDT are BIOS programs and not
offered; memtest86+'s EFI build is unsigned, so its entry is left out when GRUB runs locked
down (Secure Boot: ``$lockdown`` is ``y``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pxed.loaders.base import Needed
from pxed.model import Firmware, Menu, Tool

CONFIG = "grub/grub.cfg"
# debian-installer's build of the same signed GRUB (grubnet*-installer.efi.signed, the GRUB in
# debian-installer-12-netboot-<arch>) has the prefix /debian-installer/<arch>/grub: the menu goes there too.
_DI_CONFIGS: Mapping[str, str] = {"x86_64": "debian-installer/amd64/grub/grub.cfg",
                                  "arm64": "debian-installer/arm64/grub/grub.cfg"}
HTTP_PROBE = "grub/http.cfg"  # grub.cfg sources it over HTTP: where that works, kernels come over HTTP
_X64 = frozenset({Firmware.EFI64, Firmware.HTTP64})
_AA64 = frozenset({Firmware.ARM64, Firmware.HTTPARM64})
_BOOT_FILES: Mapping[Firmware, str] = {
    Firmware.EFI64: "shimx64.efi", Firmware.HTTP64: "shimx64.efi",
    Firmware.ARM64: "shimaa64.efi", Firmware.HTTPARM64: "shimaa64.efi",
}
_DEBIAN, _FEDORA, _ARCH = "Debian/Ubuntu", "Fedora", "Arch"
_DI = "/usr/lib/debian-installer/images/12"  # debian-installer-12-netboot-<arch> (Architecture: all)


def _chain(arch: str, efi: str, deb_arch: str, di_shim: str, fedora: tuple[str, str],
           firmware: frozenset[Firmware]) -> tuple[Needed, ...]:
    """shim, GRUB and MokManager for one CPU (x64, aa64): the signed packages, then d-i's netboot copy."""
    di = f"{_DI}/{deb_arch}/text/debian-installer/{deb_arch}"
    fshim, fgrub = fedora
    return (
        Needed(f"signed shim ({arch})",
               (f"/usr/lib/shim/shim{arch}.efi.signed", f"{di}/{di_shim}", f"/boot/efi/EFI/fedora/shim{arch}.efi",
                f"/usr/share/shim-signed/shim{arch}.efi"),
               f"shim{arch}.efi", ((_DEBIAN, "shim-signed"), (_FEDORA, fshim), (_ARCH, "shim-signed (AUR)")), firmware),
        Needed(f"signed network GRUB ({arch})",
               (f"/usr/lib/grub/{efi}-efi-signed/grubnet{arch}.efi.signed", f"{di}/grub{arch}.efi",
                f"/boot/efi/EFI/fedora/grub{arch}.efi"),
               f"grub{arch}.efi", ((_DEBIAN, f"grub-efi-{deb_arch}-signed"), (_FEDORA, fgrub)), firmware),
        Needed(f"MokManager ({arch})", (f"/usr/lib/shim/mm{arch}.efi.signed", f"/boot/efi/EFI/fedora/mm{arch}.efi"),
               f"mm{arch}.efi", ((_DEBIAN, "shim-signed"), (_FEDORA, fshim)), firmware, optional=True),
    )


NEEDED: tuple[Needed, ...] = (
    *_chain("x64", "x86_64", "amd64", "bootnetx64.efi", ("shim-x64", "grub2-efi-x64"), _X64),
    *_chain("aa64", "arm64", "arm64", "bootnetaa64.efi", ("shim-aa64", "grub2-efi-aa64"), _AA64),
)
# GRUB's name for each CPU ($grub_cpu), and the firmware classes running it.
_CPUS: Mapping[str, frozenset[Firmware]] = {"x86_64": _X64, "arm64": _AA64}
# Tools GRUB offers, and where: HDT is a syslinux BIOS module; memtest86+'s EFI build is x86-64 only.
_TOOL_FIRMWARE: Mapping[str, frozenset[Firmware]] = {"hdt": frozenset(), "memtest": _X64}


def quote(value: Any) -> str:
    """One GRUB word holding exactly ``value``: single-quoted, a quote as ``'\\''`` (grub-mkconfig's rule).

    Inside single quotes GRUB expands nothing ($, ;, {, }, \\ are plain), so no value can add a command.
    """
    return "'" + str(value).replace("'", "'\\''") + "'"


def words(cmdline: str) -> str:
    """A kernel command line as quoted GRUB words (GRUB joins them with single spaces for the kernel)."""
    return " ".join(quote(w) for w in cmdline.split())


class Grub:
    name = "grub"
    firmware: frozenset[Firmware] = frozenset(_BOOT_FILES)

    def boot_file(self, firmware: Firmware) -> str:
        return _BOOT_FILES[firmware]

    def ipxe_boot_file(self, firmware: Firmware) -> str | None:
        return None

    def dhcp_options(self, boot_file: str) -> tuple[tuple[int, bytes], ...]:
        return ()

    def needed(self, firmware: frozenset[Firmware]) -> tuple[Needed, ...]:
        return tuple(n for n in NEEDED if n.firmware & firmware)

    def render(self, menu: Menu, firmware: frozenset[Firmware], *,
               template_dir: Path | None) -> Mapping[str, str]:
        from pxed.loaders import render  # jinja2: imported when first needed, off pxed's cold start

        served = firmware & self.firmware
        if not served:
            return {}
        ip, _, port = menu.host.partition(":")

        def url(path: str) -> str:  # $pxed: the server as GRUB names it, (http,IP) or (tftp,IP)
            return "${pxed}/" + quote(render.boot_path(path))

        env = render.environment(template_dir, {"url": url, "quote": quote, "words": words})
        entries, default = render.entries(menu, whole_isos=False)  # memdisk is a BIOS program
        cpus = [cpu for cpu, classes in _CPUS.items() if classes & served]
        tools = []
        for t in menu.tools:
            where = t.firmware & _TOOL_FIRMWARE.get(t.id, t.firmware) & served
            if where:
                tool = _tool(t)
                tool["cpus"] = [cpu for cpu in cpus if _CPUS[cpu] & where]
                tools.append(tool)
        unit, _, speed = menu.serial.partition(" ")
        ctx = {"menu": {"title": menu.title, "timeout": _seconds(menu.timeout), "serial_unit": unit,
                        "serial_speed": speed or "115200"},
               "entries": entries, "default": default, "tools": tools, "cpus": cpus, "server": ip,
               "http": port in ("", "80")}  # GRUB 2.06 speaks HTTP on port 80 only
        text = render.render(env, "grub/grub.cfg.j2", ctx)
        files = {CONFIG: text} | {_DI_CONFIGS[cpu]: text for cpu in cpus}
        if ctx["http"]:
            files[HTTP_PROBE] = f"# Generated by pxed: read over HTTP, it proves GRUB can fetch kernels that way.\n" \
                                f"set pxed={quote(f'(http,{ip})')}\n"
        return files


def _seconds(tenths: int) -> int:
    """syslinux's TIMEOUT (tenths, 0 = for ever) as GRUB's (whole seconds, -1 = for ever)."""
    return -1 if tenths == 0 else max(1, -(-tenths // 10))


def _tool(tool: Tool) -> dict[str, Any]:
    return {"id": tool.id, "title": tool.title, "path": tool.efi_path or tool.path}


GRUB = Grub()
