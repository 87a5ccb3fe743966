"""`make bench`'s DHCP part runs end to end (a smoke test: figures are the benchmark's business,
not a test's): both servers answer every transaction of a slow load, each logs one line per
exchange, and a socket-activated pxed answers its first DISCOVER."""

from __future__ import annotations

import pytest

from tests import bench_dhcp, bench_storm
from tests.conftest import need_tool

pytestmark = pytest.mark.integration


def test_dhcp_bench_runs_both_servers_and_the_cold_start() -> None:
    need_tool("dnsmasq", "dbus-daemon", "busctl", "systemd-socket-activate")
    res = bench_dhcp.run(rates=(300,), duration=1.0)
    for kind in ("pxed", "dnsmasq"):
        (row,) = res["load"][kind]
        assert row["sent"] == 300 and row["acks"] == row["offers"] == 300, (kind, row)
        # one line per exchange (offer, ack); pxed adds at most one ClientSeen rate-limit summary a
        # second, which lands inside the 1 s load window once or twice: 600..602 lines for 300
        assert 2.0 <= row["log_lines_per_tx"] <= 2.01, (kind, row)
    assert len(res["cold_start_ms"]) == 3


def test_boot_storm_serves_every_client_whole() -> None:
    need_tool("curl", "in.tftpd", "lighttpd", "dnsmasq", "systemd-socket-activate")
    res = bench_storm.run(clients=8)
    for path in ("http", "tftp"):
        r = res[path]
        assert r["clients"] == 8 and r["failed"] == 0 and r["incomplete"] == 0, r
    assert bench_storm.report(res)
