"""The packet thread: reads both sockets off the event loop, stops promptly, reports when stuck.

Real UDP sockets inside a lab namespace (no DHCP is sent: the payloads are plain bytes).
"""

from __future__ import annotations

import socket
import threading
import time

import pytest

from pxed.dhcp.proxy import Listener, Peer
from pxed.io.udp import IP_PKTINFO, DatagramListener, PacketThread
from tests.lab.netns import Segment, wait_for

pytestmark = pytest.mark.integration


def test_packet_thread_answers_both_sockets_and_stops(segment: Segment) -> None:
    ns = segment.srv
    socks = {}
    for listener in Listener:
        s = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.IPPROTO_IP, IP_PKTINFO, 1)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        socks[listener] = s
    got: list[tuple[bytes, Peer, str]] = []
    release = threading.Event()

    def on_datagram(data: bytes, peer: Peer) -> None:
        got.append((data, peer, threading.current_thread().name))
        if data == b"stall":
            release.wait(10)

    listeners = [DatagramListener(s, lst, on_datagram, device_bound=False, ifindex=lambda: None)
                 for lst, s in socks.items()]
    thread = PacketThread(listeners)
    thread.start()
    client = ns.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(50):
            for s in socks.values():
                client.sendto(b"x%d" % i, s.getsockname())
        wait_for(lambda: len(got) == 100, 5, what="100 datagrams handed on")
        assert {name for _, _, name in got} == {"pxed-dhcp"}  # not the caller's thread
        assert {p.listener for _, p, _ in got} == set(Listener)
        assert all(p.ifindex == 1 and str(p.address) == "127.0.0.1" for _, p, _ in got)  # lo, from IP_PKTINFO
        assert thread.healthy(time.monotonic(), stuck_after=1)

        client.sendto(b"stall", socks[Listener.DHCP].getsockname())
        wait_for(lambda: got[-1][0] == b"stall", 5, what="the stalling datagram")
        assert thread.healthy(time.monotonic(), stuck_after=1)  # busy, not yet for long
        assert not thread.healthy(time.monotonic() + 2, stuck_after=1)  # the watchdog would stop pinging
        release.set()
        wait_for(lambda: thread.healthy(time.monotonic() + 2, stuck_after=1), 5, what="back to waiting")

        t = time.monotonic()
        thread.stop()
        assert time.monotonic() - t < 1
        assert not thread.healthy(time.monotonic(), stuck_after=1)
        client.sendto(b"late", socks[Listener.PXE].getsockname())
        time.sleep(0.1)
        assert got[-1][0] == b"stall"
    finally:
        release.set()
        thread.stop()
        client.close()
        for s in socks.values():
            s.close()
