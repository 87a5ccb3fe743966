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

# Paths a menu line or a URL may name (kernels, initrds, whole ISOs), relative to the boot root or
# an image directory: "/"-separated components of these characters only.  Each of them stands for
# itself in a syslinux LINUX/INITRD line, in a GRUB word and in an HTTP or TFTP request: no ','
# (INITRD's separator), no space, no control character, no '%' (an HTTP server percent-decodes, so
# "%2e%2e" would name another path), no quote.  With no '%' the decoding is the identity, and with
# no '.' or '..' component and no empty one, neither does normalisation change the path.
_BOOT_PATH_RE = re.compile(r"[A-Za-z0-9._+@~-]+(?:/[A-Za-z0-9._+@~-]+)*\Z")
MAX_BOOT_PATH = 1024
BOOT_PATH_HINT = "letters, digits and ._+@~- in '/'-separated names, none of them '.' or '..'"
# Command-line words a boot loader reads or writes itself: never carried over from an ISO's config
# (initrd= names files the menu's INITRD line already loads; BOOT_IMAGE=, BOOTIF= and SYSUUID= are
# set by the loader; a copy from the ISO would name another file or spoof the booting machine).
LOADER_PARAMS = frozenset({"initrd", "boot_image", "bootif", "sysuuid", "initrdefi"})

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


def check_boot_path(value: str) -> str:
    """A path that may go into a menu line or URL as it is (see :data:`_BOOT_PATH_RE`)."""
    if len(value) > MAX_BOOT_PATH or not _BOOT_PATH_RE.match(value) \
            or any(c in (".", "..") for c in value.split("/")):
        raise ValueError(f"unsafe path for a boot menu or URL {value[:80]!r}: a path is {BOOT_PATH_HINT}")
    return value


def is_loader_param(word: str) -> bool:
    """Whether a command-line word is one the boot loader handles (:data:`LOADER_PARAMS`)."""
    key, eq, _ = word.partition("=")
    return bool(eq) and key.lower() in LOADER_PARAMS


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
