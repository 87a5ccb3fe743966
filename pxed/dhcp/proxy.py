"""The proxy-DHCP decision: which reply, if any, a PXE request gets (protocol.md §4).

:func:`decide` is a pure function of (packet, where it came from, the served
interface, the boot policy).  :class:`ProxyEngine` adds parsing, counters and a
bounded per-client rate limit; it never raises.  No sockets, no clock of its own.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING

from pxed.dhcp.classify import HTTP_VENDOR, PXE_VENDOR, PxeRequest, classify, guid_to_uuid
from pxed.dhcp.options import MessageType, Opt, PxeSub, encode_tlv
from pxed.dhcp.packet import BOOTREPLY, FLAG_BROADCAST, HEADER_SIZE, ZERO, Packet, encode, parse
from pxed.errors import MalformedPacket
from pxed.model import Firmware, InterfaceInfo, PxeStage

if TYPE_CHECKING:
    from pxed.config import Config

BROADCAST = ipaddress.IPv4Address("255.255.255.255")
PXELINUX_CONFIG = b"pxelinux.cfg/default"
_IPXE_BINARY = re.compile(r"(^|/)[^/]*(ipxe|undionly|snponly)[^/]*$|\.k?kpxe$", re.IGNORECASE)

# The pxed.conf key that sets each firmware's boot file, for "what to do" messages.
BOOT_KEYS: Mapping[Firmware, str] = {
    Firmware.BIOS: "BIOS", Firmware.EFI32: "EFI32", Firmware.EFI64: "EFI64", Firmware.ARM64: "ARM64",
    Firmware.HTTP32: "HTTP32", Firmware.HTTP64: "HTTP64", Firmware.HTTPARM64: "HTTPARM64",
}


class Listener(enum.StrEnum):
    DHCP = "dhcp"  # UDP 67
    PXE = "pxe"  # UDP 4011


@dataclass(frozen=True, slots=True)
class Peer:
    listener: Listener
    ifindex: int | None
    address: ipaddress.IPv4Address
    port: int


@dataclass(frozen=True, slots=True)
class BootPolicy:
    boot_files: Mapping[Firmware, str]
    ipxe_boot_file: str | None = None
    http_port: int = 80
    allow_relay: bool = False
    vendor_classes: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, config: Config) -> BootPolicy:
        return cls(boot_files=MappingProxyType(dict(config.boot_files)), ipxe_boot_file=config.ipxe_boot_file,
                   http_port=config.http_port, allow_relay=config.allow_relay,
                   vendor_classes=config.vendor_classes)


@dataclass(frozen=True, slots=True)
class Outgoing:
    payload: bytes
    address: ipaddress.IPv4Address
    port: int
    listener: Listener
    ifindex: int | None


@dataclass(frozen=True, slots=True)
class Answered:
    mac: str
    arch: int
    firmware: Firmware
    uuid: str | None
    stage: PxeStage
    boot_file: str
    ipxe: bool
    xid: int
    relayed: bool


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str
    mac: str | None = None
    notable: bool = False  # worth an info line (a PXE client pxed cannot serve), else debug


@dataclass(frozen=True, slots=True)
class Decision:
    outgoing: Outgoing | None
    event: Answered | Ignored


def is_ipxe_binary(path: str) -> bool:
    """An iPXE build (ipxe.efi, undionly.kpxe, snponly.efi, ipxe.lkrn, ...): never hand one to iPXE (G11).

    An iPXE *script* (``*.ipxe``, e.g. ``boot.ipxe``) is what iPXE should get, so it does not count.
    """
    return not path.lower().endswith(".ipxe") and bool(_IPXE_BINARY.search(path))


def http_url(server: ipaddress.IPv4Address, port: int, path: str) -> str:
    host = str(server) if port == 80 else f"{server}:{port}"
    return f"http://{host}/{path.lstrip('/')}"


def path_prefix(boot_file: str) -> bytes:
    head, sep, _ = boot_file.rpartition("/")
    return (head + "/").encode() if sep else b"/"


def _ignore(reason: str, req: PxeRequest | Packet | None = None, notable: bool = False) -> Decision:
    mac = req.mac if req is not None else None
    return Decision(None, Ignored(reason, mac, notable))


def decide(packet: Packet, peer: Peer, iface: InterfaceInfo, policy: BootPolicy) -> Decision:
    server = iface.address
    if server is None:
        return _ignore(f"{iface.name} has no IPv4 address yet", packet)
    if peer.ifindex is not None and peer.ifindex != iface.index:
        return _ignore(f"arrived on interface index {peer.ifindex}, not {iface.name} ({iface.index})", packet)
    on_pxe_port = peer.listener is Listener.PXE
    req = classify(packet, on_pxe_port=on_pxe_port,
                   vendor_prefixes=tuple(v.encode() for v in policy.vendor_classes))
    if isinstance(req, str):
        return _ignore(req, packet)
    relayed = packet.giaddr != ZERO
    if relayed and not policy.allow_relay:
        return _ignore(f"relayed request (giaddr {packet.giaddr}); set [Network] AllowRelay=yes to answer relays",
                       req, notable=True)
    if on_pxe_port and not relayed and not iface.on_link(peer.address):
        return _ignore(f"port-4011 request from off-link address {peer.address}", req, notable=True)
    firmware = req.firmware
    if firmware is None:
        return _ignore(f"unsupported client architecture {req.arch}", req, notable=True)
    # UEFI HTTP Boot is arch 15/16/19 *and* option 60 HTTPClient; a mix of the two is not
    # something pxed can answer correctly either way (EDK2 drops offers with the wrong 60).
    if firmware.is_http != req.http:
        return _ignore(f"option 60 {req.vendor[:32]!r} does not fit HTTP-boot arch {req.arch}" if firmware.is_http
                       else f"HTTPClient with arch {req.arch}, which is not an HTTP-boot architecture",
                       req, notable=True)
    if req.http and on_pxe_port:
        return _ignore("UEFI HTTP Boot clients are not answered on port 4011", req)
    if req.ipxe and policy.ipxe_boot_file:
        boot_file = policy.ipxe_boot_file
    else:
        chosen = policy.boot_files.get(firmware)
        if not chosen:
            return _ignore(f"no boot file for {firmware} clients (arch {req.arch}); "
                           f"set [Boot] {BOOT_KEYS[firmware]}= in pxed.conf", req, notable=True)
        boot_file = chosen
    if req.ipxe and is_ipxe_binary(boot_file):
        return _ignore(f"client already runs iPXE and {boot_file} would chain-load it again; "
                       "set [Boot] IPXE= to what iPXE should load", req, notable=True)

    reply_type = MessageType.ACK if on_pxe_port else MessageType.OFFER
    vendor = HTTP_VENDOR if req.http else PXE_VENDOR
    if not req.http and not req.vendor.startswith(PXE_VENDOR):
        vendor = next(v.encode() for v in policy.vendor_classes if req.vendor.startswith(v.encode()))
    options: list[tuple[int, bytes]] = [
        (Opt.MESSAGE_TYPE, bytes((reply_type,))),
        (Opt.SERVER_ID, server.packed),
        (Opt.VENDOR_CLASS, vendor),
    ]
    if req.guid is not None:
        options.append((Opt.CLIENT_GUID, req.guid))
    file = b""
    sname = b""
    if req.http:
        file = http_url(server, policy.http_port, boot_file).encode()
    else:
        sname = str(server).encode()
        sub: list[tuple[int, bytes]] = []
        if on_pxe_port:
            file = boot_file.encode()
            if req.boot_item is not None:
                sub.append((PxeSub.BOOT_ITEM, req.boot_item))
        elif firmware is Firmware.BIOS or req.ipxe:
            # PXE10 form: discovery control bit 3 = boot the file in this offer directly.
            file = boot_file.encode()
            sub.append((PxeSub.DISCOVERY_CONTROL, b"\x08"))
        # UEFI on :67: the BINL form (no option 43, no file) sends the client to :4011 (G2, G6).
        if sub:
            options.append((Opt.VENDOR_SPECIFIC, encode_tlv(sub)))
        options.append((Opt.PXELINUX_CONFIGFILE, PXELINUX_CONFIG))
        options.append((Opt.PXELINUX_PATHPREFIX, path_prefix(boot_file)))
    if len(file) > 127:
        return _ignore(f"boot file name {file[:40]!r}... is longer than 127 bytes", req, notable=True)

    if on_pxe_port:
        dest = packet.ciaddr if packet.ciaddr != ZERO else peer.address
        out_port, flags, ifindex = peer.port, packet.flags, iface.index
    elif relayed:
        dest, out_port, flags, ifindex = packet.giaddr, 67, packet.flags, None
    else:
        dest, out_port, flags, ifindex = BROADCAST, 68, packet.flags | FLAG_BROADCAST, iface.index
    reply = Packet(
        op=BOOTREPLY, htype=packet.htype, xid=packet.xid, chaddr=packet.chaddr, flags=flags,
        ciaddr=packet.ciaddr if on_pxe_port else ZERO, yiaddr=ZERO, siaddr=server, giaddr=packet.giaddr,
        sname=sname, file=file,
    ).with_options(options)
    event = Answered(mac=req.mac, arch=req.arch, firmware=firmware, uuid=req.uuid,
                     stage=PxeStage.ACK if on_pxe_port else PxeStage.OFFER,
                     boot_file=file.decode() or boot_file, ipxe=req.ipxe, xid=packet.xid, relayed=relayed)
    return Decision(Outgoing(encode(reply), dest, out_port, peer.listener, ifindex), event)


class _Template:
    """An answer of :func:`decide`, to be re-issued for requests that differ only in identity.

    Requests with the same skeleton (:class:`_Shape`: every byte but the identity fields, plus
    listener, on-link and relayed) get the same reply except for the fields :func:`decide`
    copies from the request: xid, flags, ciaddr (port 4011), giaddr, chaddr and the echoed
    option 97.  Those are patched into a copy of ``payload``.
    """

    __slots__ = ("payload", "guid_at", "mode", "ifindex", "port", "address", "listener", "arch", "firmware",
                 "stage", "boot_file", "ipxe", "relayed")

    def __init__(self, d: Decision, guid_at: int) -> None:
        out, ev = d.outgoing, d.event
        assert out is not None and isinstance(ev, Answered)
        self.payload = out.payload
        self.guid_at = guid_at
        self.mode = 0 if out.listener is Listener.PXE else 1 if ev.relayed else 2  # 4011, relay, broadcast
        self.ifindex, self.port, self.address, self.listener = out.ifindex, out.port, out.address, out.listener
        self.arch, self.firmware, self.stage = ev.arch, ev.firmware, ev.stage
        self.boot_file, self.ipxe, self.relayed = ev.boot_file, ev.ipxe, ev.relayed

    def render(self, data: bytes, hlen: int, guid: bytes | None) -> bytes:
        p, mode = self.payload, self.mode
        parts = [
            p[:4], data[4:8],  # xid
            p[8:10], data[10:12] if mode != 2 else bytes((data[10] | 0x80, data[11])),  # flags; G: broadcast bit
            data[12:16] if mode == 0 else p[12:16],  # ciaddr on port 4011
            p[16:24], data[24:28],  # giaddr
            data[28:28 + hlen],  # chaddr; the rest of the 16 bytes stays zero
        ]
        if guid is None:
            parts.append(p[28 + hlen:])
        else:
            at = self.guid_at
            parts += (p[28 + hlen:at], guid, p[at + len(guid):])
        return b"".join(parts)


def _walk(data: bytes) -> Iterator[tuple[int, int, int]]:
    """(code, value start, value end) of each option of an encoded packet (not overloaded), up to END."""
    i, n = HEADER_SIZE + 4, len(data)
    while i < n:
        code = data[i]
        if code == Opt.PAD:
            i += 1
            continue
        if code == Opt.END or i + 1 >= n:
            return
        end = i + 2 + data[i + 1]
        yield code, i + 2, end
        i = end


def _option_at(payload: bytes, code: int) -> int | None:
    """Offset of `code`'s value in an encoded packet's options (not overloaded), if present."""
    return next((start for c, start, _ in _walk(payload) if c == code), None)


# Options whose value :func:`decide` never reads or only echoes (97): requests that differ
# only there (and in the header's identity fields) get the same template.
_IDENTITY_OPTIONS = frozenset({Opt.CLIENT_GUID, Opt.CLIENT_ID, Opt.HOSTNAME, Opt.REQUESTED_IP})


@dataclass(frozen=True, slots=True)
class _Shape:
    """Where a request's identity option values lie: everything else is its skeleton.

    ``keep`` are the (start, end) byte ranges of the skeleton: op/htype/hlen and the options
    field but for the values of :data:`_IDENTITY_OPTIONS`; ``guid`` is option 97's value range.
    """

    keep: tuple[tuple[int, int], ...]
    guid: tuple[int, int] | None


def _shape(data: bytes) -> _Shape | None:
    """`data`'s shape, or None when an identity option repeats (its values would be joined) or
    the options overload sname/file (which the skeleton leaves out)."""
    spans: dict[int, tuple[int, int]] = {}
    for code, start, end in _walk(data):
        if code == Opt.OVERLOAD:
            return None
        if code in _IDENTITY_OPTIONS:
            if code in spans:
                return None
            spans[code] = (start, end)
    keep, at = [(0, 3)], HEADER_SIZE
    for start, end in sorted(spans.values()):
        keep.append((at, start))
        at = end
    keep.append((at, len(data)))
    return _Shape(tuple(keep), spans.get(Opt.CLIENT_GUID))


class _Memo:
    """A boot policy and the replies memoised under it: replaced as one, never changed in place.

    One reference store swaps both, so a reply decided under the old policy can only land
    in the old (discarded) memo, even if the policy is replaced from another thread.
    Templates are found by a request's skeleton (``by_skeleton``), for the shapes of answered
    requests of its length (``shapes``).
    """

    __slots__ = ("policy", "shapes", "by_skeleton")

    MAX_SHAPES = 4  # per request length

    def __init__(self, policy: BootPolicy) -> None:
        self.policy = policy
        self.shapes: dict[int, list[_Shape]] = {}
        self.by_skeleton: dict[tuple[bool, bool | None, bool, bytes], _Template] = {}

    def clear(self) -> None:
        self.shapes.clear()
        self.by_skeleton.clear()


class ProxyEngine:
    """Parse + decide + count, with a bounded per-MAC reply rate limit.

    Answers are memoised: the first request of each kind goes through :func:`parse` and
    :func:`decide`, and a later request that is the same byte for byte but for its identity
    (the header's xid, flags, addresses and chaddr; the values of options 97, 61, 12 and 50:
    :class:`_Shape`) gets that reply with its own identity patched in (:class:`_Template`),
    without its options being decoded or a :class:`Packet` built.  The memo is dropped when
    the policy or the interface snapshot changes, so replies always carry the current
    address.  :meth:`receive` is for one thread; the ``policy`` may be replaced from another
    at any time.  Anything unusual (overloaded options, a malformed packet, a request pxed
    ignores) takes the full path.
    """

    RATE_WINDOW = 1.0
    RATE_MAX = 8  # replies per MAC per window; firmware retries far less often
    MAX_TRACKED = 4096
    MAX_TEMPLATES = 256  # kinds of request remembered; a flood of odd kinds only clears the memo

    def __init__(self, policy: BootPolicy) -> None:
        self._memo = _Memo(policy)
        self.answered = 0
        self.ignored = 0
        self._rate: dict[bytes, tuple[float, int]] = {}
        self._iface: InterfaceInfo | None = None
        self._nets: tuple[tuple[int, int], ...] = ()
        self._uuids: dict[bytes, str | None] = {}
        self._on_link_last: tuple[ipaddress.IPv4Address | None, bool] = (None, False)
        self._packed_last: tuple[ipaddress.IPv4Address | None, bytes] = (None, b"")

    @property
    def policy(self) -> BootPolicy:
        return self._memo.policy

    @policy.setter
    def policy(self, policy: BootPolicy) -> None:
        self._memo = _Memo(policy)

    @property
    def _templates(self) -> dict[tuple[bool, bool | None, bool, bytes], _Template]:
        return self._memo.by_skeleton

    def receive(self, data: bytes, peer: Peer, iface: InterfaceInfo, now: float) -> Decision:
        if iface is not self._iface:
            self._use_interface(iface)
        memo = self._memo  # read once: the policy and its memo stay together for this request
        template, guid = self._by_skeleton(memo, data, peer, iface)
        if template is not None:
            hlen = data[2]
            chaddr = data[28:28 + hlen]
            if not self._allow(chaddr, now):
                self.ignored += 1
                return Decision(None, Ignored("rate limit: too many requests from this client", chaddr.hex(":")))
            self.answered += 1
            return self._render(template, data, hlen, guid, peer)
        try:
            packet = parse(data)
        except MalformedPacket as e:
            self.ignored += 1
            return Decision(None, Ignored(f"malformed packet from {peer.address}: {e}"))
        try:
            decision = decide(packet, peer, iface, memo.policy)
        except Exception as e:  # a bug must not take the packet loop down
            self.ignored += 1
            return Decision(None, Ignored(f"internal error deciding on a packet: {type(e).__name__}: {e}",
                                          packet.mac, notable=True))
        if decision.outgoing is not None:
            self._remember(memo, decision, data, peer)
        if decision.outgoing is not None and not self._allow(packet.chaddr, now):
            self.ignored += 1
            return Decision(None, Ignored("rate limit: too many requests from this client", packet.mac))
        if decision.outgoing is None:
            self.ignored += 1
        else:
            self.answered += 1
        return decision

    # ------------------------------------------------------------ memo
    def _use_interface(self, iface: InterfaceInfo) -> None:
        self._iface = iface
        self._nets = tuple((int(a.network.network_address), int(a.network.netmask)) for a in iface.addresses)
        self._on_link_last = (None, False)
        self._memo.clear()

    def _on_link(self, address: ipaddress.IPv4Address) -> bool:
        last = self._on_link_last
        if last[0] is not address:  # the UDP adapter hands on one object per client address
            ip = int(address)
            last = self._on_link_last = (address, any(ip & mask == net for net, mask in self._nets))
        return last[1]

    def _skeleton_key(self, data: bytes, peer: Peer, shape: _Shape) -> tuple[bool, bool | None, bool, bytes]:
        relayed = data[24:28] != b"\0\0\0\0"
        on_pxe_port = peer.listener is Listener.PXE
        on_link = self._on_link(peer.address) if on_pxe_port and not relayed else None
        return on_pxe_port, on_link, relayed, b"".join([data[a:b] for a, b in shape.keep])

    def _by_skeleton(self, memo: _Memo, data: bytes, peer: Peer,
                     iface: InterfaceInfo) -> tuple[_Template | None, bytes | None]:
        """The template for a request shaped like one answered before, found without decoding it."""
        shapes = memo.shapes.get(len(data))
        if shapes is None or (peer.ifindex is not None and peer.ifindex != iface.index):
            return None, None
        for shape in shapes:
            template = memo.by_skeleton.get(self._skeleton_key(data, peer, shape))
            if template is not None:
                g = shape.guid
                return template, (data[g[0]:g[1]] if g is not None else None)
        return None, None

    def _remember(self, memo: _Memo, decision: Decision, data: bytes, peer: Peer) -> None:
        """Let requests shaped like `data` get `decision`'s reply, their identity patched in."""
        assert decision.outgoing is not None
        shape = _shape(data)
        if shape is None:
            return
        guid, guid_at = None, 0
        if shape.guid is not None:
            guid = data[shape.guid[0]:shape.guid[1]]
            at = _option_at(decision.outgoing.payload, Opt.CLIENT_GUID)
            if at is None:
                return
            guid_at = at
        template = _Template(decision, guid_at)
        if self._render(template, data, data[2], guid, peer) != decision:
            return  # decide() did something a template cannot repeat: keep the full path for this kind
        if len(memo.by_skeleton) >= self.MAX_TEMPLATES or len(memo.shapes) >= self.MAX_TEMPLATES:
            memo.clear()  # a flood of odd kinds only clears the memo
        shapes = memo.shapes.setdefault(len(data), [])
        if shape not in shapes:
            if len(shapes) >= memo.MAX_SHAPES:
                del shapes[0]
            shapes.append(shape)
        memo.by_skeleton[self._skeleton_key(data, peer, shape)] = template

    def _render(self, t: _Template, data: bytes, hlen: int, guid: bytes | None, peer: Peer) -> Decision:
        payload = t.render(data, hlen, guid)
        if t.mode == 0:  # port 4011: back to ciaddr, else the source address
            ci = data[12:16]
            address = peer.address if ci == b"\0\0\0\0" or ci == self._packed(peer.address) \
                else ipaddress.IPv4Address(ci)
            port = peer.port
        elif t.mode == 1:
            address, port = ipaddress.IPv4Address(data[24:28]), t.port
        else:
            address, port = t.address, t.port
        # positional: mac, arch, firmware, uuid, stage, boot_file, ipxe, xid, relayed
        event = Answered(data[28:28 + hlen].hex(":"), t.arch, t.firmware, None if guid is None else self._uuid(guid),
                         t.stage, t.boot_file, t.ipxe, int.from_bytes(data[4:8], "big"), t.relayed)
        return Decision(Outgoing(payload, address, port, t.listener, t.ifindex), event)

    def _packed(self, address: ipaddress.IPv4Address) -> bytes:
        last = self._packed_last
        if last[0] is not address:  # the UDP adapter hands on one object per client address
            last = self._packed_last = (address, address.packed)
        return last[1]

    def _uuid(self, guid: bytes) -> str | None:
        uuids = self._uuids
        if guid in uuids:  # a client's DISCOVER and REQUEST carry the same GUID
            return uuids[guid]
        if len(uuids) >= self.MAX_TRACKED:
            uuids.clear()
        u = uuids[guid] = guid_to_uuid(guid)
        return u

    def _allow(self, mac: bytes, now: float) -> bool:
        # a plain dict keeps insertion order: pop and re-insert makes `mac` the newest
        rate = self._rate
        start, count = rate.pop(mac, (now, 0))
        if now - start >= self.RATE_WINDOW:
            start, count = now, 0
        count += 1
        rate[mac] = (start, count)
        if len(rate) > self.MAX_TRACKED:
            del rate[next(iter(rate))]
        return count <= self.RATE_MAX


__all__ = ["Answered", "BootPolicy", "Decision", "Ignored", "Listener", "Outgoing", "Peer", "ProxyEngine",
           "decide"]
