"""The engine's fast path: replies of :func:`~pxed.dhcp.proxy.decide` re-issued to requests
that differ from an answered one only in identity, without decoding them.

A request's *shape* (:class:`_Shape`) is where its identity lies: the header's xid,
flags, addresses and chaddr, and the values of options 97, 61, 12 and 50.  Everything
else, its *skeleton* (op/htype/hlen, the magic cookie, every option code and length and
every other option value), together with the listener, on-link and relayed, is what
decide() reads.  Two requests of one shape and one skeleton therefore walk the same
options and get the same reply but for the fields decide() copies from the request;
those are patched into a copy of the reply (:class:`_Template`).  A skeleton is only
ever compared with skeletons taken at the same shape: each shape has its own templates.

:class:`Memo` is the public surface: :meth:`Memo.lookup` before parsing,
:meth:`Memo.remember` after decide() answered.  A memo belongs to one boot policy and is
replaced with it, never changed to another; it empties itself when the interface changes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass

from pxed.dhcp.classify import guid_to_uuid
from pxed.dhcp.decision import Answered, BootPolicy, Decision, Listener, Outgoing, Peer
from pxed.dhcp.options import Opt
from pxed.dhcp.packet import HEADER_SIZE
from pxed.model import InterfaceInfo

# Options whose value decide() never reads or only echoes (97): requests that differ
# only there (and in the header's identity fields) get the same template.
_IDENTITY_OPTIONS = frozenset({Opt.CLIENT_GUID, Opt.CLIENT_ID, Opt.HOSTNAME, Opt.REQUESTED_IP})

# (on port 4011, on-link (4011 and not relayed, else None), relayed, the skeleton's bytes)
_Key = tuple[bool, bool | None, bool, bytes]


class _Template:
    """An answer of decide(), to be re-issued for requests that differ only in identity.

    Requests with the same shape and skeleton get the same reply except for the fields
    decide() copies from the request: xid, flags, ciaddr (port 4011), giaddr, chaddr and the
    echoed option 97.  Those are patched into a copy of ``payload``.
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


@dataclass(frozen=True, slots=True)
class _Shape:
    """Where a request's identity option values lie: everything else is its skeleton.

    ``keep`` are the (start, end) byte ranges of the skeleton: op/htype/hlen and the options
    field but for the values of :data:`_IDENTITY_OPTIONS`; ``guid`` is option 97's value range.
    """

    keep: tuple[tuple[int, int], ...]
    guid: tuple[int, int] | None

    def skeleton(self, data: bytes) -> bytes:
        return b"".join([data[a:b] for a, b in self.keep])


def _shape(data: bytes) -> _Shape | None:
    """`data`'s shape, or None when an identity option repeats (its values would be joined),
    the options overload sname/file (which the skeleton leaves out), or an option runs past
    the end (parse() refuses that; a memoised reply must never depend on it)."""
    spans: dict[int, tuple[int, int]] = {}
    n = len(data)
    for code, start, end in _walk(data):
        if code == Opt.OVERLOAD or end > n:
            return None
        if code in _IDENTITY_OPTIONS:
            if code in spans:
                return None
            spans[code] = (start, end)
    keep, at = [(0, 3)], HEADER_SIZE
    for start, end in sorted(spans.values()):
        keep.append((at, start))
        at = end
    keep.append((at, n))
    return _Shape(tuple(keep), spans.get(Opt.CLIENT_GUID))


class Memo:
    """A boot policy and the replies memoised under it: replaced as one, never changed in place.

    One reference store (the engine's) swaps both, so a reply decided under the old policy
    can only land in the old (discarded) memo, even if the policy is replaced from another
    thread.  :meth:`lookup` and :meth:`remember` are for one thread.

    Templates are kept per shape, for the shapes of answered requests of each length
    (at most :attr:`MAX_SHAPES` a length), and found by the skeleton taken at that shape.
    """

    __slots__ = ("policy", "_kinds", "_count", "_iface", "_nets", "_on_link_last", "_packed_last", "_uuids")

    MAX_SHAPES = 4  # per request length
    MAX_TEMPLATES = 256  # kinds of request remembered; a flood of odd kinds only clears the memo
    MAX_UUIDS = 4096

    def __init__(self, policy: BootPolicy) -> None:
        self.policy = policy
        self._kinds: dict[int, list[tuple[_Shape, dict[_Key, _Template]]]] = {}  # by request length
        self._count = 0  # templates in _kinds
        self._iface: InterfaceInfo | None = None
        self._nets: tuple[tuple[int, int], ...] = ()
        self._on_link_last: tuple[ipaddress.IPv4Address | None, bool] = (None, False)
        self._packed_last: tuple[ipaddress.IPv4Address | None, bytes] = (None, b"")
        self._uuids: dict[bytes, str | None] = {}

    def __len__(self) -> int:
        """How many kinds of request are memoised."""
        return self._count

    def clear(self) -> None:
        self._kinds.clear()
        self._count = 0

    def lookup(self, data: bytes, peer: Peer, iface: InterfaceInfo) -> Decision | None:
        """decide()'s answer to `data`, if a request of its shape and skeleton was answered, else None."""
        if iface is not self._iface:
            self._use_interface(iface)
        kinds = self._kinds.get(len(data))
        if kinds is None or (peer.ifindex is not None and peer.ifindex != iface.index):
            return None
        relayed = data[24:28] != b"\0\0\0\0"
        on_pxe_port = peer.listener is Listener.PXE
        on_link = self._on_link(peer.address) if on_pxe_port and not relayed else None
        for shape, templates in kinds:
            template = templates.get((on_pxe_port, on_link, relayed, b"".join([data[a:b] for a, b in shape.keep])))
            if template is not None:
                g = shape.guid
                return self._render(template, data, data[2], data[g[0]:g[1]] if g is not None else None, peer)
        return None

    def remember(self, decision: Decision, data: bytes, peer: Peer, iface: InterfaceInfo) -> None:
        """Let requests shaped like `data` get `decision`'s reply (decide()'s to `data`), their identity
        patched in.  Kinds a template cannot repeat exactly are not remembered."""
        if decision.outgoing is None:
            return
        if iface is not self._iface:
            self._use_interface(iface)
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
        if self._count >= self.MAX_TEMPLATES or len(self._kinds) >= self.MAX_TEMPLATES:
            self.clear()  # a flood of odd kinds only clears the memo
        kinds = self._kinds.setdefault(len(data), [])
        templates = next((t for s, t in kinds if s == shape), None)
        if templates is None:
            if len(kinds) >= self.MAX_SHAPES:
                _, dropped = kinds.pop(0)
                self._count -= len(dropped)
            templates = {}
            kinds.append((shape, templates))
        relayed = data[24:28] != b"\0\0\0\0"
        on_pxe_port = peer.listener is Listener.PXE
        on_link = self._on_link(peer.address) if on_pxe_port and not relayed else None
        key = (on_pxe_port, on_link, relayed, shape.skeleton(data))
        if key not in templates:
            self._count += 1
        templates[key] = template

    # ------------------------------------------------------------ helpers
    def _use_interface(self, iface: InterfaceInfo) -> None:
        """Replies carry the interface's address, and on-link depends on its networks: start afresh."""
        self._iface = iface
        self._nets = tuple((int(a.network.network_address), int(a.network.netmask)) for a in iface.addresses)
        self._on_link_last = (None, False)
        self.clear()

    def _on_link(self, address: ipaddress.IPv4Address) -> bool:
        last = self._on_link_last
        if last[0] is not address:  # the UDP adapter hands on one object per client address
            ip = int(address)
            last = self._on_link_last = (address, any(ip & mask == net for net, mask in self._nets))
        return last[1]

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
        if len(uuids) >= self.MAX_UUIDS:
            uuids.clear()
        u = uuids[guid] = guid_to_uuid(guid)
        return u


__all__ = ["Memo"]
