"""pxectl against pxed on a private bus: every verb, --json, exit codes and messages,
the progress bar on a pseudo-terminal and plain lines on a pipe, Ctrl-C cancelling."""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO
from tests.dbus.bus import PrivateBus
from tests.dbus.conftest import NOBODY, PxedOnBus, _env
from tests.images.isos import payload_iso
from tests.lab.netns import wait_for

pytestmark = pytest.mark.integration


def pxectl_argv(p: PxedOnBus, *args: str) -> list[str]:
    return [sys.executable, "-m", "pxed.cli", "--bus-address", p.address, *args]


def in_pty(argv: list[str], *, interrupt_when: str | None = None, timeout: float = 60) -> tuple[int, str]:
    """Run argv with stdin/stdout/stderr on a new pseudo-terminal; return (exit code, output).

    With ``interrupt_when``, type Ctrl-C (the terminal sends SIGINT) once that text appeared."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=REPO, env=_env(),
                            start_new_session=True, preexec_fn=_controlling_tty)
    os.close(slave)
    out = bytearray()
    sent = False

    def finished() -> bool:
        """Read what the terminal has (select waits up to 0.1 s); True once the child is done with it."""
        nonlocal sent
        ready, _, _ = select.select([master], [], [], 0.1)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                return True
            if not chunk:
                return True
            out.extend(chunk)
        if interrupt_when and not sent and interrupt_when.encode() in out:
            os.write(master, b"\x03")
            sent = True
        return proc.poll() is not None and not ready

    with contextlib.suppress(TimeoutError):  # then proc.wait() fails if the child still runs
        wait_for(finished, timeout, interval=0, what="the program on the terminal")
    code = proc.wait(timeout=10)
    os.close(master)
    return code, out.decode(errors="replace")


def _controlling_tty() -> None:
    import fcntl
    import termios

    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_verbs_text_and_json(pxed: PxedOnBus) -> None:
    iso = payload_iso(pxed.bus.dir / "one.iso")
    r = pxed.pxectl("add", str(iso), "--name", "one", "--title", "Number one")
    assert r.returncode == 0, r
    assert r.stdout.startswith("Imported one: "), r
    assert "importing: 100%" in r.stderr and "\r" not in r.stderr and "\x1b" not in r.stderr, r

    r = pxed.pxectl("list")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == ["NAME", "STATE", "SIZE", "PROFILE", "TITLE"]
    assert r.stdout.splitlines()[1].split()[:2] == ["one", "ready"]
    assert pxed.pxectl("list", "-q").stdout == "one\n"
    listed = json.loads(pxed.pxectl("list", "--json").stdout)
    assert [i["id"] for i in listed] == ["one"] and listed[0]["title"] == "Number one"
    assert json.loads(pxed.pxectl("--json", "list").stdout) == listed

    r = pxed.pxectl("show", "one")
    assert r.returncode == 0 and "Name:         one\n" in r.stdout and "Title:        Number one\n" in r.stdout
    # the payload ISO has no known layout: it boots whole through memdisk, which UEFI menus leave out
    assert "Boots on:     BIOS only (whole ISO through memdisk; UEFI menus leave it out)\n" in r.stdout, r.stdout
    shown = json.loads(pxed.pxectl("show", "one", "--json").stdout)
    assert shown["id"] == "one" and shown["iso_size"] == iso.stat().st_size and "files" in shown

    r = pxed.pxectl("status")
    assert r.returncode == 0 and "State:     running\n" in r.stdout and "pxtest0 (10.23.0.1)" in r.stdout, r
    st = json.loads(pxed.pxectl("status", "--json").stdout)
    assert st["State"] == "running" and st["Images"] == 1 and st["Interface"] == "pxtest0"

    assert pxed.pxectl("clients").stderr == "No clients seen since pxed started.\n"
    pxed.command("client 52:54:00:12:34:56 7 offer efi64/syslinux.efi")
    r = pxed.pxectl("clients")
    assert r.stdout.splitlines()[1].split()[:5] == ["52:54:00:12:34:56", "7", "(efi-x86-64)", "offer",
                                                    "efi64/syslinux.efi"], r
    (client,) = json.loads(pxed.pxectl("clients", "--json").stdout)
    assert client["mac"] == "52:54:00:12:34:56" and client["arch"] == 7 and client["count"] == 1

    assert pxed.pxectl("reload").stdout == "Reloaded the configuration and regenerated the menus.\n"
    assert json.loads(pxed.pxectl("reload", "--json").stdout) == {"reloaded": True}

    r = pxed.pxectl("add", str(iso), "--json")  # name from the ISO; JSON only, no progress
    assert r.returncode == 0 and r.stderr == "", r
    auto = json.loads(r.stdout)
    assert auto["id"] and auto["id"] != "one"

    assert pxed.pxectl("remove", "one").stdout == "Removed image one.\n"
    assert json.loads(pxed.pxectl("remove", auto["id"], "--json").stdout) == {"removed": auto["id"]}
    assert pxed.image_ids() == []


def test_exit_codes_and_messages(pxed: PxedOnBus) -> None:
    iso = payload_iso(pxed.bus.dir / "dup.iso")
    assert pxed.pxectl("add", str(iso), "--name", "dup").returncode == 0
    cases: list[tuple[list[str], int, str]] = [
        (["add", str(iso), "--name", "dup"], 73, "choose another --name or pxectl remove dup"),
        (["show", "nope"], 66, "no image named 'nope'"),
        (["remove", "nope"], 66, "no image named 'nope'"),
        (["add", "/nonexistent.iso"], 66, "/nonexistent.iso: no such file"),
        (["add", "/dev/zero"], 64, "not a regular file"),
        (["add", str(iso), "--name", "Bad Name"], 64, "invalid image name"),
    ]
    for argv, code, text in cases:
        r = pxed.pxectl(*argv)
        assert r.returncode == code and text in r.stderr and r.stderr.startswith("pxectl: "), (argv, r)
        assert "Traceback" not in r.stderr


def test_access_denied_as_nobody(pxed: PxedOnBus) -> None:
    """The real pxectl as an unprivileged user (imports done as root, then privileges dropped)."""
    iso = payload_iso(pxed.bus.dir / "n.iso")
    assert pxed.pxectl("add", str(iso), "--name", "kept").returncode == 0
    # this interpreter lives under /root, which nobody cannot read: import what argparse
    # imports lazily (shutil) before dropping privileges
    code = ("import os, shutil, sys, pxed.cli\n"
            "os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)\n"
            "raise SystemExit(pxed.cli.main(sys.argv[1:]))\n")
    for argv, text in ((["remove", "kept"], "not authorized to remove images"),
                       (["reload"], "not authorized to reload"),
                       (["add", str(iso), "--name", "x"], "not authorized to import")):
        r = pxed.run([sys.executable, "-c", code, "--bus-address", pxed.address, *argv], cwd=REPO, env=_env())
        assert r.returncode == 77, (argv, r)
        assert text in r.stderr and "run as root or a member of pxed-admin" in r.stderr, (argv, r)
    r = pxed.run([sys.executable, "-c", code, "--bus-address", pxed.address, "list", "-q"], cwd=REPO, env=_env())
    assert r.returncode == 0 and r.stdout == "kept\n", r
    assert pxed.image_ids() == ["kept"]
    assert {c["uid"] for c in pxed.polkit_calls()} == {NOBODY}


def test_daemon_not_running(private_bus: PrivateBus, tmp_path: Path) -> None:
    argv = [sys.executable, "-m", "pxed.cli", "--bus-address", private_bus.address, "status"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=REPO, env=_env(), timeout=60)
    assert r.returncode == 69, r
    assert "pxed is not running" in r.stderr and "systemctl enable --now pxed.socket" in r.stderr, r
    gone = f"unix:path={tmp_path}/no-bus"
    r = subprocess.run([*argv[:4], gone, "list"], capture_output=True, text=True, cwd=REPO, env=_env(), timeout=60)
    assert r.returncode == 69 and "cannot connect to" in r.stderr, r
    env = _env() | {"DBUS_SYSTEM_BUS_ADDRESS": private_bus.address}
    r = subprocess.run([sys.executable, "-m", "pxed.cli", "status"], capture_output=True, text=True, cwd=REPO,
                       env=env, timeout=60)
    assert r.returncode == 69 and "pxed is not running" in r.stderr, r


def test_progress_bar_on_a_terminal_and_lines_on_a_pipe(tmp_path: Path, private_bus: PrivateBus) -> None:
    p = PxedOnBus(tmp_path, private_bus, throttle=0.05)
    try:
        iso = payload_iso(p.bus.dir / "big.iso", payload=24 << 20)
        code, out = in_pty(pxectl_argv(p, "add", str(iso), "--name", "tty"))
        assert code == 0, out
        assert "\r\x1b[K[" in out and "#" in out and "MiB/s" in out, out
        assert "] 100%" in out and "Imported tty: " in out, out
        bars = [seg for seg in out.split("\r\x1b[K") if seg.startswith("[")]
        assert len(bars) >= 3, out  # it moved while we watched

        r = p.pxectl("add", str(iso), "--name", "pipe")
        assert r.returncode == 0, r
        lines = r.stderr.splitlines()
        assert "\r" not in r.stderr and "\x1b" not in r.stderr, r.stderr
        steps = [ln for ln in lines if ln.startswith("importing: ")]
        assert len(steps) >= 3 and steps[-1].startswith("importing: 100%"), r.stderr
        assert r.stdout.startswith("Imported pipe: "), r

        code, out = in_pty(pxectl_argv(p, "add", str(iso), "--name", "ttyjson", "--json"))
        assert code == 0, out
        data: dict[str, Any] = json.loads(out.replace("\r\n", "\n"))
        assert data["id"] == "ttyjson" and data["state"] == "ready"
        assert p.image_ids() == ["pipe", "tty", "ttyjson"]
    finally:
        p.stop()


def test_ctrl_c_cancels_the_import(tmp_path: Path, private_bus: PrivateBus) -> None:
    p = PxedOnBus(tmp_path, private_bus, throttle=0.2)
    try:
        iso = payload_iso(p.bus.dir / "slow.iso", payload=24 << 20)
        code, out = in_pty(pxectl_argv(p, "add", str(iso), "--name", "slow"), interrupt_when="MiB/s")
        assert code == 130, out
        assert "Cancelling the import..." in out and "Import cancelled." in out, out
        assert p.image_ids() == []
        assert p.pycall("ListJobs")["ok"] == [[]]
        assert "cancelled" in p.log()
        # a cancel while queued behind another import ends at once, too
        first = subprocess.Popen(pxectl_argv(p, "add", str(iso), "--name", "first"), cwd=REPO, env=_env(),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1)
        second = subprocess.Popen(pxectl_argv(p, "add", str(iso), "--name", "second"), cwd=REPO, env=_env(),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        time.sleep(1.5)
        second.send_signal(signal.SIGINT)
        _out, err = second.communicate(timeout=30)
        assert second.returncode == 130, err
        first.send_signal(signal.SIGINT)
        first.communicate(timeout=60)
        assert first.returncode == 130
        assert p.image_ids() == []
    finally:
        p.stop()
