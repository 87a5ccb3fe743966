from __future__ import annotations

import os
import socket
from pathlib import Path

from pxed.io.systemd import Notifier, Watchdog, listen_fds


def test_listen_fds_groups_by_name_and_checks_pid() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "3", "LISTEN_FDNAMES": "dhcp:pxe:"}
    r1, w1 = os.pipe()  # make sure fds 3..5 exist so set_inheritable works
    r2, w2 = os.pipe()
    try:
        got = listen_fds(env)
        assert got == {"dhcp": [3], "pxe": [4], "unknown": [5]}
        assert listen_fds({**env, "LISTEN_PID": "1"}) == {}
        assert listen_fds({"LISTEN_FDS": "x"}) == {}
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def _sink(tmp_path: Path) -> tuple[socket.socket, str]:
    path = str(tmp_path / "notify.sock")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    s.settimeout(2)
    return s, path


def test_notifier_sends_sd_notify_lines(tmp_path: Path) -> None:
    sink, path = _sink(tmp_path)
    n = Notifier(path)
    assert n.enabled
    assert n.ready("Serving lab0")
    assert sink.recv(4096) == b"READY=1\nSTATUS=Serving lab0"
    assert n.reloading()
    msg = sink.recv(4096).decode()
    assert msg.startswith("RELOADING=1\nMONOTONIC_USEC=") and int(msg.rsplit("=", 1)[1]) > 0
    n.watchdog()
    assert sink.recv(4096) == b"WATCHDOG=1"
    n.stopping()
    assert sink.recv(4096) == b"STOPPING=1"
    n.close()


def test_notifier_abstract_address_and_disabled() -> None:
    assert not Notifier("").enabled
    assert Notifier("").ready("x") is False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(f"\0pxed-test-{os.getpid()}")
    s.settimeout(2)
    Notifier(f"@pxed-test-{os.getpid()}").status("hello")
    assert s.recv(100) == b"STATUS=hello"


def test_watchdog_interval() -> None:
    assert Watchdog.from_env({}).interval is None
    assert Watchdog.from_env({"WATCHDOG_USEC": "20000000"}).ping_every == 10.0
    assert Watchdog.from_env({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": "1"}).interval is None
    assert Watchdog.from_env({"WATCHDOG_USEC": "20000000", "WATCHDOG_PID": str(os.getpid())}).interval == 20.0
