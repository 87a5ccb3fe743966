"""Lab networks for tests, demo and benchmarks: network namespaces, a bridge, veths, taps.

Everything that sends DHCP, TFTP or HTTP runs inside namespaces this module creates,
with 10.x lab addresses.  Nothing touches the root namespace's interfaces.  Every
process is started through :meth:`Lab.spawn` and stopped by its PID (its process
group) when the lab closes; the namespaces are deleted then as well.

A typical segment (:meth:`Lab.segment`)::

    ns <p>-sw    bridge br0 (no address); QEMU runs here with taps on br0
    ns <p>-dhcp  veth "lab0" 10.77.0.2/24  -- the network's own DHCP server (dnsmasq)
    ns <p>-srv   veth "lab0" 10.77.0.1/24  -- pxed, tftp-hpa, the HTTP server
    ns <p>-cli   veth "lab0" (no IPv4)     -- scripted DHCP clients

A client and a server must not share a namespace (the kernel drops the looped
broadcast as martian), hence one namespace per role.

:func:`wait_for` (and :func:`wait_for_async` in an event loop) is the one polling loop of
the tests, the demo and the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

T = TypeVar("T")
SUBNET = ipaddress.IPv4Network("10.77.0.0/24")
SERVER_IP = ipaddress.IPv4Address("10.77.0.1")
DHCP_IP = ipaddress.IPv4Address("10.77.0.2")
CLONE_NEWNET = 0x40000000


def can_run_lab() -> str | None:
    """None when namespaces can be made here, else the reason they cannot."""
    if os.geteuid() != 0:
        return "needs root (network namespaces)"
    if shutil.which("ip") is None:
        return "needs iproute2"
    return None


def ip(*args: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    argv = ["ip", *(["-n", ns] if ns else []), *args]
    return subprocess.run(argv, check=check, capture_output=True, text=True)


@dataclass
class Netns:
    name: str

    def argv(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60,
            **kw: object) -> subprocess.CompletedProcess[str]:
        r: subprocess.CompletedProcess[str] = subprocess.run(
            self.argv(argv), check=check, capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
        return r

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return ip(*args, ns=self.name, check=check)

    def sysctl(self, key: str, value: str) -> None:
        self.run(["sysctl", "-q", "-w", f"{key}={value}"])

    def socket(self, family: int, kind: int) -> socket.socket:
        """A socket created inside this namespace (it takes the namespace's sysctls with it).

        setns() moves only the calling thread, so a short-lived thread makes the socket.
        """
        made: list[socket.socket | BaseException] = []

        def inside() -> None:
            try:
                libc = ctypes.CDLL(None, use_errno=True)
                with open(f"/run/netns/{self.name}") as f:
                    if libc.setns(f.fileno(), CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {self.name}")
                made.append(socket.socket(family, kind))
            except BaseException as e:  # re-raised in the caller
                made.append(e)

        t = threading.Thread(target=inside)
        t.start()
        t.join()
        if isinstance(made[0], BaseException):
            raise made[0]
        return made[0]


@dataclass
class Segment:
    sw: Netns
    dhcp: Netns
    srv: Netns
    cli: Netns
    bridge: str = "br0"
    server_if: str = "lab0"
    server_ip: ipaddress.IPv4Address = SERVER_IP
    dhcp_ip: ipaddress.IPv4Address = DHCP_IP
    subnet: ipaddress.IPv4Network = SUBNET


@dataclass
class Lab:
    """A set of namespaces and processes that is torn down as a whole."""

    prefix: str = field(default_factory=lambda: "pxl" + secrets.token_hex(3))
    workdir: Path | None = None
    namespaces: list[Netns] = field(default_factory=list)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    _veth_n: int = 0

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for p in reversed(self.procs):
            stop_process(p)
        self.procs.clear()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns.name], capture_output=True)
        self.namespaces.clear()

    # ---------------------------------------------------------------- building
    def netns(self, role: str) -> Netns:
        ns = Netns(f"{self.prefix}-{role}")
        subprocess.run(["ip", "netns", "add", ns.name], check=True, capture_output=True)
        self.namespaces.append(ns)
        ns.ip("link", "set", "lo", "up")
        return ns

    def veth(self, a: Netns, a_if: str, b: Netns, b_if: str) -> None:
        """A veth pair with one end in each namespace (made in the root ns, moved at once)."""
        self._veth_n += 1
        tmp_a, tmp_b = f"{self.prefix}a{self._veth_n}", f"{self.prefix}b{self._veth_n}"
        ip("link", "add", tmp_a, "netns", a.name, "type", "veth", "peer", "name", tmp_b,
           "netns", b.name)
        a.ip("link", "set", tmp_a, "name", a_if)
        b.ip("link", "set", tmp_b, "name", b_if)
        a.ip("link", "set", a_if, "up")
        b.ip("link", "set", b_if, "up")

    def bridge(self, ns: Netns, name: str = "br0") -> str:
        ns.ip("link", "add", name, "type", "bridge", "forward_delay", "0", "stp_state", "0")
        ns.ip("link", "set", name, "up")
        return name

    def port(self, sw: Netns, bridge: str, other: Netns, other_if: str) -> str:
        """Connect `other` to the bridge through a veth; returns the bridge-side name."""
        self._veth_n += 1
        side = f"p{self._veth_n}"
        self.veth(sw, side, other, other_if)
        sw.ip("link", "set", side, "master", bridge)
        return side

    def tap(self, sw: Netns, bridge: str, name: str | None = None) -> str:
        self._veth_n += 1
        name = name or f"tap{self._veth_n}"
        sw.ip("tuntap", "add", "dev", name, "mode", "tap")
        sw.ip("link", "set", name, "master", bridge)
        sw.ip("link", "set", name, "up")
        return name

    def segment(self) -> Segment:
        """The standard lab: switch, the network's DHCP server, the boot server, a client."""
        sw = self.netns("sw")
        br = self.bridge(sw)
        dhcp, srv, cli = self.netns("dhcp"), self.netns("srv"), self.netns("cli")
        for ns in (dhcp, srv, cli):
            self.port(sw, br, ns, "lab0")
        dhcp.ip("addr", "add", f"{DHCP_IP}/24", "dev", "lab0")
        srv.ip("addr", "add", f"{SERVER_IP}/24", "dev", "lab0")
        return Segment(sw=sw, dhcp=dhcp, srv=srv, cli=cli, bridge=br)

    # ---------------------------------------------------------------- processes
    def spawn(self, ns: Netns | None, argv: Sequence[str], **kw: object) -> subprocess.Popen[bytes]:
        """Start a process (in `ns`), in its own process group; stopped by PID at close."""
        full = ns.argv(argv) if ns else list(argv)
        p: subprocess.Popen[bytes] = subprocess.Popen(full, start_new_session=True, **kw)  # type: ignore[call-overload]
        self.procs.append(p)
        return p

    def dnsmasq_dhcp(self, seg: Segment, workdir: Path, *, extra: Sequence[str] = ()) -> subprocess.Popen[bytes]:
        """The network's plain DHCP server: leases only, no PXE options, no TFTP, no DNS."""
        lease = workdir / "dnsmasq.leases"
        return self.spawn(seg.dhcp, [
            "dnsmasq", "--keep-in-foreground", "--no-daemon", "--port=0", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--interface=lab0", "--except-interface=lo",
            f"--dhcp-range={seg.subnet[100]},{seg.subnet[200]},255.255.255.0,1h",
            f"--dhcp-leasefile={lease}", "--dhcp-authoritative", "--log-dhcp", "--no-ping",
            f"--pid-file={workdir / 'dnsmasq.pid'}", *extra,
        ], stdout=subprocess.DEVNULL, stderr=open(workdir / "dnsmasq.log", "wb"))


def stop_process(p: subprocess.Popen[bytes], timeout: float = 5.0) -> None:
    """Stop a process we started, and its process group, by PID: TERM, then KILL."""
    if p.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(p.pid, signal.SIGTERM)
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(timeout)


class _Poll(Generic[T]):
    """One wait: each call evaluates the predicate once; its value when truthy, None to poll again."""

    def __init__(self, pred: Callable[[], T | None], timeout: float, what: str,
                 unless: Callable[[], object] | None) -> None:
        self.pred, self.timeout, self.what, self.unless = pred, timeout, what, unless
        self.deadline = time.monotonic() + timeout

    def __call__(self) -> T | None:
        if got := self.pred():
            return got
        if self.unless is not None and self.unless():
            if got := self.pred():  # what happened just before the end counts
                return got
            raise TimeoutError(f"gave up waiting for {self.what}: it can no longer happen")
        if time.monotonic() >= self.deadline:
            raise TimeoutError(f"timed out after {self.timeout:.0f}s waiting for {self.what}")
        return None


def wait_for(pred: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = "condition", *,
             unless: Callable[[], object] | None = None) -> T:
    """The tests' one polling loop: call ``pred`` every ``interval`` seconds until it returns something
    truthy, and return that.  TimeoutError after ``timeout`` seconds, or as soon as ``unless`` is true
    (say, the process that was to do it has exited).  ``pred`` is called at least once."""
    poll = _Poll(pred, timeout, what, unless)
    while (got := poll()) is None:
        time.sleep(interval)
    return got


async def wait_for_async(pred: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05,
                         what: str = "condition", *, unless: Callable[[], object] | None = None) -> T:
    """:func:`wait_for` inside an event loop: the loop runs (signals arrive) between the polls."""
    poll = _Poll(pred, timeout, what, unless)
    while (got := poll()) is None:
        await asyncio.sleep(interval)
    return got


@contextlib.contextmanager
def lab(workdir: Path | None = None) -> Iterator[Lab]:
    with Lab(workdir=workdir) as lb:
        yield lb
