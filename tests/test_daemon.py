"""pxed as a process in a lab network: systemd-socket-activate, scripted PXE clients, dnsmasq.

Every test builds its own namespaces (tests/lab/netns.py): the network's plain DHCP
server (dnsmasq, leases only), pxed in the server namespace, clients in theirs.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO, need_tool
from tests.lab.netns import Lab, Segment, wait_for
from tests.lab.pxedproc import PxedProcess, start_pxed, write_config

pytestmark = pytest.mark.integration


def client(seg_ns: Any, kind: str, mac: str = "52:54:00:00:00:01", *extra: str, wait: float = 1.0) -> dict[str, Any]:
    r = seg_ns.run([sys.executable, "-m", "tests.lab.pxeclient", "--kind", kind, "--mac", mac, "--json",
                    "--wait", str(wait), *extra], cwd=REPO)
    return json.loads(r.stdout)


def proxy_offers(result: dict[str, Any]) -> list[dict[str, Any]]:
    return [o for o in result["offers"] if o.get("server_id") == "10.77.0.1"]


@pytest.fixture
def served(lab: Lab, segment: Segment, tmp_path: Path) -> Iterator[tuple[Segment, PxedProcess]]:
    need_tool("systemd-socket-activate", "dnsmasq")
    lab.dnsmasq_dhcp(segment, tmp_path)
    conf = write_config(tmp_path / "pxed.conf", tmp_path)
    p = start_pxed(lab, segment.srv, tmp_path, conf)
    yield segment, p
    p.close()


def test_bios_client_gets_pxe_offer_next_to_the_networks_dhcp_offer(served: tuple[Segment, PxedProcess]) -> None:
    seg, p = served
    res = client(seg.cli, "bios", wait=2.5)
    dhcp = [o for o in res["offers"] if o["yiaddr"] != "0.0.0.0"]
    assert dhcp and dhcp[0]["server_id"] == "10.77.0.2", "dnsmasq (the network's DHCP) answered too"
    (offer,) = proxy_offers(res)
    assert offer["from"] == "10.77.0.1:67" and offer["yiaddr"] == "0.0.0.0"
    assert offer["file"] == "lpxelinux.0" and offer["siaddr"] == "10.77.0.1" and offer["option43"] == {"6": "08"}
    assert offer["flags"] & 0x8000 and offer["size"] >= 300
    assert offer["options"]["97"] == "000102030405060708090a0b0c0d0e0f10"


@pytest.mark.parametrize("kind", ["efi64", "efi9"])
def test_uefi_client_gets_binl_offer_then_boot_file_on_4011(served: tuple[Segment, PxedProcess], kind: str) -> None:
    seg, _ = served
    res = client(seg.cli, kind, "52:54:00:00:00:07", "--request-4011", "--address", "10.77.0.50/24")
    (offer,) = proxy_offers(res)
    assert offer["file"] == "" and offer["option43"] == {} and offer["vendor"] == "PXEClient"
    (ack,) = res["acks"]
    assert ack["from"] == "10.77.0.1:4011" and ack["type"] == "ACK"
    assert ack["file"] == "efi64/syslinux.efi" and ack["ciaddr"] == "10.77.0.50" and ack["yiaddr"] == "0.0.0.0"


def test_http_boot_and_ipxe(served: tuple[Segment, PxedProcess]) -> None:
    seg, _ = served
    (offer,) = proxy_offers(client(seg.cli, "http64"))
    assert offer["vendor"] == "HTTPClient" and offer["file"] == "http://10.77.0.1/efi64/syslinux.efi"
    for kind in ("ipxe", "ipxe-rfc3004"):
        (offer,) = proxy_offers(client(seg.cli, kind, "52:54:00:00:00:0a"))
        # BIOS on iPXE's stack: pxelinux.0, whose http:// goes through iPXE (docs/boot-failures.md)
        assert offer["file"] == "pxelinux.0" and offer["siaddr"] == "10.77.0.1"


def test_non_pxe_clients_and_unconfigured_arches_get_nothing(served: tuple[Segment, PxedProcess]) -> None:
    seg, p = served
    for kind in ("nonpxe", "no93", "efi32"):
        assert proxy_offers(client(seg.cli, kind, "52:54:00:00:00:0b")) == []
    wait_for(lambda: any("EFI32=" in e.get("MESSAGE", "") for e in p.journal_entries()), 5,
             what="the log line saying which key to set")


def test_journal_fields_show_one_machines_boot(served: tuple[Segment, PxedProcess]) -> None:
    seg, p = served
    mac = "52:54:00:00:00:42"
    client(seg.cli, "efi64", mac, "--request-4011", "--address", "10.77.0.51/24")
    wait_for(lambda: len(p.entries_for(CLIENT_MAC=mac)) >= 2, 5, what="two journal entries")
    stages = [e["PXE_STAGE"] for e in p.entries_for(CLIENT_MAC=mac)]
    assert stages == ["offer", "ack"]
    ack = p.entries_for(CLIENT_MAC=mac, PXE_STAGE="ack")[0]
    assert ack["CLIENT_ARCH"] == "7" and ack["BOOT_FILE"] == "efi64/syslinux.efi"
    assert ack["CLIENT_UUID"] == "04030201-0605-0807-090a-0b0c0d0e0f10"
    assert ack["SYSLOG_IDENTIFIER"] == "pxed"


def test_relayed_requests_need_allow_relay(lab: Lab, segment: Segment, tmp_path: Path) -> None:
    need_tool("systemd-socket-activate")
    relay = ("--giaddr", "10.77.0.60", "--address", "10.77.0.60/24", "--server", "10.77.0.1")
    conf = write_config(tmp_path / "pxed.conf", tmp_path)
    p = start_pxed(lab, segment.srv, tmp_path, conf)
    assert client(segment.cli, "bios", "52:54:00:00:00:0c", *relay)["offers"] == []
    conf.write_text(conf.read_text() + "[Network]\nAllowRelay=yes\n")
    os.kill(p.proc.pid, signal.SIGHUP)
    wait_for(lambda: sum("READY=1" in n for n in p.notifications()) >= 2, 10, what="READY after reload")
    assert any(n.startswith("RELOADING=1\nMONOTONIC_USEC=") for n in p.notifications())
    (offer,) = client(segment.cli, "bios", "52:54:00:00:00:0c", *relay)["offers"]
    assert offer["from"] == "10.77.0.1:67" and offer["giaddr"] == "10.77.0.60" and offer["file"] == "lpxelinux.0"
    os.kill(p.proc.pid, signal.SIGTERM)
    assert p.proc.wait(10) == 0
    assert "STOPPING=1" in p.notifications()
    p.close()


def test_requests_on_another_interface_are_not_answered(lab: Lab, segment: Segment, tmp_path: Path) -> None:
    need_tool("systemd-socket-activate")
    other = lab.netns("other")
    lab.veth(segment.srv, "lab1", other, "lab0")
    segment.srv.ip("addr", "add", "10.78.0.1/24", "dev", "lab1")
    conf = write_config(tmp_path / "pxed.conf", tmp_path)
    p = start_pxed(lab, segment.srv, tmp_path, conf)
    assert client(other, "bios", "52:54:00:00:00:0d")["offers"] == []
    assert len(proxy_offers(client(segment.cli, "bios", "52:54:00:00:00:0d"))) == 1
    assert not p.entries_for(CLIENT_MAC="52:54:00:00:00:0d", PXE_STAGE="offer")[1:]
    p.close()


def test_follows_address_changes_without_restart(lab: Lab, segment: Segment, tmp_path: Path) -> None:
    need_tool("systemd-socket-activate")
    conf = write_config(tmp_path / "pxed.conf", tmp_path,
                        extra="[Entry k]\nKernel=k/linux\nInitrd=k/initrd\n")
    p = start_pxed(lab, segment.srv, tmp_path, conf)
    menu = tmp_path / "boot/pxelinux.cfg/pxe.cfg"
    assert "LINUX http://10.77.0.1/k/linux" in menu.read_text()
    segment.srv.ip("addr", "del", "10.77.0.1/24", "dev", "lab0")
    wait_for(lambda: any("Waiting for an IPv4 address on lab0" in n for n in p.notifications()), 10,
             what="STATUS without an address")
    segment.srv.ip("addr", "add", "10.77.0.9/24", "dev", "lab0")
    wait_for(lambda: "10.77.0.9" in menu.read_text(), 10, what="menu rewritten with the new address")
    assert "LINUX http://10.77.0.9/k/linux" in menu.read_text()
    res = client(segment.cli, "bios", "52:54:00:00:00:0e")
    (offer,) = [o for o in res["offers"] if o["yiaddr"] == "0.0.0.0"]
    assert offer["siaddr"] == "10.77.0.9" and offer["server_id"] == "10.77.0.9" and offer["sname"] == "10.77.0.9"
    wait_for(lambda: any("Serving lab0 (10.77.0.9)" in n for n in p.notifications()), 10, what="new STATUS")
    p.close()


def test_waits_for_an_interface_that_appears_later(lab: Lab, segment: Segment, tmp_path: Path) -> None:
    need_tool("systemd-socket-activate")
    conf = write_config(tmp_path / "pxed.conf", tmp_path, interface="late0")
    p = start_pxed(lab, segment.srv, tmp_path, conf)
    assert "Waiting for interface late0" in p.wait_notified("READY=1")
    late = lab.netns("late")
    lab.veth(segment.srv, "late0", late, "lab0")
    segment.srv.ip("addr", "add", "10.79.0.1/24", "dev", "late0")
    wait_for(lambda: any("Serving late0 (10.79.0.1)" in n for n in p.notifications()), 10, what="serving late0")
    (offer,) = client(late, "bios", "52:54:00:00:00:0f")["offers"]
    assert offer["siaddr"] == "10.79.0.1"
    p.close()
