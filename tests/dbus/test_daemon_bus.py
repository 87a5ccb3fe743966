"""The real daemon on a bus: pxed under systemd-socket-activate in a lab namespace offers
org.pxed.Pxed1 on a private bus with the shipped policy, and what it does on the network
shows up over D-Bus (ClientSeen, `pxectl clients`, Address, MenusReloaded)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, need_tool
from tests.dbus.bus import PrivateBus
from tests.dbus.conftest import DEST, MANAGER, _env
from tests.lab.netns import Lab, Segment, wait_for
from tests.lab.pxedproc import start_pxed, write_config

pytestmark = pytest.mark.integration


def busctl(bus: PrivateBus, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["busctl", f"--address={bus.address}", *args], capture_output=True, text=True, timeout=30)


def prop(bus: PrivateBus, name: str) -> str:
    r = busctl(bus, "get-property", *DEST, MANAGER, name)
    return r.stdout.strip() if r.returncode == 0 else f"<{r.stderr.strip()}>"


def test_daemon_reports_clients_and_address_over_the_bus(lab: Lab, segment: Segment, tmp_path: Path,
                                                          private_bus: PrivateBus) -> None:
    need_tool("systemd-socket-activate", "dbus-monitor")
    conf = write_config(tmp_path / "pxed.conf", tmp_path)
    monitor_out = (tmp_path / "monitor.log").open("w")
    monitor = subprocess.Popen(
        ["dbus-monitor", "--address", private_bus.address, f"type='signal',sender='{DEST[0]}'"],
        stdout=monitor_out, stderr=subprocess.STDOUT, text=True)
    try:
        p = start_pxed(lab, segment.srv, tmp_path, conf, env={"DBUS_SYSTEM_BUS_ADDRESS": private_bus.address})
        wait_for(lambda: prop(private_bus, "Address") == 's "10.77.0.1"', 20, what="Address property over the bus")
        assert prop(private_bus, "Interface") == 's "lab0"'
        assert prop(private_bus, "State") == 's "running"'

        mac = "52:54:00:00:be:01"
        r = segment.cli.run([sys.executable, "-m", "tests.lab.pxeclient", "--kind", "bios", "--mac", mac,
                             "--json", "--wait", "1.0"], cwd=REPO)
        assert any(o["file"] == "lpxelinux.0" for o in json.loads(r.stdout)["offers"])

        def clients() -> list[dict[str, object]]:
            out = subprocess.run([sys.executable, "-m", "pxed.cli", "--bus-address", private_bus.address,
                                  "clients", "--json"], capture_output=True, text=True, cwd=REPO, env=_env())
            assert out.returncode == 0, out.stderr
            return json.loads(out.stdout)  # type: ignore[no-any-return]

        wait_for(lambda: any(c.get("mac") == mac for c in clients()), 10, what="pxectl clients shows the client")
        (seen,) = [c for c in clients() if c.get("mac") == mac]
        assert seen["stage"] == "offer" and seen["boot_file"] == "lpxelinux.0" and seen["arch"] in (0, "bios", "BIOS")
        log = lambda: (tmp_path / "monitor.log").read_text()  # noqa: E731
        wait_for(lambda: "member=ClientSeen" in log() and mac in log(), 10, what="ClientSeen signal")

        # the address follows the interface, and the property with it
        segment.srv.ip("addr", "del", "10.77.0.1/24", "dev", "lab0")
        segment.srv.ip("addr", "add", "10.77.0.9/24", "dev", "lab0")
        wait_for(lambda: prop(private_bus, "Address") == 's "10.77.0.9"', 15, what="Address follows the interface")
        assert "member=PropertiesChanged" in log()

        # SIGHUP reloads: MenusReloaded
        before = log().count("member=MenusReloaded")
        os.kill(p.proc.pid, signal.SIGHUP)  # every wrapper execs: this is pxed
        wait_for(lambda: log().count("member=MenusReloaded") > before, 15, what="MenusReloaded after SIGHUP")
        p.close()
    finally:
        monitor.terminate()
        monitor.wait(5)
        monitor_out.close()
