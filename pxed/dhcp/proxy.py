"""The proxy-DHCP decision: which reply, if any, a PXE request gets (protocol.md §4).

:func:`decide` is a pure function of (packet, where it came from, the served
interface, the boot policy).  :class:`ProxyEngine` adds parsing, counters, a
bounded per-client rate limit and the memo of :mod:`pxed.dhcp.memo`; it never raises.
No sockets, no clock of its own.  The values both take and give are in
:mod:`pxed.dhcp.decision`, re-exported here.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping

from pxed import rules
from pxed.dhcp.classify import HTTP_VENDOR, PXE_VENDOR, PxeRequest, classify
from pxed.dhcp.decision import Answered, BootFile, BootPolicy, Decision, Ignored, Listener, Outgoing, Peer
from pxed.dhcp.memo import Memo
from pxed.dhcp.options import MessageType, Opt, PxeSub, encode_tlv
from pxed.dhcp.packet import BOOTREPLY, FLAG_BROADCAST, ZERO, Packet, encode, parse
from pxed.errors import MalformedPacket
from pxed.model import Firmware, InterfaceInfo, PxeStage

BROADCAST = ipaddress.IPv4Address("255.255.255.255")
_IPXE_BINARY = re.compile(r"(^|/)[^/]*(ipxe|undionly|snponly)[^/]*$|\.k?kpxe$", re.IGNORECASE)

# The pxed.conf key that sets each firmware's boot file, for "what to do" messages.
BOOT_KEYS: Mapping[Firmware, str] = {
    Firmware.BIOS: "BIOS", Firmware.EFI32: "EFI32", Firmware.EFI64: "EFI64", Firmware.ARM64: "ARM64",
    Firmware.HTTP32: "HTTP32", Firmware.HTTP64: "HTTP64", Firmware.HTTPARM64: "HTTPARM64",
}


def is_ipxe_binary(path: str) -> bool:
    """An iPXE build (ipxe.efi, undionly.kpxe, snponly.efi, ipxe.lkrn, ...): never hand one to iPXE (G11).

    An iPXE *script* (``*.ipxe``, e.g. ``boot.ipxe``) is what iPXE should get, so it does not count.
    """
    return not path.lower().endswith(".ipxe") and bool(_IPXE_BINARY.search(path))


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
    boot: BootFile | None = (policy.ipxe_boot_file or policy.ipxe_boot_files.get(firmware)) if req.ipxe else None
    if boot is None or not boot.path:
        boot = policy.boot_files.get(firmware)
        if boot is None or not boot.path:
            return _ignore(f"no boot file for {firmware} clients (arch {req.arch}); "
                           f"set [Boot] {BOOT_KEYS[firmware]}= in pxed.conf", req, notable=True)
    boot_file = boot.path
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
        file = rules.http_url(rules.base_host(server, policy.http_port), boot_file).encode()
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
        options += boot.options  # what the boot loader wants beside its file (syslinux: 209, 210)
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


class ProxyEngine:
    """Parse + decide + count, with a bounded per-MAC reply rate limit.

    Answers are memoised (:class:`~pxed.dhcp.memo.Memo`): the first request of each kind goes
    through :func:`parse` and :func:`decide`, and a later request that is the same byte for byte
    but for its identity (the header's xid, flags, addresses and chaddr; the values of options
    97, 61, 12 and 50) gets that reply with its own identity patched in, without its options
    being decoded or a :class:`Packet` built.  The memo is dropped when the policy or the
    interface snapshot changes, so replies always carry the current address.  :meth:`receive`
    is for one thread; the ``policy`` may be replaced from another at any time.  Anything
    unusual (overloaded options, a malformed packet, a request pxed ignores) takes the full path.
    """

    RATE_WINDOW = 1.0
    RATE_MAX = 8  # replies per MAC per window; firmware retries far less often
    MAX_TRACKED = 4096

    def __init__(self, policy: BootPolicy) -> None:
        self._memo = Memo(policy)
        self.answered = 0
        self.ignored = 0
        self._rate: dict[bytes, tuple[float, int]] = {}

    @property
    def policy(self) -> BootPolicy:
        return self._memo.policy

    @policy.setter
    def policy(self, policy: BootPolicy) -> None:
        self._memo = Memo(policy)

    def receive(self, data: bytes, peer: Peer, iface: InterfaceInfo, now: float) -> Decision:
        memo = self._memo  # read once: the policy and its memo stay together for this request
        decision = memo.lookup(data, peer, iface)
        if decision is not None:
            if not self._allow(data[28:28 + data[2]], now):
                self.ignored += 1
                return Decision(None, Ignored("rate limit: too many requests from this client", decision.event.mac))
            self.answered += 1
            return decision
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
        if decision.outgoing is None:
            self.ignored += 1
            return decision
        memo.remember(decision, data, peer, iface)
        if not self._allow(packet.chaddr, now):
            self.ignored += 1
            return Decision(None, Ignored("rate limit: too many requests from this client", packet.mac))
        self.answered += 1
        return decision

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


__all__ = ["Answered", "BootFile", "BootPolicy", "Decision", "Ignored", "Listener", "Outgoing", "Peer", "ProxyEngine",
           "decide"]
