"""The BOOTP/DHCP packet: parse bytes into a frozen :class:`Packet`, encode it back.

:func:`parse` raises :class:`~pxed.errors.MalformedPacket` and nothing else, on any
input.  :func:`encode` pads to 300 bytes and NUL-terminates ``file``/``sname``, as
buggy PXE ROMs need (protocol.md G8).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from types import MappingProxyType

from pxed.dhcp.options import MessageType, Opt, check_fixed_lengths, decode_tlv, encode_tlv
from pxed.errors import MalformedPacket

MAGIC = b"\x63\x82\x53\x63"
_HEADER = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")
HEADER_SIZE = _HEADER.size  # 236
MIN_REPLY_SIZE = 300
BOOTREQUEST, BOOTREPLY = 1, 2
FLAG_BROADCAST = 0x8000
ZERO = ipaddress.IPv4Address(0)


@dataclass(frozen=True, slots=True)
class Packet:
    op: int
    xid: int
    chaddr: bytes  # the hlen significant bytes
    htype: int = 1
    hops: int = 0
    secs: int = 0
    flags: int = 0
    ciaddr: ipaddress.IPv4Address = ZERO
    yiaddr: ipaddress.IPv4Address = ZERO
    siaddr: ipaddress.IPv4Address = ZERO
    giaddr: ipaddress.IPv4Address = ZERO
    sname: bytes = b""
    file: bytes = b""
    options: Mapping[int, bytes] = field(default_factory=lambda: MappingProxyType({}))
    option_order: tuple[int, ...] = ()

    # ------------------------------------------------------------ typed views
    def opt(self, code: int) -> bytes | None:
        return self.options.get(code)

    @property
    def message_type(self) -> MessageType | None:
        raw = self.options.get(Opt.MESSAGE_TYPE)
        if raw is None or len(raw) != 1:
            return None
        try:
            return MessageType(raw[0])
        except ValueError:
            return None

    @property
    def mac(self) -> str:
        return self.chaddr.hex(":")

    def with_options(self, options: list[tuple[int, bytes]]) -> Packet:
        return replace(self, options=MappingProxyType(dict(options)), option_order=tuple(c for c, _ in options))


def parse(data: bytes) -> Packet:
    """Decode a BOOTP/DHCP datagram.  Raises MalformedPacket only."""
    try:
        return _parse(data)
    except MalformedPacket:
        raise
    except Exception as e:  # defence in depth: nothing else may escape
        raise MalformedPacket(f"undecodable packet: {type(e).__name__}: {e}") from None


def _parse(data: bytes) -> Packet:
    if len(data) < HEADER_SIZE + len(MAGIC):
        raise MalformedPacket(f"packet of {len(data)} bytes is shorter than a DHCP header")
    (op, htype, hlen, hops, xid, secs, flags, ci, yi, si, gi, chaddr, sname, file) = _HEADER.unpack_from(data)
    if op not in (BOOTREQUEST, BOOTREPLY):
        raise MalformedPacket(f"op {op} is neither BOOTREQUEST nor BOOTREPLY")
    if hlen > 16:
        raise MalformedPacket(f"hlen {hlen} exceeds 16")
    if data[HEADER_SIZE:HEADER_SIZE + 4] != MAGIC:
        raise MalformedPacket("no DHCP magic cookie")
    opts = decode_tlv(data, start=HEADER_SIZE + 4)
    order = list(opts)
    overload = opts.get(Opt.OVERLOAD)
    if overload is not None:
        if len(overload) != 1 or overload[0] not in (1, 2, 3):
            raise MalformedPacket("invalid option overload (52)")
        extra: dict[int, bytes] = {}
        if overload[0] & 1:
            extra.update(decode_tlv(file, where="overloaded file field"))
            file = b""
        if overload[0] & 2:
            for code, value in decode_tlv(sname, where="overloaded sname field").items():
                extra[code] = extra.get(code, b"") + value
            sname = b""
        for code, value in extra.items():
            if code == Opt.OVERLOAD:
                raise MalformedPacket("option overload inside an overloaded field")
            opts[code] = opts.get(code, b"") + value
            if code not in order:
                order.append(code)
        del opts[Opt.OVERLOAD]
        order.remove(Opt.OVERLOAD)
    check_fixed_lengths(opts)
    return Packet(
        op=op, htype=htype, hops=hops, xid=xid, secs=secs, flags=flags, chaddr=chaddr[:hlen],
        ciaddr=ipaddress.IPv4Address(ci), yiaddr=ipaddress.IPv4Address(yi),
        siaddr=ipaddress.IPv4Address(si), giaddr=ipaddress.IPv4Address(gi),
        sname=sname.split(b"\0", 1)[0], file=file.split(b"\0", 1)[0],
        options=MappingProxyType(opts), option_order=tuple(order),
    )


def encode(p: Packet, *, pad_to: int = MIN_REPLY_SIZE) -> bytes:
    if len(p.sname) > 63 or len(p.file) > 127:
        raise ValueError("sname/file too long to be NUL-terminated")
    order = list(p.option_order) + [c for c in p.options if c not in p.option_order]
    header = _HEADER.pack(
        p.op, p.htype, len(p.chaddr), p.hops, p.xid, p.secs, p.flags,
        p.ciaddr.packed, p.yiaddr.packed, p.siaddr.packed, p.giaddr.packed,
        p.chaddr.ljust(16, b"\0"), p.sname.ljust(64, b"\0"), p.file.ljust(128, b"\0"),
    )
    body = header + MAGIC + encode_tlv((c, p.options[c]) for c in order if c in p.options)
    return body.ljust(pad_to, b"\0")
