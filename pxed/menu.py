"""Render syslinux menus from jinja2 templates: a pure function of config, entries and address.

syslinux configs are line-oriented and have no quoting, so values cannot be escaped:
they are *validated*.  Every ``{{ }}`` result passes :func:`_finalize` (no control
characters, no ``None``), paths and labels pass :func:`token`, titles
:func:`menu_text`, command lines :func:`cmdline`; a violation raises
:class:`~pxed.errors.InvalidArgument` and nothing is written.  Templates ship in the
package and may be overridden by files of the same name in ``/etc/pxed/templates``;
all of them run in jinja2's immutable sandbox.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pxed.boottree import MenuExtras
from pxed.config import ID_RE, Config
from pxed.errors import InvalidArgument
from pxed.fsutil import atomic_write
from pxed.model import BootEntry, Firmware

TEMPLATE_DIR = Path("/etc/pxed/templates")
MAX_APPEND = 2047
MAX_MENU_BYTES = 1 << 20
_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TOKEN = re.compile(r"[A-Za-z0-9._/:+@=,%~-]+\Z")
# The menus of each firmware: directory (the option-210 path prefix) → firmware name.
FIRMWARE_DIRS: Mapping[str, Firmware] = {"": Firmware.BIOS, "efi64/": Firmware.EFI64}


def _finalize(value: Any) -> str:
    if value is None:
        raise InvalidArgument("a menu value is missing (None)")
    text = str(value)
    if _CTRL.search(text):
        raise InvalidArgument(f"control character in menu value {text[:60]!r}")
    return text


def token(value: Any) -> str:
    text = str(value)
    if not _TOKEN.match(text):
        raise InvalidArgument(f"not a safe path or label for a syslinux menu: {text[:60]!r}")
    return text


def menu_text(value: Any, maxlen: int = 60) -> str:
    """A title: one printable line (refused otherwise, never escaped); '^' (hotkey marker) dropped."""
    raw = str(value)
    if _CTRL.search(raw) or "{{" in raw or "{%" in raw or not raw.isprintable():
        raise InvalidArgument(f"title is not printable single-line text: {raw[:60]!r}")
    return " ".join(raw.split()).replace("^", "")[:maxlen]


def cmdline(value: Any) -> str:
    text = str(value)
    if _CTRL.search(text):
        raise InvalidArgument("control character in a kernel command line")
    if len(text.encode()) > MAX_APPEND:
        raise InvalidArgument(f"kernel command line is longer than {MAX_APPEND} bytes")
    return text


def _environment(template_dir: Path | None) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None and template_dir.is_dir():
        loaders.append(jinja2.FileSystemLoader(os.fspath(template_dir)))
    loaders.append(jinja2.PackageLoader("pxed", "templates"))
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders), autoescape=False, undefined=jinja2.StrictUndefined,
        finalize=_finalize, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters.update(token=token, menu_text=menu_text, cmdline=cmdline)
    return env


def render_menus(config: Config, entries: Sequence[BootEntry], server: ipaddress.IPv4Address, *,
                 extras: MenuExtras, template_dir: Path | None = TEMPLATE_DIR) -> dict[str, str]:
    """All menu files: relative path under the boot root → text.  Raises InvalidArgument."""
    seen: set[str] = set()
    for e in entries:
        if not ID_RE.match(e.id):
            raise InvalidArgument(f"invalid menu entry id {e.id!r}")
        if e.id in seen or e.id in ("local", "memtest", "hdt", "reboot", "poweroff", "select", "pxe", "sys"):
            raise InvalidArgument(f"duplicate or reserved menu entry id {e.id!r}")
        seen.add(e.id)
    host = str(server) if config.http_port == 80 else f"{server}:{config.http_port}"

    def url(path: str) -> str:
        return f"http://{host}/{token(path).lstrip('/')}"

    env = _environment(template_dir)
    env.filters["url"] = url
    files: dict[str, str] = {}
    for prefix, firmware in FIRMWARE_DIRS.items():
        if firmware is Firmware.EFI64 and not extras.efi64:
            continue
        usable = [e for e in entries if firmware is Firmware.BIOS or e.kind != "memdisk"]
        ids = [e.id for e in usable]
        default = config.menu.default if config.menu.default in ids else (ids[0] if ids else "local")
        # Entries go in as dicts: the sandbox then looks their fields up as items, without the
        # per-attribute safety check that makes 1,000 dataclass entries cost tens of milliseconds.
        ctx = {"menu": config.menu, "entries": [_fields(e) for e in usable], "default": default, "extras": extras,
               "firmware": firmware.value, "server": host}
        for name in ("top", "pxe", "sys"):
            text = env.get_template(f"menu/{name}.cfg.j2").render(ctx)
            if len(text) > MAX_MENU_BYTES:
                raise InvalidArgument(f"rendered menu {name} is larger than {MAX_MENU_BYTES} bytes")
            rel = "default" if name == "top" else f"{name}.cfg"
            files[f"{prefix}pxelinux.cfg/{rel}"] = text
    return files


def _fields(entry: BootEntry) -> dict[str, Any]:
    return {f: getattr(entry, f) for f in BootEntry.__dataclass_fields__}


def write_menus(boot_root: Path, files: Mapping[str, str]) -> None:
    """Write each file atomically: a client never reads a half-written menu."""
    for rel, text in files.items():
        dest = boot_root / rel
        dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
        atomic_write(dest, text.encode())
