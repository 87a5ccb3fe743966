"""Run pxed in a lab namespace the way systemd does: socket activation, sd_notify, journal.

``systemd-socket-activate`` binds UDP 67 and 4011 and passes them as ``dhcp`` and
``pxe``; a datagram socket stands in for PID 1's notify socket; and a fake journald
(a datagram socket bind-mounted over ``/run/systemd/journal/socket`` in a private
mount namespace of the daemon only) receives the native journal protocol, so tests
can assert on real structured fields such as ``CLIENT_MAC=``.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.netns import Lab, Netns, wait_for

REPO = Path(__file__).resolve().parents[2]
JOURNAL_QLEN = 512


def parse_journal_datagram(data: bytes) -> dict[str, str]:
    """Decode sd_journal_send's native protocol: KEY=value lines and length-prefixed binaries."""
    fields: dict[str, str] = {}
    i = 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, _, v = line.partition(b"=")
            fields[k.decode()] = v.decode(errors="replace")
            i = nl + 1
        else:
            (n,) = struct.unpack_from("<Q", data, nl + 1)
            start = nl + 9
            fields[line.decode()] = data[start:start + n].decode(errors="replace")
            i = start + n + 1
    return fields


class DatagramSink:
    """A unix datagram socket collecting what is sent to it, in a thread."""

    def __init__(self, path: Path, parse: bool = False, *, netns: Netns | None = None) -> None:
        self.path = path
        # Made in `netns`, the socket's queue length is that namespace's net.unix.max_dgram_qlen.
        self.sock = netns.socket(socket.AF_UNIX, socket.SOCK_DGRAM) if netns else \
            socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.fspath(path))
        os.chmod(path, 0o666)
        self.sock.settimeout(0.2)
        self.messages: list[bytes] = []
        self.times: list[float] = []  # time.monotonic() at arrival, comparable with Vm.started
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(1 << 20)
                self.times.append(time.monotonic())
                self.messages.append(data)
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()


@dataclass
class PxedProcess:
    proc: subprocess.Popen[bytes]
    notify: DatagramSink
    journal: DatagramSink
    stderr_path: Path
    config_path: Path
    extra: dict[str, object] = field(default_factory=dict)

    def notifications(self) -> list[str]:
        return [m.decode() for m in self.notify.messages]

    def journal_entries(self) -> list[dict[str, str]]:
        return [parse_journal_datagram(m) for m in self.journal.messages]

    def timed_entries(self) -> list[tuple[float, dict[str, str]]]:
        return [(t, parse_journal_datagram(m)) for t, m in zip(self.journal.times, self.journal.messages, strict=False)]

    def entries_for(self, **match: str) -> list[dict[str, str]]:
        return [e for e in self.journal_entries() if all(e.get(k) == v for k, v in match.items())]

    def wait_notified(self, prefix: str, timeout: float = 20) -> str:
        found: list[str] = []

        def seen() -> bool:
            found[:] = [n for n in self.notifications() if any(ln.startswith(prefix) for ln in n.split("\n"))]
            return bool(found) or self.proc.poll() is not None

        wait_for(seen, timeout, what=f"sd_notify {prefix}")
        if not found:
            raise AssertionError(f"pxed exited ({self.proc.returncode}) before {prefix}: {self.stderr()}")
        return found[-1]

    def stderr(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def close(self) -> None:
        self.notify.close()
        self.journal.close()


def write_config(path: Path, workdir: Path, *, interface: str = "lab0", extra: str = "") -> Path:
    (workdir / "boot").mkdir(exist_ok=True)
    (workdir / "state").mkdir(exist_ok=True)
    path.write_text(
        f"[Network]\nInterface={interface}\n"
        f"[Paths]\nBootRoot={workdir / 'boot'}\nStateDirectory={workdir / 'state'}\n"
        "[HTTP]\nPort=80\nBackend=lighttpd\n"
        # UEFI's default loader depends on what is installed (GRUB where the signed shim and GRUB
        # are: tests/test_config.py); the labs name it, and a test wanting GRUB says so in `extra`
        "[Boot]\nEFI64Loader=syslinux\nHTTP64Loader=syslinux\n" + extra
    )
    return path


def start_pxed(lab: Lab, ns: Netns, workdir: Path, config_path: Path, *, args: tuple[str, ...] = (),
               python: str = sys.executable, debug: bool = True, wait_ready: bool = True,
               ports: tuple[int, int] = (67, 4011), env: Mapping[str, str] | None = None) -> PxedProcess:
    """Start pxed under systemd-socket-activate in `ns`; returns once READY=1 arrived."""
    notify = DatagramSink(workdir / "notify.sock")
    # journald's socket queues 512 datagrams on a systemd host (sysctl.d/50-default.conf);
    # the kernel default of 10 would make pxed wait for this Python sink on every burst.
    ns.sysctl("net.unix.max_dgram_qlen", str(JOURNAL_QLEN))
    journal = DatagramSink(workdir / "journal.sock", netns=ns)
    stderr_path = workdir / "pxed.stderr"
    daemon = [python, "-m", "pxed", "--config", os.fspath(config_path), *(["--debug"] if debug else []), *args]
    activate = [
        "systemd-socket-activate", "--datagram",
        "-l", f"0.0.0.0:{ports[0]}", "-l", f"0.0.0.0:{ports[1]}", "--fdname=dhcp:pxe",
        "-E", f"NOTIFY_SOCKET={notify.path}", "-E", f"PYTHONPATH={REPO}", "-E", "PYTHONUNBUFFERED=1",
        "-E", "WATCHDOG_USEC=4000000",
        *(arg for k, v in (env or {}).items() for arg in ("-E", f"{k}={v}")),
        *daemon,
    ]
    # A private mount namespace for pxed only, where journald's socket is our sink.
    script = (
        "set -e; mount -t tmpfs tmpfs /run; mkdir -p /run/systemd/journal; "
        ": > /run/systemd/journal/socket; "
        f"mount --bind {shlex.quote(os.fspath(journal.path))} /run/systemd/journal/socket; "
        'exec "$@"'
    )
    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *activate]
    proc = lab.spawn(ns, argv, stdout=subprocess.DEVNULL, stderr=open(stderr_path, "wb"), cwd=REPO)
    p = PxedProcess(proc, notify, journal, stderr_path, config_path)
    if wait_ready:
        # systemd-socket-activate execs pxed on the first datagram only; poke port 67 with junk
        # (pxed must ignore it) so the daemon starts now.  The activator may not have bound its
        # sockets yet when the first poke goes out, so poke until pxed has started.
        def execed() -> bool:
            if any("Execing" in ln for ln in p.stderr().splitlines()):
                return True
            poke(ns, ports[0])
            return False

        with contextlib.suppress(TimeoutError):  # wait_notified says why, with pxed's stderr
            wait_for(execed, 20, interval=0.2, what="systemd-socket-activate to exec pxed",
                     unless=lambda: proc.poll() is not None)
        p.wait_notified("READY=1")
    return p


def poke(ns: Netns, port: int) -> None:
    """Send one garbage datagram to the server's port from inside its namespace."""
    ns.run([sys.executable, "-c",
            "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
            f"s.sendto(b'not a dhcp packet', ('127.0.0.1', {port}))"])
    time.sleep(0.05)
