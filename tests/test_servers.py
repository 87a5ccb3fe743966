"""tftp-hpa and the HTTP server, started from the generator's units, in a lab namespace.

The exact ExecStart= of each generated unit runs as the unit's user with only its
ambient capabilities (setpriv), like systemd would; clients fetch from another namespace.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need_tool
from tests.lab.netns import Lab, Segment, wait_for
from tests.lab.pxedproc import write_config
from tests.lab.servers import generate, start_unit, world_readable_dir

pytestmark = pytest.mark.integration
SECRET = "outside-the-root"


@pytest.fixture
def served_tree(lab: Lab, segment: Segment) -> Iterator[tuple[Segment, Path]]:
    need_tool("in.tftpd", "lighttpd", "tftp", "curl", "setpriv")
    wd = world_readable_dir()
    try:
        conf = write_config(wd / "pxed.conf", wd)
        boot = wd / "boot"
        boot.chmod(0o755)
        (boot / "hello.txt").write_text("hello\n")
        (boot / "sub").mkdir()
        (boot / "sub/a.txt").write_text("a\n")
        (boot / "ww.txt").write_text("world-writable\n")
        (boot / "ww.txt").chmod(0o666)
        (wd / "secret.txt").write_text(SECRET)
        (boot / "etc").symlink_to("/etc")
        (boot / "up").symlink_to("../secret.txt")
        units = generate(conf, wd / "gen")
        start_unit(lab, segment.srv, units["pxed-tftp.service"], wd / "tftp.log")
        start_unit(lab, segment.srv, units["pxed-http.service"], wd / "http.log")
        wait_for(lambda: "0.0.0.0:80" in segment.srv.run(["ss", "-ltn"]).stdout, 10, what="HTTP listening")
        wait_for(lambda: ":69" in segment.srv.run(["ss", "-lun"]).stdout, 10, what="TFTP listening")
        yield segment, wd
    finally:
        shutil.rmtree(wd, ignore_errors=True)


def tftp_get(seg: Segment, path: str) -> str:
    r = seg.dhcp.run(["tftp", "10.77.0.1", "-c", "get", path, "/dev/stdout"], check=False, timeout=30)
    return r.stdout + r.stderr


def http(seg: Segment, path: str) -> tuple[str, str]:
    r = seg.dhcp.run(["curl", "-s", "--path-as-is", "-o", "-", "-w", "\n%{http_code}", f"http://10.77.0.1/{path}"],
                     check=False)
    body, _, code = r.stdout.rpartition("\n")
    return code, body


def test_files_are_served_over_tftp_and_http(served_tree: tuple[Segment, Path]) -> None:
    seg, _ = served_tree
    assert "hello" in tftp_get(seg, "hello.txt") and "a" in tftp_get(seg, "sub/a.txt")
    assert http(seg, "hello.txt") == ("200", "hello\n")
    r = seg.dhcp.run(["curl", "-s", "-r", "0-0", "http://10.77.0.1/hello.txt"])  # archiso probes with a range
    assert r.stdout == "h"


@pytest.mark.parametrize("path", ["etc/passwd", "up", "../secret.txt", "../../../../etc/passwd",
                                  "%2e%2e/secret.txt", "sub/..%2f..%2fsecret.txt", "/etc/passwd"])
def test_paths_outside_the_root_are_refused(served_tree: tuple[Segment, Path], path: str) -> None:
    seg, _ = served_tree
    code, body = http(seg, path.lstrip("/") if path != "/etc/passwd" else "/etc/passwd")
    assert code in ("400", "403", "404") and "root:" not in body and SECRET not in body
    out = tftp_get(seg, path)
    assert "root:" not in out and SECRET not in out


def test_no_directory_listing(served_tree: tuple[Segment, Path]) -> None:
    seg, _ = served_tree
    for path in ("", "sub/"):
        code, body = http(seg, path)
        assert code in ("403", "404") and "a.txt" not in body


def test_tftp_writes_are_refused(served_tree: tuple[Segment, Path]) -> None:
    seg, wd = served_tree
    src = "/tmp/pxed-tftp-put.txt"
    seg.dhcp.run(["sh", "-c", f"echo OVERWRITTEN > {src}"])
    try:
        for target in ("new.txt", "ww.txt"):
            out = seg.dhcp.run(["tftp", "10.77.0.1", "-c", "put", src, target], check=False, timeout=30)
            assert "Error" in out.stdout + out.stderr or out.returncode != 0
        time.sleep(0.3)
        assert not (wd / "boot/new.txt").exists()
        assert (wd / "boot/ww.txt").read_text() == "world-writable\n"
    finally:
        seg.dhcp.run(["rm", "-f", src])

