"""pxectl without a bus: argument parsing, help that teaches, error mapping, output formats.
(Everything that talks to pxed is in tests/dbus/test_pxectl.py.)"""

from __future__ import annotations

import io
import re
import subprocess
import sys

import pytest

from pxed import cli
from pxed.errors import (
    EX_NOPERM,
    EX_SOFTWARE,
    EX_UNAVAILABLE,
    AccessDenied,
    Exists,
    InvalidImage,
    NotFound,
    PxedError,
    all_errors,
)
from tests.conftest import REPO


def parse(*argv: str) -> object:
    return cli.build_parser().parse_args(list(argv))


def test_every_verb_parses_with_json_before_or_after() -> None:
    for verb in cli.Verb:
        extra = {"show": ["x"], "remove": ["x"], "add": ["x.iso"]}.get(verb.value, [])
        assert parse(verb.value, *extra).json is False  # type: ignore[attr-defined]
        assert parse(verb.value, *extra, "--json").json is True  # type: ignore[attr-defined]
        assert parse("--json", verb.value, *extra).json is True  # type: ignore[attr-defined]


def test_add_options() -> None:
    a = parse("add", "d.iso", "--name", "deb", "--title", "Debian 12", "--no-memdisk")
    assert (a.iso, a.name, a.title, a.memdisk) == ("d.iso", "deb", "Debian 12", False)  # type: ignore[attr-defined]
    assert parse("add", "d.iso", "--memdisk").memdisk is True  # type: ignore[attr-defined]
    assert parse("add", "d.iso").memdisk is None  # type: ignore[attr-defined]
    with pytest.raises(SystemExit):
        parse("add", "d.iso", "--memdisk", "--no-memdisk")
    with pytest.raises(SystemExit):
        parse("frobnicate")


def test_help_teaches() -> None:
    r = subprocess.run([sys.executable, "-m", "pxed.cli", "--help"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0
    for verb in cli.Verb:
        assert re.search(rf"^  pxectl {verb.value}\b", r.stdout, re.M), verb  # one example per verb
    assert "77 access denied" in r.stdout and "pxectl(1)" in r.stdout
    for verb in cli.Verb:
        sub = subprocess.run([sys.executable, "-m", "pxed.cli", verb.value, "--help"], capture_output=True,
                             text=True, cwd=REPO)
        assert sub.returncode == 0 and "example:\n  pxectl " in sub.stdout, verb


def test_remote_errors_map_to_the_error_tree() -> None:
    for cls in all_errors():
        err = cli.remote_error("org.pxed.Pxed1.Error." + cls.dbus_name, "text")
        assert err.exit_code == cls.exit_code and str(err) == "text", cls
    assert isinstance(cli.remote_error("org.pxed.Pxed1.Error.InvalidImage", "x"), InvalidImage)
    assert isinstance(cli.remote_error("org.pxed.Pxed1.Error.Exists", "x"), Exists)
    assert isinstance(cli.remote_error("org.pxed.Pxed1.Error.NotFound", "x"), NotFound)
    denied = cli.remote_error("org.freedesktop.DBus.Error.AccessDenied", "Rejected send message")
    assert isinstance(denied, AccessDenied) and denied.exit_code == EX_NOPERM
    assert "run as root or a member of pxed-admin" in str(denied)
    for name in ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NoReply",
                 "org.freedesktop.systemd1.LoadFailed"):
        gone = cli.remote_error(name, "")
        assert gone.exit_code == EX_UNAVAILABLE and "systemctl enable --now pxed.socket" in str(gone)
    internal = cli.remote_error("org.pxed.Pxed1.Error.Internal", "internal error")
    assert internal.exit_code == EX_SOFTWARE and "journalctl -u pxed" in str(internal)
    other = cli.remote_error("org.example.Weird", "huh")
    assert type(other) is PxedError and str(other) == "org.example.Weird: huh"


def test_formats() -> None:
    assert cli.human_size(0) == "0 B"
    assert cli.human_size(1536) == "1.5 KiB"
    assert cli.human_size(3 * 1024**3) == "3.0 GiB"
    assert cli.arch_name(7) == "7 (efi-x86-64)" and cli.arch_name(4242) == "4242"
    assert cli.detection_summary({}) == "not detected"
    assert cli.detection_summary({"profile": "debian", "version": "12.5", "kernel": "install.amd/vmlinuz",
                                  "initrds": ["install.amd/initrd.gz"]}) == \
        "debian 12.5: kernel install.amd/vmlinuz, initrd install.amd/initrd.gz"
    assert cli.detection_summary({"profile": "memdisk", "memdisk": True}) == "memdisk: boots whole through memdisk"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_view_tty_and_plain() -> None:
    tty = FakeTTY()
    view = cli.ProgressView(tty, tty=True, quiet=False)
    view.update(512 << 20, 1 << 30)
    view.message("Detected debian 12")
    view.update(1 << 30, 1 << 30)
    view.finish(1 << 30)
    out = tty.getvalue()
    assert out.startswith("\r\x1b[K[###############---------------]  50%  512.0 MiB / 1.0 GiB")
    assert "\r\x1b[KDetected debian 12\n" in out
    assert out.endswith("] 100%  " + out.rsplit("] 100%  ", 1)[1]) and out.endswith("/s\n")

    plain = io.StringIO()
    view = cli.ProgressView(plain, tty=False, quiet=False)
    for done in range(0, 101, 5):
        view.update(done, 100)
    view.finish(100)
    lines = plain.getvalue().splitlines()
    assert [ln.split()[1] for ln in lines] == [f"{p}%" for p in range(0, 101, 10)]
    assert "\r" not in plain.getvalue()

    quiet = io.StringIO()
    view = cli.ProgressView(quiet, tty=False, quiet=True)
    view.update(1, 2)
    view.message("x")
    view.finish(2)
    assert quiet.getvalue() == ""


def test_boots_on_says_whole_isos_are_bios_only() -> None:
    from pxed.cli import boots_on

    assert boots_on({"profile": "unknown", "memdisk": True}) == \
        "BIOS only (whole ISO through memdisk; UEFI menus leave it out)"
    assert boots_on({"profile": "debian-live", "kernel": "live/vmlinuz"}) == "BIOS and UEFI"
    assert boots_on({}) is None
