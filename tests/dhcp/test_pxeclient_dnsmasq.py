"""The scripted PXE client (tests/lab/pxeclient.py) against dnsmasq's proxy mode, a reference server.

This proves the client before it is pointed at pxed: it sees the network's DHCP offer and
the proxy offer side by side, does the UEFI :4011 exchange, and a non-PXE client draws no
proxy reply.  Real dnsmasq in lab namespaces; nothing in the root namespace.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, need_tool
from tests.lab.netns import Lab, Segment, wait_for

pytestmark = pytest.mark.integration

GOLDEN = REPO / "tests" / "data" / "dhcp"


def dnsmasq_proxy(lab: Lab, seg: Segment, workdir: Path) -> None:
    """dnsmasq as a proxy-DHCP server (no leases) on the server side of the segment."""
    log = workdir / "dnsmasq-proxy.log"
    lab.spawn(seg.srv, [
        "dnsmasq", "--keep-in-foreground", "--no-daemon", "--port=0", "--no-resolv", "--no-hosts",
        "--bind-interfaces", "--interface=lab0", "--except-interface=lo", "--log-dhcp",
        f"--dhcp-range={seg.subnet.network_address},proxy",
        f"--dhcp-leasefile={workdir / 'proxy.leases'}", f"--pid-file={workdir / 'proxy.pid'}",
        "--pxe-service=x86PC,Boot BIOS,lpxelinux",
        "--pxe-service=7,Boot UEFI,efi64/syslinux.efi",
        "--pxe-service=9,Boot UEFI,efi64/syslinux.efi",
    ], stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
    wait_for(lambda: "DHCP, proxy on subnet" in log.read_text(errors="replace"), 10, what="dnsmasq proxy up")


def client(seg: Segment, kind: str, *extra: str, mac: str = "52:54:00:00:00:01", wait: float = 2.0) -> dict[str, Any]:
    r = seg.cli.run([sys.executable, "-m", "tests.lab.pxeclient", "--kind", kind, "--mac", mac, "--json",
                     "--wait", str(wait), *extra], cwd=REPO)
    out: dict[str, Any] = json.loads(r.stdout)
    return out


def proxy(res: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in res["offers"] if o.get("server_id") == str(Segment.server_ip)]


@pytest.fixture
def seg(lab: Lab, segment: Segment, tmp_path: Path) -> Segment:
    need_tool("dnsmasq")
    lab.dnsmasq_dhcp(segment, tmp_path)
    dnsmasq_proxy(lab, segment, tmp_path)
    return segment


def test_bios_client_sees_dhcp_and_proxy_offers(seg: Segment) -> None:
    res = client(seg, "bios")
    leases = [o for o in res["offers"] if o["yiaddr"] != "0.0.0.0"]
    assert leases and leases[0]["server_id"] == str(seg.dhcp_ip)
    (offer,) = proxy(res)
    assert offer["type"] == "OFFER" and offer["yiaddr"] == "0.0.0.0" and offer["vendor"] == "PXEClient"
    assert offer["from"] == f"{seg.server_ip}:67" and offer["xid"] == res["xid"]
    assert "6" in offer["option43"]  # dnsmasq's discovery control (with its menu)
    assert offer["options"]["97"] == "000102030405060708090a0b0c0d0e0f10"  # echoed


def test_uefi_client_does_the_4011_exchange(seg: Segment) -> None:
    res = client(seg, "efi64", "--request-4011", "--address", "10.77.0.50/24", mac="52:54:00:00:00:07")
    assert proxy(res), res
    (ack,) = res["acks"]
    assert ack["type"] == "ACK" and ack["from"] == f"{seg.server_ip}:4011"
    assert ack["file"].startswith("efi64/syslinux.efi") and ack["yiaddr"] == "0.0.0.0"
    # the temporary address is gone again
    assert "10.77.0.50" not in seg.cli.ip("-4", "addr", "show", "dev", "lab0").stdout


def test_replayed_ovmf_capture_gets_a_proxy_offer(seg: Segment) -> None:
    res = client(seg, "efi64", "--replay", str(GOLDEN / "ovmf-1-discover.bin"), mac="52:54:00:00:00:09")
    (offer,) = proxy(res)
    assert offer["vendor"] == "PXEClient" and offer["xid"] == res["xid"]


def test_non_pxe_client_gets_only_the_lease_offer(seg: Segment) -> None:
    res = client(seg, "nonpxe", wait=1.5)
    assert res["offers"] and not proxy(res)
