"""The one menu model, built from pxed.conf, the entries and the boot root, and rendered by the loaders.

:func:`build_menu` is pure: it checks the entries (ids valid, unique, none reserved) and
lays out the tail from what the boot root offers.  :func:`render_menus` asks each loader
in use ([Boot] *Loader=) for its files; :func:`write_menus` writes them atomically.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from pathlib import Path

from pxed import loaders, rules
from pxed.config import Config
from pxed.errors import InvalidArgument
from pxed.fsutil import atomic_write
from pxed.model import ALL_FIRMWARE, BootEntry, Firmware, Installed, Menu, Tool

TEMPLATE_DIR = Path("/etc/pxed/templates")
_BIOS = frozenset({Firmware.BIOS})
_UEFI = frozenset(fw for fw in Firmware if fw.is_uefi)
_X64_UEFI = frozenset({Firmware.EFI64, Firmware.HTTP64})  # memtest86+'s EFI build is x86-64


def tools(config: Config, installed: Installed) -> tuple[Tool, ...]:
    """The menu's tail, in the order of :data:`pxed.rules.TOOL_IDS`, as far as it is installed and wanted."""
    out = [Tool("local", "Boot existing OS", ALL_FIRMWARE)]
    if (installed.memtest or installed.memtest_efi) and config.menu.memtest:
        where = (_BIOS if installed.memtest else frozenset()) | (_X64_UEFI if installed.memtest_efi else frozenset())
        out.append(Tool("memtest", "Run Memtest86+ (RAM test)", where, path=installed.memtest,
                        efi_path=installed.memtest_efi))
    if installed.hdt and config.menu.hdt:
        args = tuple((k, v) for k, v in (("pciids", installed.pciids), ("modules_alias", installed.modalias)) if v)
        out.append(Tool("hdt", "Hardware Information (HDT)", _BIOS, path=installed.hdt, args=args))
    out += [Tool("fwsetup", "UEFI Firmware Settings", _UEFI), Tool("reboot", "Reboot", ALL_FIRMWARE),
            Tool("poweroff", "Power Off", ALL_FIRMWARE)]
    assert [t.id for t in out] == [i for i in rules.TOOL_IDS if i in {t.id for t in out}]
    return tuple(out)


def build_menu(config: Config, entries: Sequence[BootEntry], host: str, installed: Installed) -> Menu:
    """The menu model; raises InvalidArgument for an entry no menu may hold."""
    seen: set[str] = set()
    for e in entries:
        try:
            rules.check_entry_id(e.id)
        except ValueError as err:
            raise InvalidArgument(f"menu entry refused: {err}") from None
        if e.id in seen:
            raise InvalidArgument(f"duplicate menu entry id {e.id!r}")
        seen.add(e.id)
    m = config.menu
    return Menu(title=m.title, timeout=m.timeout, serial=m.serial, splash=m.splash, default=m.default,
                entries=tuple(entries), tools=tools(config, installed), host=host)


def render_menus(config: Config, entries: Sequence[BootEntry], server: ipaddress.IPv4Address, *,
                 installed: Installed, template_dir: Path | None = TEMPLATE_DIR) -> dict[str, str]:
    """All menu files: relative path under the boot root → text.  Raises InvalidArgument."""
    menu = build_menu(config, entries, rules.base_host(server, config.http_port), installed)
    files: dict[str, str] = {}
    for loader, classes in loaders.plan(config.loaders):
        files.update(loader.render(menu, classes, template_dir=template_dir))
    return files


def write_menus(boot_root: Path, files: Mapping[str, str]) -> None:
    """Write each file atomically: a client never reads a half-written menu."""
    for rel, text in files.items():
        dest = boot_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        atomic_write(dest, text.encode())
