"""Fixtures: a private system bus with the shipped policy, a stand-in polkit authority,
and pxed's service + D-Bus server on it (tests/dbus/serve.py), each a subprocess."""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, need, need_tool
from tests.dbus.bus import PrivateBus

NOBODY = 65534
DEST = ["org.pxed.Pxed1", "/org/pxed/Pxed1"]
MANAGER = "org.pxed.Pxed1.Manager"


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
    return env


def _wait_line(proc: subprocess.Popen[str], want: str, timeout: float = 20) -> None:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != want:
        proc.kill()
        _out, err = proc.communicate()
        raise RuntimeError(f"expected {want!r}, got {line!r}; stderr:\n{err}")


class PxedOnBus:
    """A running harness; helpers run busctl, dbus-send and pxectl against it."""

    def __init__(self, root: Path, bus: PrivateBus, *, max_size: str = "64M", throttle: float = 0.0) -> None:
        self.root = root
        self.bus = bus
        self.address = bus.address
        self.state_dir = root / "state"
        self.boot_root = root / "boot"
        self.config = root / "pxed.conf"
        self.config.write_text(
            "[Network]\nInterface=pxtest0\n"
            f"[Paths]\nBootRoot={self.boot_root}\nStateDirectory={self.state_dir}\n"
            f"[Images]\nMaxSize={max_size}\n")
        self.grant_file = bus.dir / "grant"
        self.grant_file.write_text("0\n")
        self.polkit_log = bus.dir / "polkit.log"
        self.polkit_log.touch()
        self.polkit = subprocess.Popen(
            [sys.executable, "-m", "tests.dbus.fake_polkit", self.address, str(self.grant_file),
             str(self.polkit_log)], cwd=REPO, env=_env(), text=True, stdout=subprocess.PIPE)
        _wait_line(self.polkit, "READY")
        env = _env()
        if throttle:
            env["PXED_TEST_THROTTLE"] = str(throttle)
        self.stderr_path = root / "serve.log"
        self._stderr = self.stderr_path.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.dbus.serve", "--bus-address", self.address, "--config", str(self.config)],
            cwd=REPO, env=env, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr)
        try:
            _wait_line(self.proc, "READY")
        except RuntimeError as e:
            raise RuntimeError(f"{e}\n{self.log()}") from None

    def log(self) -> str:
        if not self._stderr.closed:
            self._stderr.flush()
        return self.stderr_path.read_text(errors="replace")

    def command(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        _wait_line(self.proc, "OK")

    def grant(self, *uids: int) -> None:
        self.grant_file.write_text("".join(f"{u}\n" for u in uids))

    def polkit_calls(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.polkit_log.read_text().splitlines()]

    def catalog(self) -> dict[str, Any]:
        path = self.state_dir / "catalog.json"
        return json.loads(path.read_text()) if path.exists() else {"images": []}

    def image_ids(self) -> list[str]:
        return sorted(i["id"] for i in self.catalog()["images"])

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    # ------------------------------------------------------------ clients
    def run(self, argv: Sequence[str], *, user: str | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
        full = ["runuser", "-u", user, "--", *argv] if user else list(argv)
        kw.setdefault("timeout", 60)
        return subprocess.run(full, capture_output=True, text=True, **kw)

    def busctl(self, *args: str, user: str | None = None, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run(["busctl", f"--address={self.address}", *args], user=user, **kw)

    def call(self, member: str, sig: str = "", *args: str, user: str | None = None,
             **kw: Any) -> subprocess.CompletedProcess[str]:
        """busctl call on the manager (prints only the error text on failure)."""
        return self.busctl("call", *DEST, MANAGER, member, *([sig, *args] if sig else []), user=user, **kw)

    def dbus_send(self, member: str, *args: str, path: str = DEST[1], interface: str = MANAGER,
                  user: str | None = None) -> subprocess.CompletedProcess[str]:
        """dbus-send prints the error NAME, so use it to assert error names."""
        return self.run(["dbus-send", f"--bus={self.address}", "--print-reply", "--dest=org.pxed.Pxed1", path,
                         f"{interface}.{member}", *args], user=user)

    def pycall(self, member: str, sig: str = "", body: Any = None, *, uid: int | None = None,
               fds: Sequence[str] = (), path: str = DEST[1], interface: str = MANAGER) -> dict[str, Any]:
        """A call through tests/dbus/client.py: {"ok": body} or {"error": NAME, "text": ...}."""
        argv = [sys.executable, "-m", "tests.dbus.client", self.address, "--path", path, "--interface", interface]
        if uid is not None:
            argv += ["--uid", str(uid)]
        for f in fds:
            argv += ["--fd", f]
        argv += [member, sig, json.dumps(body) if body is not None else ""]
        r = self.run(argv, cwd=REPO, env=_env())
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout)  # type: ignore[no-any-return]

    def pxectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        kw.setdefault("env", _env())
        return self.run([sys.executable, "-m", "pxed.cli", "--bus-address", self.address, *args], cwd=REPO, **kw)

    def stop(self) -> None:
        for p in (self.proc, self.polkit):
            if p.poll() is None:
                if p is self.proc and p.stdin is not None:
                    try:
                        p.stdin.write("quit\n")
                        p.stdin.flush()
                        p.wait(15)
                    except (BrokenPipeError, subprocess.TimeoutExpired):
                        p.kill()
                else:
                    p.terminate()
                p.wait()
        if not self._stderr.closed:
            self._stderr.close()


@pytest.fixture
def private_bus() -> Iterator[PrivateBus]:
    need_tool("dbus-daemon", "busctl", "dbus-send")
    need(os.geteuid() == 0, "the shipped D-Bus policy lets only root or pxed own org.pxed.Pxed1: run as root")
    bus = PrivateBus()
    try:
        yield bus
    finally:
        bus.stop()


@pytest.fixture
def pxed(tmp_path: Path, private_bus: PrivateBus) -> Iterator[PxedOnBus]:
    p = PxedOnBus(tmp_path, private_bus)
    try:
        yield p
    finally:
        p.stop()
