"""Netlink adapter (pyroute2): find the served interface and follow its addresses.

pyroute2's synchronous ``IPRoute`` is used in a worker thread: the same code runs on
Debian 12's 0.7.2 and on 0.9.x, whose sync API cannot be called from inside a running
asyncio loop.  The thread only listens for link/address events and wakes the loop;
snapshots are read with a fresh ``IPRoute`` in the default executor.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import ipaddress
import logging
import socket
import struct
import threading
from collections.abc import Callable
from typing import Any

from pxed.model import InterfaceInfo

logger = logging.getLogger(__name__)

AF_INET = 2


_SIOCGIFFLAGS, _SIOCGIFADDR, _SIOCGIFNETMASK = 0x8913, 0x8915, 0x891B
_IFF_UP, _IFF_RUNNING = 0x1, 0x40


def first_look(name: str, sock: socket.socket | None = None) -> InterfaceInfo | None:
    """The interface as the old ``SIOCGIF*`` ioctls see it: index, up, primary IPv4 address.

    For cold start only: importing pyroute2 takes longer than answering the datagram that
    socket-activated pxed, so that one is answered from this look (stdlib only) and
    :func:`snapshot` replaces it right after.  The ioctls go through `sock`, an IPv4
    socket pxed already holds: pxed.service may not create one (RestrictAddressFamilies=).
    None when the interface does not exist or cannot be looked at; never raises.
    """
    try:
        index = socket.if_nametoindex(name)
        req = struct.pack("16s24x", name.encode())  # struct ifreq: name, then a 24-byte union
        with contextlib.ExitStack() as stack:
            if sock is None:
                sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC))
            flags = struct.unpack_from("=H", fcntl.ioctl(sock, _SIOCGIFFLAGS, req), 16)[0]
            addresses: tuple[ipaddress.IPv4Interface, ...] = ()
            try:  # sockaddr_in in the union: the address is 4 bytes in
                addr = fcntl.ioctl(sock, _SIOCGIFADDR, req)[20:24]
                mask = fcntl.ioctl(sock, _SIOCGIFNETMASK, req)[20:24]
                addresses = (ipaddress.IPv4Interface((addr, bin(int.from_bytes(mask, "big")).count("1"))),)
            except OSError as e:
                if e.errno != errno.EADDRNOTAVAIL:  # that one: no IPv4 address
                    raise
    except (OSError, ValueError) as e:
        logger.debug("no first look at %s (%s); waiting for netlink", name, e)
        return None
    return InterfaceInfo(name=name, index=index, mac=None, up=bool(flags & _IFF_UP and flags & _IFF_RUNNING),
                         addresses=addresses)


def snapshot(name: str) -> InterfaceInfo | None:
    """The interface's current state, or None when it does not exist."""
    from pyroute2 import IPRoute

    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if not found:
            return None
        index = int(found[0])
        links = list(ipr.get_links(index))
        if not links:
            return None
        link = links[0]
        oper = link.get_attr("IFLA_OPERSTATE")
        flags = int(link["flags"])
        up = bool(flags & 1) and oper not in ("DOWN", "LOWERLAYERDOWN", "NOTPRESENT")
        addrs = []
        for a in ipr.get_addr(family=AF_INET, index=index):
            addr = a.get_attr("IFA_LOCAL") or a.get_attr("IFA_ADDRESS")
            if addr:
                addrs.append(ipaddress.IPv4Interface(f"{addr}/{a['prefixlen']}"))
        return InterfaceInfo(
            name=name,
            index=index,
            mac=link.get_attr("IFLA_ADDRESS"),
            mtu=int(link.get_attr("IFLA_MTU") or 1500),
            up=up,
            addresses=tuple(addrs),
        )


class InterfaceMonitor:
    """Calls ``on_change(info)`` on the loop whenever the interface's snapshot changes."""

    def __init__(self, name: str, on_change: Callable[[InterfaceInfo | None], None]) -> None:
        self.name = name
        self._on_change = on_change
        self.current: InterfaceInfo | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake = asyncio.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> InterfaceInfo | None:
        self._loop = asyncio.get_running_loop()
        self.current = await self._loop.run_in_executor(None, snapshot, self.name)
        self._thread = threading.Thread(target=self._listen, name="netlink", daemon=True)
        self._thread.start()
        self._task = asyncio.create_task(self._refresher())
        return self.current

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def _listen(self) -> None:
        from pyroute2 import IPRoute
        from pyroute2.netlink.rtnl import RTMGRP_IPV4_IFADDR, RTMGRP_LINK

        try:
            with IPRoute() as ipr:
                ipr.bind(groups=RTMGRP_LINK | RTMGRP_IPV4_IFADDR)
                while not self._stop.is_set():
                    msgs: list[Any] = list(ipr.get())
                    if msgs and self._loop is not None and not self._stop.is_set():
                        self._loop.call_soon_threadsafe(self._wake.set)
        except Exception:
            if not self._stop.is_set():
                logger.exception("netlink listener failed; interface changes are no longer followed")

    async def _refresher(self) -> None:
        assert self._loop is not None
        while True:
            await self._wake.wait()
            await asyncio.sleep(0.05)  # coalesce bursts (link + several addresses)
            self._wake.clear()
            try:
                info = await self._loop.run_in_executor(None, snapshot, self.name)
            except Exception:
                logger.exception("cannot read the state of %s", self.name)
                continue
            if info != self.current:
                self.current = info
                self._on_change(info)
