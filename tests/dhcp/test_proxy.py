"""Decision table over protocol.md's rules: (request, where it came from, policy) → reply or silence."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import dpkt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pxed.config import DEFAULT_BOOT_FILES
from pxed.dhcp.options import MessageType, Opt, decode_tlv
from pxed.dhcp.packet import parse
from pxed.dhcp.proxy import Answered, BootFile, BootPolicy, Ignored, Listener, Peer, ProxyEngine, decide
from pxed.model import Firmware, InterfaceInfo, PxeStage
from tests.dhcp.policies import syslinux_policy
from tests.lab.pxeclient import GUID, build

SERVER = ipaddress.IPv4Address("10.77.0.1")
IFACE = InterfaceInfo(name="lab0", index=2, addresses=(ipaddress.IPv4Interface("10.77.0.1/24"),))
MAC = bytes.fromhex("525400aabbcc")
POLICY = syslinux_policy(http_port=8080)
CLIENT = ipaddress.IPv4Address("10.77.0.50")
BCAST_PEER = Peer(Listener.DHCP, 2, ipaddress.IPv4Address("0.0.0.0"), 68)
PXE_PEER = Peer(Listener.PXE, 2, CLIENT, 1234)


@dataclass
class Case:
    id: str
    raw: bytes
    peer: Peer = BCAST_PEER
    policy: BootPolicy = POLICY
    iface: InterfaceInfo = IFACE
    reply: str | None = None  # expected message type name, or None for silence
    file: str | None = None
    dest: tuple[str, int] | None = None
    opt43: dict[int, bytes] | None = None  # None: not checked; {}: option 43 must be absent
    vendor: bytes = b"PXEClient"
    reason: str = ""
    check: Callable[[Any], None] | None = field(default=None)


def pol(**kw: Any) -> BootPolicy:
    """A syslinux-like policy: `boot_files` and `ipxe_boot_file` as paths, the rest as BootPolicy takes it."""
    base: dict[str, Any] = {"boot_files": DEFAULT_BOOT_FILES, "http_port": 8080}
    base.update(kw)
    return syslinux_policy(**base)


def b(kind: str, **kw: Any) -> bytes:
    return build(kind, MAC, 0xC0FFEE, **kw)


REQ = MessageType.REQUEST
CASES = [
    Case("bios-offer", b("bios"), reply="OFFER", file="lpxelinux.0", dest=("255.255.255.255", 68),
         opt43={6: b"\x08"}),
    Case("uefi7-binl-offer", b("efi64"), reply="OFFER", file="", dest=("255.255.255.255", 68), opt43={}),
    Case("uefi9-binl-offer", b("efi9"), reply="OFFER", file="", dest=("255.255.255.255", 68), opt43={}),
    Case("uefi7-ack-4011", b("efi64", mtype=REQ, ciaddr=CLIENT), peer=PXE_PEER, reply="ACK",
         file="efi64/syslinux.efi", dest=("10.77.0.50", 1234), opt43={}),
    Case("uefi-ack-echoes-43.71", b("efi64", mtype=REQ, ciaddr=CLIENT, boot_item=b"\x80\x00\x00\x00"),
         peer=PXE_PEER, reply="ACK", file="efi64/syslinux.efi", opt43={71: b"\x80\x00\x00\x00"}),
    Case("bios-on-4011-answered", b("bios", mtype=REQ, ciaddr=CLIENT), peer=PXE_PEER, reply="ACK",
         file="lpxelinux.0"),
    Case("4011-without-ciaddr-goes-to-source", b("efi64", mtype=REQ), peer=PXE_PEER, reply="ACK",
         dest=("10.77.0.50", 1234)),
    Case("ia32-no-boot-file", b("efi32"), reason="set [Boot] EFI32="),
    Case("ia32-configured", b("efi32"), policy=pol(boot_files=MappingProxyType(
        {**DEFAULT_BOOT_FILES, Firmware.EFI32: "efi32/syslinux.efi"})), reply="OFFER", file=""),
    Case("http-boot", b("http64"), reply="OFFER", file="http://10.77.0.1:8080/efi64/syslinux.efi",
         vendor=b"HTTPClient", opt43={}),
    Case("http-boot-relayed-allowed", b("http64", giaddr=ipaddress.IPv4Address("10.9.0.1")),
         policy=pol(allow_relay=True), reply="OFFER", file="http://10.77.0.1:8080/efi64/syslinux.efi",
         vendor=b"HTTPClient", dest=("10.9.0.1", 67)),
    Case("http-boot-port-80-has-no-port", b("http64"), policy=pol(http_port=80), reply="OFFER",
         file="http://10.77.0.1/efi64/syslinux.efi", vendor=b"HTTPClient"),
    Case("httpclient-with-pxe-arch-ignored", b("http-arch7"), reason="not an HTTP-boot architecture"),
    Case("http-arch-with-pxeclient-ignored", b("pxe-arch16"), reason="does not fit HTTP-boot arch 16"),
    Case("http-boot-not-on-4011", b("http64", mtype=REQ, ciaddr=CLIENT), peer=PXE_PEER,
         reason="not answered on port 4011"),
    Case("arm64-binl-offer", b("arm64"), policy=pol(boot_files=MappingProxyType(
        {**DEFAULT_BOOT_FILES, Firmware.ARM64: "arm64/grubaa64.efi"})), reply="OFFER", file="", opt43={}),
    Case("arm64-ack-path-prefix", b("arm64", mtype=REQ, ciaddr=CLIENT), peer=PXE_PEER, policy=pol(
        boot_files=MappingProxyType({**DEFAULT_BOOT_FILES, Firmware.ARM64: "arm64/grubaa64.efi"})),
         reply="ACK", file="arm64/grubaa64.efi"),
    Case("unknown-arch-ignored", b("arch-itanium"), reason="unsupported client architecture 2"),
    Case("custom-vendor-class-echoed", b("huawei"), policy=pol(vendor_classes=("HW-Client",)), reply="OFFER",
         file="lpxelinux.0", vendor=b"HW-Client"),
    Case("custom-vendor-class-not-configured", b("huawei"), reason="not a PXE client"),
    Case("odd-length-93-ignored", b("bios", arch_raw=b"\x00\x00\x07"), reason="option 93 has 3 bytes"),
    Case("inform-on-4011-answered", b("efi64", mtype=MessageType.INFORM, ciaddr=CLIENT), peer=PXE_PEER,
         reply="ACK", file="efi64/syslinux.efi"),
    Case("ipxe-efi-with-snponly-refused", b("ipxe-efi"), policy=pol(boot_files=MappingProxyType(
        {**DEFAULT_BOOT_FILES, Firmware.EFI64: "efi64/snponly.efi"})), reason="chain-load it again"),
    Case("ipxe-boot-file-root-prefix", b("ipxe"), policy=pol(ipxe_boot_file="menu.ipxe"), reply="OFFER",
         file="menu.ipxe"),
    Case("ipxe-script-is-not-a-binary", b("ipxe-efi"), policy=pol(ipxe_boot_file="scripts/boot.ipxe"),
         reply="OFFER", file="scripts/boot.ipxe"),
    Case("ipxe-lkrn-refused", b("ipxe"), policy=pol(ipxe_boot_file="ipxe.lkrn"), reason="chain-load it again"),
    Case("bootreply-ignored", b("bios", op=2), reason="not a BOOTREQUEST"),
    Case("ipxe-bare-user-class", b("ipxe"), reply="OFFER", file="pxelinux.0", opt43={6: b"\x08"}),
    Case("ipxe-rfc3004-user-class", b("ipxe-rfc3004"), reply="OFFER", file="pxelinux.0"),
    Case("ipxe-bios-with-a-hand-named-boot-file", b("ipxe"), reply="OFFER", file="bios/other.0",
         policy=pol(boot_files=MappingProxyType({**DEFAULT_BOOT_FILES, Firmware.BIOS: "bios/other.0"}))),
    Case("ipxe-efi-gets-file-in-offer", b("ipxe-efi"), reply="OFFER", file="efi64/syslinux.efi"),
    Case("ipxe-own-boot-file", b("ipxe"), policy=pol(ipxe_boot_file="ipxe/menu.lkrn"), reply="OFFER",
         file="ipxe/menu.lkrn"),
    Case("ipxe-never-chainloads-ipxe", b("ipxe"), policy=pol(boot_files=MappingProxyType(
        {Firmware.BIOS: "undionly.kpxe"})), reason="chain-load it again"),
    Case("non-pxe-ignored", b("nonpxe"), reason="not a PXE client"),
    Case("no-option-93-ignored", b("no93"), reason="option 93"),
    Case("relay-denied", b("bios", giaddr=ipaddress.IPv4Address("10.9.0.1")), reason="AllowRelay"),
    Case("relay-allowed-unicast", b("bios", giaddr=ipaddress.IPv4Address("10.9.0.1")),
         policy=pol(allow_relay=True), reply="OFFER", dest=("10.9.0.1", 67)),
    Case("wrong-interface", b("bios"), peer=Peer(Listener.DHCP, 3, BCAST_PEER.address, 68), reason="index 3"),
    Case("off-link-4011", b("efi64", mtype=REQ), peer=Peer(Listener.PXE, 2, ipaddress.IPv4Address("192.0.2.9"),
                                                           4011), reason="off-link"),
    Case("request-on-67-ignored", b("bios", mtype=REQ), reason="not for a proxy"),
    Case("no-address-yet", b("bios"), iface=InterfaceInfo(name="lab0", index=2), reason="no IPv4 address"),
    Case("guid-absent-not-invented", b("bios", guid=False), reply="OFFER", file="lpxelinux.0"),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_table(case: Case) -> None:
    req = parse(case.raw)
    d = decide(req, case.peer, case.iface, case.policy)
    if case.reply is None:
        assert d.outgoing is None
        assert isinstance(d.event, Ignored) and case.reason in d.event.reason
        return
    assert d.outgoing is not None, d.event
    assert isinstance(d.event, Answered)
    raw = d.outgoing.payload
    rep = parse(raw)
    assert len(raw) >= 300
    assert rep.op == 2 and rep.xid == req.xid and rep.chaddr == req.chaddr
    assert rep.message_type is MessageType[case.reply]
    assert rep.yiaddr == ipaddress.IPv4Address(0)  # never a lease
    assert rep.siaddr == SERVER and rep.opt(Opt.SERVER_ID) == SERVER.packed
    assert rep.opt(Opt.VENDOR_CLASS) == case.vendor
    assert rep.opt(Opt.CLIENT_GUID) == req.opt(Opt.CLIENT_GUID)  # echoed byte for byte, or absent
    assert rep.giaddr == req.giaddr
    if case.file is not None:
        assert rep.file.decode() == case.file
    if case.dest is not None:
        assert (str(d.outgoing.address), d.outgoing.port) == case.dest
    if d.outgoing.port == 68:
        assert rep.flags & 0x8000 and d.outgoing.ifindex == IFACE.index
    if case.peer.listener is Listener.PXE:
        assert d.outgoing.listener is Listener.PXE and rep.ciaddr == req.ciaddr
        assert d.event.stage is PxeStage.ACK
    if case.opt43 == {}:
        assert Opt.VENDOR_SPECIFIC not in rep.options
    elif case.opt43 is not None:
        assert decode_tlv(rep.options[Opt.VENDOR_SPECIFIC]) == case.opt43
    if not rep.file.startswith(b"http://"):
        assert rep.sname == b"10.77.0.1"
        assert rep.opt(209) == b"pxelinux.cfg/default"
        if rep.file:
            head = rep.file.rpartition(b"/")[0]
            assert rep.opt(210) == (head + b"/" if head else b"/")
    assert 52 not in rep.options
    oracle = dpkt.dhcp.DHCP(raw)  # an independent decoder sees the same reply
    assert dict(oracle.opts) == dict(rep.options) and oracle.xid == rep.xid and oracle.siaddr == int(SERVER)


def test_uuid_is_reported_in_smbios_order() -> None:
    d = decide(parse(b("bios")), BCAST_PEER, IFACE, POLICY)
    assert isinstance(d.event, Answered)
    assert d.event.uuid == "04030201-0605-0807-090a-0b0c0d0e0f10"
    assert GUID[0] == 0


@pytest.mark.parametrize("guid,expected", [
    (bytes(17), None), (b"\x00" + b"\xff" * 16, None), (b"\x01" + bytes(range(1, 17)), None),
    (bytes(range(17))[:16], None),
])
def test_uuid_none_when_absent_or_placeholder(guid: bytes, expected: str | None) -> None:
    raw = build("bios", MAC, 1, guid=False)
    p = parse(raw)
    p = p.with_options([*((c, p.options[c]) for c in p.option_order), (Opt.CLIENT_GUID, guid)])
    d = decide(p, BCAST_PEER, IFACE, POLICY)
    assert isinstance(d.event, Answered) and d.event.uuid is expected
    assert d.outgoing is not None and parse(d.outgoing.payload).opt(Opt.CLIENT_GUID) == guid  # still echoed


def test_engine_counts_and_never_raises() -> None:
    e = ProxyEngine(POLICY)
    assert e.receive(b"junk", BCAST_PEER, IFACE, 0.0).outgoing is None
    assert e.receive(b("bios"), BCAST_PEER, IFACE, 0.0).outgoing is not None
    assert (e.answered, e.ignored) == (1, 1)


def test_engine_rate_limits_per_mac_and_stays_bounded() -> None:
    e = ProxyEngine(POLICY)
    got = [e.receive(b("bios"), BCAST_PEER, IFACE, 0.5).outgoing is not None for _ in range(20)]
    assert got.count(True) == ProxyEngine.RATE_MAX
    assert e.receive(b("bios"), BCAST_PEER, IFACE, 2.0).outgoing is not None  # new window
    for i in range(5000):
        e.receive(build("bios", i.to_bytes(6, "big"), 1), BCAST_PEER, IFACE, 3.0)
    assert len(e._rate) <= ProxyEngine.MAX_TRACKED


@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=600), st.sampled_from([BCAST_PEER, PXE_PEER]))
def test_garbage_never_gets_a_reply(data: bytes, peer: Peer) -> None:
    d = ProxyEngine(POLICY).receive(data, peer, IFACE, 0.0)
    if d.outgoing is not None:  # only a well-formed PXE request may be answered
        assert parse(data).opt(Opt.CLIENT_ARCH) is not None


VALID_REQUESTS = [b("bios"), b("efi64", mtype=REQ, ciaddr=CLIENT, boot_item=b"\x80\x00\x00\x00"), b("ipxe"),
                  b("http64")]


@settings(max_examples=2000, deadline=None)
@given(st.sampled_from(VALID_REQUESTS), st.integers(0, 400),
       st.lists(st.tuples(st.integers(0, 399), st.integers(0, 255)), max_size=6),
       st.sampled_from([BCAST_PEER, PXE_PEER]))
def test_engine_never_raises_on_mutated_requests(raw: bytes, cut: int, muts: list[tuple[int, int]],
                                                 peer: Peer) -> None:
    data = bytearray(raw[:cut])
    for i, v in muts:
        if i < len(data):
            data[i] = v
    d = ProxyEngine(POLICY).receive(bytes(data), peer, IFACE, 0.0)
    if d.outgoing is not None:  # whatever got through was a well-formed PXE request, and the reply is sane
        req = parse(bytes(data))
        rep = parse(d.outgoing.payload)
        assert req.op == 1 and rep.op == 2 and rep.yiaddr == ipaddress.IPv4Address(0) and len(d.outgoing.payload) >= 300


def test_engine_policy_can_be_replaced_for_reload() -> None:
    e = ProxyEngine(POLICY)
    e.policy = pol(boot_files=MappingProxyType({**DEFAULT_BOOT_FILES, Firmware.BIOS: "bios/other.0"}))
    d = e.receive(b("bios"), BCAST_PEER, IFACE, 0.0)
    assert d.outgoing is not None and parse(d.outgoing.payload).file == b"bios/other.0"
    assert parse(d.outgoing.payload).opt(210) == b"bios/"


def test_boot_file_options_are_the_policy_s_not_the_core_s() -> None:
    """decide() knows no boot loader: a PXE reply carries its boot file's options after 43, in
    their order; an HTTP Boot reply none of them; a boot file without options gets no 209/210."""
    extra = ((150, b"\x0a\x4d\x00\x01"), (224, b"loader-says"))
    p = BootPolicy(boot_files=MappingProxyType({Firmware.BIOS: BootFile("bios/loader.0", extra),
                                                Firmware.EFI64: BootFile("efi64/loader.efi"),
                                                Firmware.HTTP64: BootFile("efi64/loader.efi", extra)}),
                   ipxe_boot_file=BootFile("boot.ipxe", ((224, b"ipxe"),)))
    for raw, peer, want in [(b("bios"), BCAST_PEER, list(extra)), (b("efi64"), BCAST_PEER, []),
                            (b("efi64", mtype=REQ, ciaddr=CLIENT), PXE_PEER, []), (b("http64"), BCAST_PEER, []),
                            (b("ipxe"), BCAST_PEER, [(224, b"ipxe")])]:
        d = decide(parse(raw), peer, IFACE, p)
        assert d.outgoing is not None, d.event
        rep = parse(d.outgoing.payload)
        order = list(rep.option_order)
        got = [(c, rep.options[c]) for c in order if c in (150, 209, 210, 224)]
        assert got == want
        if want:
            after = order[order.index(Opt.VENDOR_SPECIFIC) + 1 if Opt.VENDOR_SPECIFIC in order else 0:]
            assert [c for c, _ in want] == [c for c in after if c in (150, 224)]


def test_an_empty_boot_file_path_is_no_boot_file() -> None:
    p = BootPolicy(boot_files=MappingProxyType({Firmware.BIOS: BootFile("")}), ipxe_boot_file=BootFile(""))
    for kind in ("bios", "ipxe"):
        d = decide(parse(b(kind)), BCAST_PEER, IFACE, p)
        assert isinstance(d.event, Ignored) and "set [Boot] BIOS=" in d.event.reason


# ------------------------------------------------------------------ the engine's memo agrees with decide()
GOLDEN = sorted((__import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "dhcp").glob("*.bin"))
ENGINE_CASES = [(c.raw, c.peer, c.policy, c.iface) for c in CASES] + [
    (p.read_bytes(), PXE_PEER if p.stem.endswith("-4011") else BCAST_PEER, POLICY, IFACE) for p in GOLDEN]


def reference(raw: bytes, peer: Peer, policy: BootPolicy, iface: InterfaceInfo) -> Any:
    try:
        return decide(parse(raw), peer, iface, policy)
    except Exception:
        return None


def with_identity(raw: bytes, xid: int, mac: bytes, flags: int, ciaddr: bytes, giaddr: bytes,
                  guid: bytes | None, salt: bytes = b"") -> bytes:
    """The same request from another client: new xid, chaddr, flags, ciaddr, giaddr, option 97 value,
    and (from `salt`, cycled) new values of the options decide() does not read: 61, 12, 50."""
    data = bytearray(raw)
    if salt:
        i = 240
        while i + 1 < len(data) and data[i] != 255:
            if data[i] == 0:
                i += 1
                continue
            end = min(len(data), i + 2 + data[i + 1])
            if data[i] in (Opt.CLIENT_ID, Opt.HOSTNAME, Opt.REQUESTED_IP):
                data[i + 2:end] = (salt * 300)[:end - i - 2]
            i = end
    data[4:8] = xid.to_bytes(4, "big")
    data[10:12] = flags.to_bytes(2, "big")
    data[12:16] = ciaddr
    data[24:28] = giaddr
    data[28:28 + data[2]] = mac[:data[2]]
    if guid is not None:  # overwrite 97's value in place when the lengths match
        i = 240
        while i < len(data) and data[i] != 255:
            if data[i] == 0:
                i += 1
                continue
            if data[i] == Opt.CLIENT_GUID and i + 1 < len(data) and data[i + 1] == len(guid):
                data[i + 2:i + 2 + len(guid)] = guid
            i += 2 + data[i + 1] if i + 1 < len(data) else 1
    return bytes(data)


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(range(len(ENGINE_CASES))), st.integers(0, 2**32 - 1),
                          st.binary(min_size=16, max_size=16), st.sampled_from([0, 0x8000, 0x0001]),
                          st.sampled_from([bytes(4), CLIENT.packed, bytes([10, 77, 0, 99]), bytes([192, 0, 2, 9])]),
                          st.sampled_from([bytes(4), bytes(4), bytes([10, 9, 0, 1])]),
                          st.one_of(st.none(), st.binary(min_size=17, max_size=17)), st.binary(max_size=4)),
                min_size=1, max_size=12))
def test_engine_memo_gives_exactly_what_decide_gives(reqs: list[tuple[Any, ...]]) -> None:
    """Whatever was answered before, each reply (bytes, destination, event) equals decide()'s for that request."""
    engines: dict[int, ProxyEngine] = {}
    for n, (idx, xid, mac, flags, ciaddr, giaddr, guid, salt) in enumerate(reqs):
        raw, peer, policy, iface = ENGINE_CASES[idx]
        raw = with_identity(raw, xid, mac, flags, ciaddr, giaddr, guid, salt)
        if peer.listener is Listener.PXE and ciaddr != bytes(4):
            peer = Peer(Listener.PXE, peer.ifindex, ipaddress.IPv4Address(ciaddr), 40000 + n)
        e = engines.setdefault(id(policy) ^ id(iface), ProxyEngine(policy))
        got = e.receive(raw, peer, iface, float(n))  # a new second each time: no rate limit
        want = reference(raw, peer, policy, iface)
        if want is None:
            assert got.outgoing is None
        else:
            assert got == want


def test_engine_memo_follows_address_and_policy_changes() -> None:
    e = ProxyEngine(POLICY)
    raw = b("bios")
    first = e.receive(raw, BCAST_PEER, IFACE, 0.0)
    moved = InterfaceInfo(name="lab0", index=2, addresses=(ipaddress.IPv4Interface("10.77.0.9/24"),))
    again = e.receive(raw, BCAST_PEER, moved, 1.0)
    assert first.outgoing is not None and again.outgoing is not None
    assert parse(again.outgoing.payload).siaddr == ipaddress.IPv4Address("10.77.0.9")
    assert again == decide(parse(raw), BCAST_PEER, moved, POLICY)
    e.policy = pol(boot_files=MappingProxyType({**DEFAULT_BOOT_FILES, Firmware.BIOS: "bios/new.0"}))
    third = e.receive(raw, BCAST_PEER, moved, 2.0)
    assert third.outgoing is not None and parse(third.outgoing.payload).file == b"bios/new.0"


def test_engine_rate_limit_holds_on_the_memoised_path() -> None:
    e = ProxyEngine(POLICY)
    raws = [build("efi64", MAC, xid) for xid in range(30)]
    got = [e.receive(r, BCAST_PEER, IFACE, 5.0 + i * 0.01).outgoing is not None for i, r in enumerate(raws)]
    assert got.count(True) == ProxyEngine.RATE_MAX and len(e._memo)  # the memo answered most of them
    other = build("efi64", bytes.fromhex("525400000001"), 1)
    assert e.receive(other, BCAST_PEER, IFACE, 5.5).outgoing is not None  # per MAC
    assert e.receive(raws[0], BCAST_PEER, IFACE, 6.5).outgoing is not None  # next window


@pytest.mark.parametrize("idx", range(len(ENGINE_CASES)))
def test_engine_memo_second_client_of_each_kind(idx: int) -> None:
    raw, peer, policy, iface = ENGINE_CASES[idx]
    e = ProxyEngine(policy)
    for n, (xid, mac, flags) in enumerate([(1, b"\x52\x54\0\0\0\x01" * 3, 0), (0xDEADBEEF, bytes(range(16)), 0x8000),
                                            (7, b"\xff" * 16, 1)]):
        req = with_identity(raw, xid, mac, flags, raw[12:16], raw[24:28], bytes([0]) + bytes([n + 1] * 16))
        got = e.receive(req, peer, iface, float(n))
        want = reference(req, peer, policy, iface)
        assert got == want if want is not None else got.outgoing is None
        if n and want is not None and want.outgoing is not None:
            assert len(e._memo), "the second request of an answered kind comes from the memo"


@pytest.mark.parametrize("kind", ["bios", "efi64", "ipxe", "http64"])
def test_engine_answers_a_known_shape_without_decoding_it(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Once a kind of request was answered, another client's request of that shape (other MAC,
    xid, GUID, client id) is answered from its bytes alone, and exactly as decide() would."""
    e = ProxyEngine(POLICY)
    first = build(kind, MAC, 1)
    assert e.receive(first, BCAST_PEER, IFACE, 0.0).outgoing is not None
    monkeypatch.setattr("pxed.dhcp.proxy.parse", lambda *a: pytest.fail("decoded a request of a known shape"))
    guid = bytes([0]) + bytes(range(100, 116))
    other = with_identity(first, 0xCAFE, bytes.fromhex("525400abcdef"), 0, bytes(4), bytes(4), guid, b"\x42")
    assert other != first
    assert e.receive(other, BCAST_PEER, IFACE, 1.0) == reference(other, BCAST_PEER, POLICY, IFACE)


def test_engine_shape_match_needs_every_other_byte_equal() -> None:
    """A request like a known one but for the architecture (option 93) is decided afresh."""
    e = ProxyEngine(POLICY)
    assert e.receive(build("efi64", MAC, 1), BCAST_PEER, IFACE, 0.0).outgoing is not None
    bios_arch = build("efi64", MAC, 2, arch_raw=b"\0\0")
    got = e.receive(bios_arch, BCAST_PEER, IFACE, 1.0)
    assert got == reference(bios_arch, BCAST_PEER, POLICY, IFACE)
    assert got.outgoing is not None and b"\x2b" in got.outgoing.payload[240:]  # BIOS gets option 43


@given(st.binary(min_size=16, max_size=16))
def test_guid_to_uuid_is_the_smbios_byte_order_uuid(raw: bytes) -> None:
    import uuid

    from pxed.dhcp.classify import guid_to_uuid

    want = None if raw in (bytes(16), b"\xff" * 16) else str(uuid.UUID(bytes_le=raw))
    assert guid_to_uuid(b"\0" + raw) == want
    assert guid_to_uuid(b"\1" + raw) is None and guid_to_uuid(raw) is None


def test_guid_to_uuid_of_a_known_machine() -> None:
    from pxed.dhcp.classify import guid_to_uuid

    # SMBIOS stores the first three fields little-endian
    assert guid_to_uuid(bytes.fromhex("00" "33221100" "5544" "7766" "8899aabbccddeeff")) == \
        "00112233-4455-6677-8899-aabbccddeeff"


def test_a_request_with_overloaded_options_is_never_memoised() -> None:
    """Option 52 moves options into sname/file, which a request's skeleton leaves out."""
    from pxed.dhcp.memo import _shape

    raw = build("bios", MAC, 1)
    assert _shape(raw) is not None
    overloaded = raw[:240] + bytes((Opt.OVERLOAD, 1, 3)) + raw[240:]
    assert _shape(overloaded) is None
    e = ProxyEngine(POLICY)
    for xid in (1, 2):
        req = with_identity(overloaded, xid, MAC, 0, bytes(4), bytes(4), None)
        assert e.receive(req, BCAST_PEER, IFACE, float(xid)) == reference(req, BCAST_PEER, POLICY, IFACE)
    assert not len(e._memo)


@pytest.mark.parametrize("code", [0, 255, 53, 54, 60, 97, 43])
def test_a_boot_file_cannot_carry_an_option_decide_sets(code: int) -> None:
    with pytest.raises(ValueError):
        BootFile("lpxelinux.0", ((code, b"x"),))
