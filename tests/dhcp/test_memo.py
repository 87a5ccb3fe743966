"""The engine's memo never answers differently from parse() + decide(): crafted collisions between
request shapes of one length, and seeded random mutations of the golden captures.

A request's identity (xid, flags, addresses, chaddr, and the values of options 97, 61, 12, 50)
is patched into a memoised reply; everything else, its skeleton, must match.  A skeleton taken
at one shape (where the identity values lie) must never be compared with one taken at another:
the joined bytes of two layouts can be equal while the requests differ in every option after
the first identity value.  These tests build such requests on purpose.  They use the engine's
public surface only and find identity ranges themselves, not through the code under test.
"""

from __future__ import annotations

import ipaddress
import random
import struct
from pathlib import Path

import pytest

from pxed.dhcp.options import MessageType, Opt
from pxed.dhcp.packet import FLAG_BROADCAST, Packet, encode, parse
from pxed.dhcp.proxy import BootPolicy, Decision, Ignored, Listener, Peer, ProxyEngine, decide
from pxed.errors import MalformedPacket
from pxed.model import Firmware, InterfaceInfo
from tests.dhcp.policies import syslinux_policy

DATA = Path(__file__).resolve().parents[1] / "data" / "dhcp"
GOLDEN = sorted(DATA.glob("*.bin"))
IFACE = InterfaceInfo(name="lab0", index=2, addresses=(ipaddress.IPv4Interface("10.77.0.1/24"),))
CLIENT = ipaddress.IPv4Address("10.77.0.50")
BCAST = Peer(Listener.DHCP, 2, ipaddress.IPv4Address("0.0.0.0"), 68)
PXE = Peer(Listener.PXE, 2, CLIENT, 4011)
OFF_LINK = Peer(Listener.PXE, 2, ipaddress.IPv4Address("192.0.2.9"), 4011)
POLICY = syslinux_policy()
RELAY_POLICY = syslinux_policy(allow_relay=True, ipxe_boot_file="ipxe/boot.ipxe", vendor_classes=("HW-Client",),
                               http_port=8080)
IDENTITY = {Opt.CLIENT_GUID, Opt.CLIENT_ID, Opt.HOSTNAME, Opt.REQUESTED_IP}
GUID = b"\0" + bytes(range(1, 17))
MAC = bytes.fromhex("525400aabbcc")


def request(opts: list[tuple[int, bytes]], *, xid: int = 1, mac: bytes = MAC) -> bytes:
    return encode(Packet(op=1, xid=xid, chaddr=mac, flags=FLAG_BROADCAST).with_options(opts), pad_to=0)


def expected(data: bytes, peer: Peer, policy: BootPolicy) -> Decision | None:
    """decide()'s answer, or None when parse() refuses the packet (the engine must then ignore it)."""
    try:
        packet = parse(data)
    except MalformedPacket:
        return None
    return decide(packet, peer, IFACE, policy)


def check(engine: ProxyEngine, data: bytes, peer: Peer, now: float) -> Decision:
    got = engine.receive(data, peer, IFACE, now)
    want = expected(data, peer, engine.policy)
    if want is None:
        assert got.outgoing is None and isinstance(got.event, Ignored) and "malformed" in got.event.reason, got
    else:
        assert got == want
    return got


def tlvs(data: bytes) -> list[tuple[int, int, int]] | None:
    """(code, start of the TLV, end) of each option up to END, or None when the walk runs off the end."""
    out: list[tuple[int, int, int]] = []
    i, n = 240, len(data)
    while i < n:
        code = data[i]
        if code == 0:
            i += 1
            continue
        if code == 255:
            return out
        if i + 1 >= n or i + 2 + data[i + 1] > n:
            return None
        out.append((code, i, i + 2 + data[i + 1]))
        i += 2 + data[i + 1]
    return out


def kept(data: bytes) -> list[int] | None:
    """The offsets of `data`'s skeleton (what the memo must match): op/htype/hlen, and from the magic
    cookie on everything but identity option values.  None when the memo does not take the layout."""
    opts = tlvs(data)
    if opts is None or len(data) < 240:
        return None
    codes = [c for c, _, _ in opts]
    if Opt.OVERLOAD in codes or any(codes.count(c) > 1 for c in IDENTITY):
        return None
    drop = {i for c, s, e in opts if c in IDENTITY for i in range(s + 2, e)}
    return [0, 1, 2] + [i for i in range(236, len(data)) if i not in drop]


def collide(a: bytes, b: bytes, fill: bytes) -> bytes | None:
    """A request that, at `b`'s skeleton offsets, holds `a`'s skeleton bytes (in order), with `fill`
    (cycled) where `b` has identity values: the joined skeleton of `a`, read at `b`'s shape."""
    ka, kb = kept(a), kept(b)
    if ka is None or kb is None or len(a) != len(b) or len(ka) != len(kb) or ka == kb:
        return None
    out = bytearray(b)
    kb_set = set(kb)
    for ia, ib in zip(ka, kb, strict=True):
        out[ib] = a[ia]
    holes = [i for i in range(236, len(b)) if i not in kb_set]
    for n, i in enumerate(holes):
        out[i] = fill[n % len(fill)] if fill else 0
    return bytes(out)


# ------------------------------------------------------------------ crafted collisions
HEAD = [(Opt.MESSAGE_TYPE, bytes((MessageType.DISCOVER,)))]
TAIL = [(Opt.VENDOR_CLASS, b"PXEClient:Arch:00007:UNDI:003016"), (Opt.CLIENT_NDI, b"\x01\x03\x10"),
        (Opt.CLIENT_GUID, GUID)]
ARCH7 = (Opt.CLIENT_ARCH, b"\x00\x07")
ARCH0 = (Opt.CLIENT_ARCH, b"\x00\x00")
# x86-64 UEFI, host name before option 93: the host name's value is followed by 93's TLV, 5d 02 00 07.
EFI_HOSTNAME_FIRST = request([*HEAD, (Opt.HOSTNAME, b"aaaa"), ARCH7, *TAIL], xid=1)
# BIOS, of the same length, host name after option 93: its value lies 4 bytes further on.
BIOS_HOSTNAME_LAST = request([*HEAD, ARCH0, (Opt.HOSTNAME, b"bbbb"), *TAIL], xid=2,
                             mac=bytes.fromhex("525400000002"))


def test_the_crafted_requests_are_two_shapes_of_one_length() -> None:
    a, b = EFI_HOSTNAME_FIRST, BIOS_HOSTNAME_LAST
    assert len(a) == len(b) and kept(a) != kept(b)
    for raw, fw in ((a, Firmware.EFI64), (b, Firmware.BIOS)):
        d = decide(parse(raw), BCAST, IFACE, POLICY)
        assert d.outgoing is not None and getattr(d.event, "firmware", None) is fw


def test_a_request_of_another_arch_never_gets_a_reply_memoised_for_another_layout() -> None:
    """Host name's value = 5d 02 00 07 (the bytes of "arch 7"), then option 93 = 0 (BIOS).  Read at the
    BIOS request's shape, its joined skeleton is the UEFI request's: the old single key (the joined
    bytes, whatever the shape) handed this BIOS client the UEFI BINL offer (no file, no option 43)."""
    e = ProxyEngine(POLICY)
    for n, raw in enumerate((EFI_HOSTNAME_FIRST, BIOS_HOSTNAME_LAST)):
        assert check(e, raw, BCAST, float(n)).outgoing is not None
    bios = request([*HEAD, (Opt.HOSTNAME, bytes((Opt.CLIENT_ARCH, 2, 0, 7))), ARCH0, *TAIL], xid=3,
                   mac=bytes.fromhex("525400000003"))
    ka, kb = kept(EFI_HOSTNAME_FIRST), kept(BIOS_HOSTNAME_LAST)
    assert ka is not None and kb is not None
    assert [bios[i] for i in kb] == [EFI_HOSTNAME_FIRST[i] for i in ka]  # the UEFI skeleton, at the BIOS shape
    got = check(e, bios, BCAST, 10.0)
    assert got.outgoing is not None and getattr(got.event, "firmware", None) is Firmware.BIOS
    assert parse(got.outgoing.payload).file == b"lpxelinux.0"


def test_a_malformed_request_never_gets_a_memoised_reply() -> None:
    """As above, but where the BIOS request has option 93 the packet has option 50 with 2 bytes (it must
    have 4): parse() refuses it, so nothing may answer it, though its joined skeleton is a known one."""
    e = ProxyEngine(POLICY)
    for n, raw in enumerate((EFI_HOSTNAME_FIRST, BIOS_HOSTNAME_LAST)):
        assert check(e, raw, BCAST, float(n)).outgoing is not None
    bad = collide(EFI_HOSTNAME_FIRST, BIOS_HOSTNAME_LAST, bytes((Opt.REQUESTED_IP, 2, 0, 0)))
    assert bad is not None
    with pytest.raises(MalformedPacket):
        parse(bad)
    got = check(e, bad, BCAST, 10.0)
    assert got.outgoing is None


def test_two_same_length_shapes_of_one_kind_keep_their_own_replies() -> None:
    """Each layout answered, then each one's skeleton read at the other's shape, in both orders."""
    a = request([*HEAD, (Opt.CLIENT_ID, b"\x01" + MAC), ARCH7, *TAIL])
    b = request([*HEAD, ARCH7, (Opt.CLIENT_ID, b"\x01" + MAC), *TAIL])
    for first, second in ((a, b), (b, a)):
        e = ProxyEngine(POLICY)
        check(e, first, BCAST, 0.0)
        check(e, second, BCAST, 1.0)
        for n, fill in enumerate((b"\x00", bytes((Opt.CLIENT_ARCH, 2, 0, 0)), bytes(range(7)))):
            for x, y in ((first, second), (second, first)):
                r = collide(x, y, fill)
                assert r is not None
                check(e, r, BCAST, 2.0 + n)


# ------------------------------------------------------------------ seeded random mutations
def _identity(rng: random.Random, raw: bytes) -> bytes:
    """Another client's request of the same kind: header identity and identity option values."""
    d = bytearray(raw)
    d[4:8] = rng.randbytes(4)
    d[10:12] = rng.choice([b"\0\0", b"\x80\0", b"\0\x01"])
    d[12:16] = rng.choice([bytes(4), CLIENT.packed, bytes([10, 77, 0, 99])])
    d[24:28] = rng.choice([bytes(4), bytes(4), bytes([10, 9, 0, 1])])
    d[28:44] = rng.randbytes(16)
    for code, s, e in tlvs(bytes(d)) or []:
        if code in IDENTITY:
            d[s + 2:e] = rng.choice([rng.randbytes(e - s - 2), b"\0" * (e - s - 2), b"\xff" * (e - s - 2)])
    return bytes(d)


def _shuffle(rng: random.Random, raw: bytes) -> bytes:
    """The same options (so the same length) in another order."""
    opts = tlvs(raw)
    if not opts:
        return raw
    pieces = [raw[s:e] for _, s, e in opts]
    rng.shuffle(pieces)
    end = opts[-1][2]
    return raw[:240] + b"".join(pieces) + raw[end:]


def _bytes(rng: random.Random, raw: bytes) -> bytes:
    d = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        i = rng.choice([rng.randrange(0, 4), rng.randrange(236, len(d))])
        d[i] = rng.choice([0, 1, 2, 4, 7, 12, 50, 52, 53, 61, 93, 97, 255, rng.randrange(256)])
    return bytes(d)


def _move_identity(rng: random.Random, raw: bytes) -> bytes:
    """An identity option's length byte changed by a little, the packet kept at its length."""
    opts = [(c, s, e) for c, s, e in tlvs(raw) or [] if c in IDENTITY]
    if not opts:
        return raw
    _, s, _ = rng.choice(opts)
    d = bytearray(raw)
    d[s + 1] = max(0, min(255, d[s + 1] + rng.choice([-4, -2, -1, 1, 2, 4])))
    return bytes(d)


def _bases() -> list[bytes]:
    raws = [p.read_bytes() for p in GOLDEN] + [EFI_HOSTNAME_FIRST, BIOS_HOSTNAME_LAST]
    raws.append(request([*HEAD, (Opt.HOSTNAME, b"host"), ARCH0, (Opt.REQUESTED_IP, bytes(4)),
                         (Opt.VENDOR_CLASS, b"HW-Client"), (Opt.CLIENT_ID, b"\x01" + MAC), (Opt.CLIENT_GUID, GUID)]))
    raws.append(request([(Opt.MESSAGE_TYPE, bytes((MessageType.REQUEST,))), (Opt.CLIENT_ID, b"\x01" + MAC), ARCH7,
                         (Opt.HOSTNAME, b"h"), (Opt.VENDOR_CLASS, b"HTTPClient:Arch:00016"),
                         (Opt.CLIENT_ARCH, struct.pack("!H", 16)), (Opt.CLIENT_GUID, GUID)]))
    return raws


@pytest.mark.parametrize("policy", [POLICY, RELAY_POLICY], ids=["default", "relay-ipxe-vendor"])
@pytest.mark.parametrize("seed", range(4))
def test_memo_agrees_with_decide_on_random_mutations(policy: BootPolicy, seed: int) -> None:
    """Originals first (they fill the memo), then mutations of them and of everything fed so far:
    each answer is decide()'s on parse(), or silence when parse() refuses the packet."""
    rng = random.Random(seed)
    e = ProxyEngine(policy)
    seen: list[bytes] = []
    peers = [BCAST, PXE, OFF_LINK, Peer(Listener.PXE, None, CLIENT, 40000), Peer(Listener.DHCP, 3, BCAST.address, 68)]
    now = 0.0
    for raw in _bases():
        for peer in (BCAST, PXE):
            now += 1.0
            check(e, raw, peer, now)
        seen.append(raw)
    answered = 0
    for _ in range(1500):
        kind = rng.choice(["identity", "identity", "shuffle", "bytes", "move", "collide", "collide"])
        base = rng.choice(seen)
        if kind == "identity":
            data = _identity(rng, base)
        elif kind == "shuffle":
            data = _shuffle(rng, base)
        elif kind == "bytes":
            data = _bytes(rng, base)
        elif kind == "move":
            data = _move_identity(rng, base)
        else:
            others = [s for s in seen if len(s) == len(base) and s != base]
            fill = rng.choice([rng.randbytes(8), bytes((Opt.CLIENT_ARCH, 2, 0, 0)), bytes((Opt.REQUESTED_IP, 2)),
                               bytes((Opt.CLIENT_ARCH, 2, 0, 7)), b"\0"])
            data = (collide(base, rng.choice(others), fill) if others else None) or _shuffle(rng, base)
        now += 1.0  # a new rate-limit window each time
        got = check(e, data, rng.choice(peers), now)
        answered += got.outgoing is not None
        if len(seen) < 400 and rng.random() < 0.3:
            seen.append(data)
    assert answered > 100  # the mix does reach the memo's territory
