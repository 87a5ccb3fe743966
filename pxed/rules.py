"""pxed's domain rules, each in one place: ids, titles, kernel command lines, reserved ids,
the server's base URL and the command-line placeholders.  Standard library only.

The checks raise :class:`ValueError` with a sentence saying what is wrong; each edge
turns it into its own error (:class:`~pxed.errors.ConfigError` with file and line in
pxed.conf, :class:`~pxed.errors.InvalidName` or ``InvalidArgument`` in the service).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

ID_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}\Z")
ID_HINT = "1 to 63 characters of a-z, 0-9, '.', '_' and '-', starting with a letter or digit"
MAX_TITLE = 60
MAX_CMDLINE = 2047  # bytes; syslinux's APPEND buffer, and far below GRUB's and Linux's limits
_CTRL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")

# The menu's tail, in menu order: ids every boot loader gives its built-in tools.
TOOL_IDS = ("local", "memtest", "hdt", "fwsetup", "reboot", "poweroff")
# Labels the loaders' own menus use (syslinux's top menu: select, pxe, sys).
LOADER_LABELS = ("select", "pxe", "sys")
RESERVED_IDS = frozenset(TOOL_IDS + LOADER_LABELS)

# Placeholders in an image's kernel command line (pxed.images.profiles).
PLACEHOLDERS = ("server", "base", "iso", "iso_kib")
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


def check_id(value: str) -> str:
    """An image or entry id: the rule shared by pxed.conf, the catalog, imports and menus."""
    if not ID_RE.match(value):
        raise ValueError(f"invalid id {value[:70]!r}: an id is {ID_HINT}")
    return value


def check_entry_id(value: str) -> str:
    """An id that becomes a menu entry: valid and not one of the menus' own."""
    check_id(value)
    if value in RESERVED_IDS:
        raise ValueError(f"{value!r} is reserved for pxed's own menu entries "
                         f"({', '.join(sorted(RESERVED_IDS))})")
    return value


def check_title(value: str) -> str:
    if _CTRL_RE.search(value) or "{{" in value or "{%" in value or not value.isprintable():
        raise ValueError("a title must be one line of printable text")
    if not value.strip() or len(value) > MAX_TITLE:
        raise ValueError(f"a title must have 1 to {MAX_TITLE} characters")
    return value


def check_cmdline(value: str) -> str:
    if _CTRL_RE.search(value):
        raise ValueError("a kernel command line must not contain control characters")
    if len(value.encode()) > MAX_CMDLINE:
        raise ValueError(f"a kernel command line must be at most {MAX_CMDLINE} bytes")
    return value


def base_host(address: ipaddress.IPv4Address, port: int) -> str:
    """The server as URLs name it: "ip", or "ip:port" off port 80."""
    return str(address) if port == 80 else f"{address}:{port}"


def http_url(host: str, path: str) -> str:
    return f"http://{host}/{path.lstrip('/')}"


def expand(template: str, values: Mapping[str, str]) -> str:
    """Fill the ``{name}`` placeholders of :data:`PLACEHOLDERS` that ``values`` has, in one pass.

    Placeholders without a value stay as they are (an import fills {iso}, the menus {server}
    later); a value is never expanded again, so an image path cannot inject a placeholder.
    """
    return _PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)
