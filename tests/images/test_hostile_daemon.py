"""A hostile ISO imported into the running daemon: pxed keeps answering DHCP and does not grow.

pxed under socket activation on a lab segment, on a private bus (tests/bench_dhcp.py's lab);
`pxectl add` of the crafted ISO whose Rock Ridge continuation chains make pycdlib grow by
megabytes per record (tests/images/test_hostile.py) while a client sends DISCOVERs at 200 a
second: every DISCOVER gets its OFFER, the import is refused with the parse limit's error
([Images] ParseTime= from pxed.conf), and the daemon's own resident memory stays flat (the
parsing happens in a child process).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests import bench_dhcp
from tests.conftest import need, need_tool
from tests.images.test_hostile import _follows_ce_chains, shared_ce_chains
from tests.lab.netns import can_run_lab
from tests.lab.pxedproc import REPO

pytestmark = pytest.mark.integration


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def test_dhcp_is_answered_and_memory_stays_flat_during_a_hostile_import(tmp_path: Path) -> None:
    reason = can_run_lab()
    need(reason is None, reason or "")
    need_tool("dbus-daemon", "busctl", "systemd-socket-activate")
    if not _follows_ce_chains(tmp_path):
        pytest.skip("this pycdlib refuses chained continuation areas at once: nothing to outlast")
    iso = shared_ce_chains(tmp_path)
    iso.chmod(0o644)
    wd = tmp_path / "lab"
    wd.mkdir()
    server = bench_dhcp.server_lab("pxed", wd, extra="[Images]\nParseTime=6\n")
    try:
        assert server.bus is not None
        before = rss_kib(server.pid)
        peak = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak.append(rss_kib(server.pid))
                time.sleep(0.1)

        sampler = threading.Thread(target=sample)
        sampler.start()
        add = subprocess.Popen([sys.executable, "-m", "pxed.cli", "--bus-address", server.bus.address, "add",
                                str(iso), "--name", "hostile"], cwd=REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # the import is under way
        load = bench_dhcp.run_load(server.seg, 200, 4.0)  # inside the 6 s the parser may take
        out, err = add.communicate(timeout=60)
        done.set()
        sampler.join()
        assert load["sent"] == load["offers"] == load["acks"] and load["sent"] >= 700, load
        assert add.returncode != 0 and "more than 6 s" in err, (add.returncode, out, err)
        assert max(peak) - before < 40 * 1024, (before, max(peak))  # KiB: the child grew, not pxed
    finally:
        server.close()
