"""UDP adapter: the only socket code of the DHCP path.

Reads datagrams with their ``IP_PKTINFO`` (ingress interface index), hands them to a
callback as (bytes, :class:`~pxed.dhcp.proxy.Peer`), and sends
:class:`~pxed.dhcp.proxy.Outgoing` replies, pinning broadcasts to the ingress
interface with ``IP_PKTINFO`` on ``sendmsg``.  Nothing raised by the callback or by
the kernel leaves :meth:`DatagramListener.drain`: a packet loop must not die.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable

from pxed.dhcp.proxy import Listener, Outgoing, Peer
from pxed.errors import SocketError

logger = logging.getLogger(__name__)

IP_PKTINFO = getattr(socket, "IP_PKTINFO", 8)  # Python 3.11 lacks the constant
SO_BINDTODEVICE = getattr(socket, "SO_BINDTODEVICE", 25)
_PKTINFO = struct.Struct("=i4s4s")  # struct in_pktinfo {int ifindex; in_addr spec_dst; in_addr addr;}
_ANC_SPACE = socket.CMSG_SPACE(_PKTINFO.size)
MAX_DATAGRAM = 4096
BATCH = 64  # datagrams read per readiness callback; the loop calls again while more are queued
_CACHED = 1024  # peer and destination addresses kept as ready-made objects
PORTS = {Listener.DHCP: 67, Listener.PXE: 4011}


def bound_device(sock: socket.socket) -> str | None:
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, 16)
    except OSError:
        return None
    name = raw.split(b"\0", 1)[0].decode(errors="replace")
    return name or None


def prepare(sock: socket.socket, interface: str) -> bool:
    """Set the options pxed relies on; returns whether the socket is bound to `interface`.

    systemd's pxed.socket already sets Broadcast=, PassPacketInfo= and
    BindToDevice= (from the generated drop-in); setting them again is harmless.
    Binding to a device after bind() needs CAP_NET_RAW, so failure is tolerated:
    the ingress check then relies on IP_PKTINFO alone.
    """
    if sock.family != socket.AF_INET or sock.type != socket.SOCK_DGRAM:
        raise SocketError(f"passed socket fd {sock.fileno()} is not an IPv4 UDP socket",
                          hint="check ListenDatagram= in pxed.socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
    sock.setblocking(False)
    dev = bound_device(sock)
    if dev is None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
            dev = interface
        except OSError as e:
            logger.debug("cannot bind socket to %s (%s); filtering by IP_PKTINFO only", interface, e)
    elif dev != interface:
        raise SocketError(f"socket is bound to {dev}, but pxed.conf names {interface}",
                          hint="run 'systemctl daemon-reload' so the generator rewrites the pxed.socket "
                               "drop-in, then 'systemctl restart pxed.socket'")
    return dev == interface


def bind_own(listener: Listener, interface: str, port: int | None = None) -> socket.socket:
    """Create and bind a socket when pxed was started by hand (needs CAP_NET_BIND_SERVICE)."""
    port = PORTS[listener] if port is None else port
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, interface.encode())
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
        sock.bind(("0.0.0.0", port))
    except OSError as e:
        sock.close()
        hint = ("run pxed through pxed.socket (systemctl enable --now pxed.socket), "
                "or as root" if e.errno in (errno.EACCES, errno.EPERM) else
                "another DHCP or proxy-DHCP server may hold the port" if e.errno == errno.EADDRINUSE else
                None)
        raise SocketError(f"cannot bind UDP port {port} on {interface}: {e.strerror}", hint=hint) from None
    sock.setblocking(False)
    return sock


class DatagramListener:
    """One UDP socket (port 67 or 4011) on the event loop: read by :meth:`drain`, written by :meth:`send`."""

    def __init__(
        self,
        sock: socket.socket,
        listener: Listener,
        on_datagram: Callable[[bytes, Peer], None],
        *,
        device_bound: bool,
        ifindex: Callable[[], int | None],
    ) -> None:
        self.sock = sock
        self.listener = listener
        self._on_datagram = on_datagram
        self._device_bound = device_bound
        self._ifindex = ifindex
        self._loop: asyncio.AbstractEventLoop | None = None
        self.received = 0
        self.dropped = 0
        self.send_errors = 0
        # Clients send from a few addresses (0.0.0.0, their lease): parse each once.
        self._peer_ips: dict[str, ipaddress.IPv4Address] = {}
        self._dest_strs: dict[ipaddress.IPv4Address, str] = {}
        self._last_dest: tuple[ipaddress.IPv4Address | None, str] = (None, "")
        self._last_peer: tuple[object, Peer | None] = (None, None)  # ((host, port, ifindex), Peer)
        self._anc: tuple[int, ipaddress.IPv4Address | None, list[tuple[int, int, bytes]]] = (-1, None, [])

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        loop.add_reader(self.sock.fileno(), self.drain)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._loop = None

    def drain(self) -> None:
        """Read and hand on up to :data:`BATCH` queued datagrams (the socket is non-blocking)."""
        recvmsg, on_datagram, peer_ips = self.sock.recvmsg, self._on_datagram, self._peer_ips
        ip_level, pktinfo, pktinfo_size, unpack = socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.size, _PKTINFO.unpack_from
        for _ in range(BATCH):
            try:
                data, ancdata, _flags, addr = recvmsg(MAX_DATAGRAM, _ANC_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                logger.warning("receive error on %s socket: %s", self.listener, e)
                return
            self.received += 1
            ifindex = None
            for level, kind, cdata in ancdata:
                if kind == pktinfo and level == ip_level and len(cdata) >= pktinfo_size:
                    # 0: queued before IP_PKTINFO was enabled (the datagram that activated us
                    # under systemd-socket-activate); the kernel reports no interface then.
                    ifindex = unpack(cdata)[0] or None
            if ifindex is None:
                # No packet info (the datagram queued before IP_PKTINFO was enabled, under
                # systemd-socket-activate): trust the device binding, else drop.
                if not self._device_bound:
                    self.dropped += 1
                    logger.debug("dropping datagram without packet info on an unbound socket")
                    continue
                ifindex = self._ifindex()
            try:
                # Clients of one stage send from one place (0.0.0.0:68 on port 67): reuse that Peer.
                last_where, peer = self._last_peer
                if peer is None or last_where != (addr, ifindex):
                    host = addr[0]
                    ip = peer_ips.get(host)
                    if ip is None:
                        if len(peer_ips) >= _CACHED:
                            peer_ips.clear()
                        ip = peer_ips[host] = ipaddress.IPv4Address(host)
                    peer = Peer(self.listener, ifindex, ip, addr[1])
                    self._last_peer = ((addr, ifindex), peer)
                on_datagram(data, peer)
            except Exception:  # the packet loop must survive anything
                logger.exception("unexpected error handling a datagram from %s", addr)

    def send(self, out: Outgoing, source: ipaddress.IPv4Address | None) -> bool:
        # Identity checks first: the source is the daemon's cached address and most replies
        # go to one destination object (broadcast); IPv4Address hashing and == are slow.
        cached = self._anc
        if out.ifindex is None:
            anc = []
        elif cached[0] == out.ifindex and cached[1] is source:
            anc = cached[2]
        else:
            spec = source.packed if source is not None else b"\0\0\0\0"
            anc = [(socket.IPPROTO_IP, IP_PKTINFO, _PKTINFO.pack(out.ifindex, spec, b"\0\0\0\0"))]
            self._anc = (out.ifindex, source, anc)
        last = self._last_dest
        if last[0] is out.address:
            dest = last[1]
        else:
            got = self._dest_strs.get(out.address)
            if got is None:
                if len(self._dest_strs) >= _CACHED:
                    self._dest_strs.clear()
                got = self._dest_strs[out.address] = str(out.address)
            dest = got
            self._last_dest = (out.address, dest)
        try:
            self.sock.sendmsg([out.payload], anc, 0, (dest, out.port))
            return True
        except OSError as e:
            self.send_errors += 1
            logger.warning("cannot send reply to %s:%d: %s", out.address, out.port, e.strerror)
            return False
