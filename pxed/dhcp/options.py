"""DHCP option codes and the TLV codec (RFC 2132, RFC 3396, PXE 2.1 vendor options).

Options are kept as raw bytes keyed by code: nothing is lost on a round trip, and
typed views are taken only where a rule needs them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping

from pxed.errors import MalformedPacket


class Opt(enum.IntEnum):
    PAD = 0
    SUBNET_MASK = 1
    HOSTNAME = 12
    VENDOR_SPECIFIC = 43  # PXE sub-options
    REQUESTED_IP = 50
    OVERLOAD = 52
    MESSAGE_TYPE = 53
    SERVER_ID = 54
    PARAMETER_LIST = 55
    MAX_MESSAGE_SIZE = 57
    VENDOR_CLASS = 60
    CLIENT_ID = 61
    TFTP_SERVER = 66
    BOOTFILE = 67
    USER_CLASS = 77
    CLIENT_ARCH = 93
    CLIENT_NDI = 94
    CLIENT_GUID = 97
    PXELINUX_CONFIGFILE = 209
    PXELINUX_PATHPREFIX = 210
    END = 255


class MessageType(enum.IntEnum):
    DISCOVER = 1
    OFFER = 2
    REQUEST = 3
    DECLINE = 4
    ACK = 5
    NAK = 6
    RELEASE = 7
    INFORM = 8


class PxeSub(enum.IntEnum):
    """Sub-options of option 43 for PXE clients."""

    DISCOVERY_CONTROL = 6
    BOOT_SERVERS = 8
    BOOT_MENU = 9
    MENU_PROMPT = 10
    BOOT_ITEM = 71


# Options whose value has a fixed length when present.
FIXED_LENGTH: Mapping[int, int] = {
    Opt.SUBNET_MASK: 4, Opt.REQUESTED_IP: 4, Opt.OVERLOAD: 1, Opt.MESSAGE_TYPE: 1, Opt.SERVER_ID: 4,
    Opt.MAX_MESSAGE_SIZE: 2, Opt.CLIENT_NDI: 3,
}


def decode_tlv(data: bytes, *, where: str = "options", start: int = 0) -> dict[int, bytes]:
    """Walk code/length/value triples from `start` until END; repeated codes are concatenated (RFC 3396)."""
    out: dict[int, bytes] = {}
    i, n = start, len(data)
    while i < n:
        code = data[i]
        if code == 0:  # PAD
            i += 1
            continue
        if code == 255:  # END
            return out
        if i + 1 >= n:
            raise MalformedPacket(f"{where}: option {code} has no length byte")
        length = data[i + 1]
        end = i + 2 + length
        if end > n:
            raise MalformedPacket(f"{where}: option {code} claims {length} bytes, {n - i - 2} remain")
        if code in out:
            out[code] += data[i + 2:end]
        else:
            out[code] = data[i + 2:end]
        i = end
    return out


def encode_tlv(options: Iterable[tuple[int, bytes]], *, end: bool = True) -> bytes:
    """Encode options in the given order; values over 255 bytes are split (RFC 3396)."""
    parts: list[bytes] = []
    for code, value in options:
        if not 0 < code < 255:
            raise ValueError(f"option code {code} cannot be encoded")
        if not value:
            parts.append(bytes((code, 0)))
        for off in range(0, len(value), 255):
            chunk = value[off:off + 255]
            parts.append(bytes((code, len(chunk))) + chunk)
    if end:
        parts.append(bytes((Opt.END,)))
    return b"".join(parts)


def check_fixed_lengths(options: Mapping[int, bytes]) -> None:
    for code, size in FIXED_LENGTH.items():
        if code in options and len(options[code]) != size:
            raise MalformedPacket(f"option {code} must have {size} bytes, has {len(options[code])}")


def user_classes(raw: bytes) -> tuple[bytes, ...]:
    """Option 77 in either encoding: RFC 3004 counted list, or a bare string as iPXE sends."""
    items: list[bytes] = []
    i = 0
    while i < len(raw):
        n = raw[i]
        if n == 0 or i + 1 + n > len(raw):
            return (raw,)  # not a well-formed counted list: a plain string
        items.append(raw[i + 1:i + 1 + n])
        i += 1 + n
    return tuple(items) if items else (raw,)
