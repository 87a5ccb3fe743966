"""The jinja2 sandbox the loaders render their templates in, and the value filters.

Boot-loader configs are line-oriented and have no quoting pxed can rely on, so values
are *validated*, not escaped: every ``{{ }}`` result passes :func:`_finalize` (no
control characters, no ``None``), labels pass :func:`token`, paths
that are fetched (menu lines and URLs) :func:`boot_path`, titles
:func:`menu_text`, command lines :func:`cmdline`; a violation raises
:class:`~pxed.errors.InvalidArgument` and nothing is written.  Templates ship in the
package (``pxed/templates/<loader>/``) and may be overridden by files of the same name
under ``/etc/pxed/templates/<loader>/``; all of them run in jinja2's immutable sandbox.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pxed import rules
from pxed.errors import InvalidArgument
from pxed.model import BootEntry, Menu

TEMPLATE_DIR = Path("/etc/pxed/templates")
MAX_FILE_BYTES = 1 << 20
_CTRL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_TOKEN = re.compile(r"[A-Za-z0-9._/:+@=,%~-]+\Z")


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
        raise InvalidArgument(f"not a safe path or label for a boot menu: {text[:60]!r}")
    return text


def boot_path(value: Any) -> str:
    """A path as a menu line or URL names it (leading '/' dropped): :func:`pxed.rules.check_boot_path`.

    Refused, never escaped: the allowed characters are literal in syslinux, GRUB, TFTP and HTTP,
    so what the loader fetches, decoded and normalised as an HTTP server does, is this very path.
    """
    try:
        return rules.check_boot_path(token(value).lstrip("/"))
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def entries(menu: Menu, *, whole_isos: bool) -> tuple[list[dict[str, Any]], str]:
    """The menu's entries as the templates get them, and the id to boot on timeout.

    Whole ISOs (memdisk) only where ``whole_isos``; the default is [Menu] Default= when that
    entry is there, else the first entry, else the local disk.  Entries go in as dicts: the
    sandbox then looks their fields up as items, without the per-attribute safety check that
    makes 1,000 dataclass entries cost tens of milliseconds.
    """
    shown = [{f: getattr(e, f) for f in BootEntry.__dataclass_fields__} for e in menu.entries
             if whole_isos or e.kind != "memdisk"]
    ids: list[str] = [e["id"] for e in shown]
    if menu.default is not None and menu.default in ids:
        return shown, menu.default
    return shown, ids[0] if ids else "local"


def menu_text(value: Any, maxlen: int = rules.MAX_TITLE) -> str:
    """A title: one printable line (refused otherwise, never escaped); '^' (hotkey marker) dropped."""
    raw = str(value)
    if _CTRL.search(raw) or "{{" in raw or "{%" in raw or not raw.isprintable():
        raise InvalidArgument(f"title is not printable single-line text: {raw[:60]!r}")
    return " ".join(raw.split()).replace("^", "")[:maxlen]


def cmdline(value: Any) -> str:
    try:
        return rules.check_cmdline(str(value))
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def environment(template_dir: Path | None, filters: dict[str, Callable[..., Any]]) -> jinja2.Environment:
    loaders: list[jinja2.BaseLoader] = []
    if template_dir is not None and template_dir.is_dir():
        loaders.append(jinja2.FileSystemLoader(os.fspath(template_dir)))
    loaders.append(jinja2.PackageLoader("pxed", "templates"))
    env = ImmutableSandboxedEnvironment(
        loader=jinja2.ChoiceLoader(loaders), autoescape=False, undefined=jinja2.StrictUndefined,
        finalize=_finalize, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
    )
    env.filters.update(token=token, menu_text=menu_text, cmdline=cmdline, **filters)
    return env


def render(env: jinja2.Environment, name: str, context: dict[str, Any]) -> str:
    text = env.get_template(name).render(context)
    if len(text) > MAX_FILE_BYTES:
        raise InvalidArgument(f"rendered {name} is larger than {MAX_FILE_BYTES} bytes")
    return text
