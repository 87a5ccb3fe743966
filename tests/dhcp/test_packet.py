from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxed.dhcp.options import Opt, decode_tlv, encode_tlv, user_classes
from pxed.dhcp.packet import MAGIC, Packet, encode, parse
from pxed.errors import MalformedPacket
from tests.lab.pxeclient import build


def test_round_trip_keeps_every_option_byte_for_byte() -> None:
    raw = build("efi64", bytes.fromhex("525400000007"), 0x1234, boot_item=b"\x80\x00\x00\x00")
    p = parse(raw)
    assert p.mac == "52:54:00:00:00:07" and p.xid == 0x1234
    assert p.opt(Opt.CLIENT_ARCH) == b"\x00\x07"
    assert parse(encode(p, pad_to=0)) == p
    assert encode(p, pad_to=0) == raw


def _wire(op: int, xid: int, mac: bytes, *, flags: int = 0, ciaddr: str = "0.0.0.0", siaddr: str = "0.0.0.0",
          sname: bytes = b"", file: bytes = b"", options: bytes = b"\xff") -> bytes:
    """Hand-assembled BOOTP bytes, independent of the codec under test."""
    ip4 = ipaddress.IPv4Address
    return (bytes([op, 1, len(mac), 0]) + xid.to_bytes(4, "big") + b"\0\0" + flags.to_bytes(2, "big")
            + ip4(ciaddr).packed + bytes(4) + ip4(siaddr).packed + bytes(4)
            + mac.ljust(16, b"\0") + sname.ljust(64, b"\0") + file.ljust(128, b"\0") + MAGIC + options)


MAC6 = bytes.fromhex("525400123456")
ZERO4 = ipaddress.IPv4Address(0)
TABLE: list[tuple[str, bytes, Packet]] = [
    ("bios-discover",
     _wire(1, 0xDEADBEEF, MAC6, flags=0x8000,
           options=bytes([53, 1, 1, 93, 2, 0, 0, 60, 9]) + b"PXEClient" + b"\xff"),
     Packet(op=1, xid=0xDEADBEEF, chaddr=MAC6, flags=0x8000).with_options(
         [(53, b"\x01"), (93, b"\x00\x00"), (60, b"PXEClient")])),
    ("proxy-ack-4011",
     _wire(2, 7, MAC6, ciaddr="10.77.0.50", siaddr="10.77.0.1", sname=b"10.77.0.1", file=b"efi64/syslinux.efi",
           options=bytes([53, 1, 5, 54, 4, 10, 77, 0, 1, 43, 7, 71, 4, 0x80, 0, 0, 0, 255]) + b"\xff"),
     Packet(op=2, xid=7, chaddr=MAC6, ciaddr=ipaddress.IPv4Address("10.77.0.50"),
            siaddr=ipaddress.IPv4Address("10.77.0.1"), sname=b"10.77.0.1", file=b"efi64/syslinux.efi").with_options(
         [(53, b"\x05"), (54, bytes([10, 77, 0, 1])), (43, bytes([71, 4, 0x80, 0, 0, 0, 255]))])),
    ("no-options", _wire(1, 1, MAC6), Packet(op=1, xid=1, chaddr=MAC6)),
    ("short-hlen", _wire(1, 2, b"\xaa\xbb"), Packet(op=1, xid=2, chaddr=b"\xaa\xbb")),
]


@pytest.mark.parametrize("raw,packet", [(r, p) for _, r, p in TABLE], ids=[n for n, _, _ in TABLE])
def test_bytes_packet_table_both_ways(raw: bytes, packet: Packet) -> None:
    assert parse(raw) == packet
    assert encode(packet, pad_to=0) == raw
    assert parse(raw).ciaddr == packet.ciaddr and packet.yiaddr == ZERO4


def test_repeated_options_are_concatenated_on_parse() -> None:
    raw = _wire(1, 3, MAC6, options=bytes([77, 2]) + b"iP" + bytes([53, 1, 1, 77, 2]) + b"XE" + b"\xff")
    p = parse(raw)
    assert p.opt(77) == b"iPXE" and p.option_order == (77, 53)


def test_dpkt_oracle_reads_our_encoding() -> None:
    dpkt = pytest.importorskip("dpkt")
    p = Packet(op=2, xid=7, chaddr=b"\x52\x54\0\0\0\1", siaddr=ipaddress.IPv4Address("10.77.0.1"),
               file=b"lpxelinux.0").with_options([(53, b"\x02"), (43, b"\x06\x01\x08\xff"), (175, b"\x13\x01\x01")])
    d = dpkt.dhcp.DHCP(encode(p))
    assert dict(d.opts) == {53: b"\x02", 43: b"\x06\x01\x08\xff", 175: b"\x13\x01\x01"}
    assert d.file.rstrip(b"\0") == b"lpxelinux.0" and d.siaddr == 0x0A4D0001


def test_rfc3396_long_options_split_and_rejoin() -> None:
    value = bytes(range(256)) * 2 + b"x" * 88  # 600 bytes
    enc = encode_tlv([(Opt.VENDOR_SPECIFIC, value)])
    assert enc.count(bytes((Opt.VENDOR_SPECIFIC, 255))) == 2
    assert decode_tlv(enc) == {Opt.VENDOR_SPECIFIC: value}


def test_overload_is_honoured_once() -> None:
    p = Packet(op=1, xid=1, chaddr=b"\1" * 6).with_options([(53, b"\x01"), (52, b"\x01")])
    raw = bytearray(encode(p, pad_to=0))
    file_off = 236 - 128
    raw[file_off:file_off + 6] = bytes((60, 3)) + b"PXE" + b"\xff"
    got = parse(bytes(raw))
    assert got.opt(60) == b"PXE" and 52 not in got.options and got.file == b""


def test_replies_are_padded_and_nul_terminated() -> None:
    p = Packet(op=2, xid=1, chaddr=b"\1" * 6, file=b"x" * 127, sname=b"y" * 63).with_options([(53, b"\x02")])
    raw = encode(p)
    assert len(raw) >= 300 and raw[108 + 127] == 0 and raw[44 + 63] == 0
    with pytest.raises(ValueError):
        encode(Packet(op=2, xid=1, chaddr=b"\1" * 6, file=b"x" * 128))


@pytest.mark.parametrize("raw,why", [
    (b"", "shorter"),
    (b"\x01" * 239, "shorter"),
    (bytes([3]) + bytes(235) + MAGIC, "neither"),
    (bytes([1, 1, 17]) + bytes(233) + MAGIC, "hlen"),
    (bytes([1, 1, 6]) + bytes(233) + b"\0\0\0\0", "magic"),
    (bytes([1, 1, 6]) + bytes(233) + MAGIC + bytes([53]), "no length"),
    (bytes([1, 1, 6]) + bytes(233) + MAGIC + bytes([53, 5, 1]), "claims"),
    (bytes([1, 1, 6]) + bytes(233) + MAGIC + bytes([53, 2, 1, 1, 255]), "must have 1"),
    (bytes([1, 1, 6]) + bytes(233) + MAGIC + bytes([52, 1, 9, 255]), "overload"),
])
def test_malformed_inputs_raise_malformed_packet(raw: bytes, why: str) -> None:
    with pytest.raises(MalformedPacket, match=why):
        parse(raw)


def test_user_class_both_encodings() -> None:
    assert user_classes(b"iPXE") == (b"iPXE",)
    assert user_classes(b"\x04iPXE\x03abc") == (b"iPXE", b"abc")
    assert user_classes(b"\x09iPXE") == (b"\x09iPXE",)


valid = build("bios", b"\x52\x54\0\0\0\1", 99)


@settings(max_examples=3000, deadline=None)
@given(st.binary(max_size=700))
def test_random_bytes_raise_only_malformed_packet(data: bytes) -> None:
    try:
        parse(data)
    except MalformedPacket:
        pass


@settings(max_examples=3000, deadline=None)
@given(st.integers(0, len(valid)), st.lists(st.tuples(st.integers(0, len(valid) - 1), st.integers(0, 255)),
                                           max_size=8))
def test_truncated_and_mutated_packets_raise_only_malformed_packet(cut: int, muts: list[tuple[int, int]]) -> None:
    data = bytearray(valid[:cut] if cut < len(valid) else valid)
    for i, v in muts:
        if i < len(data):
            data[i] = v
    try:
        parse(bytes(data))
    except MalformedPacket:
        pass


def test_struct_sanity() -> None:
    assert struct.calcsize("!BBBBIHH4s4s4s4s16s64s128s") == 236
