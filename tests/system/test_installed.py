"""The installed pxed under a real systemd (PID 1 in systemd-nspawn) on a lab network.

One container for the module (tests/lab/systemlab.py): a Debian 12 tree made by
debootstrap, pxed installed into it (the .deb when built, else `make install`), configured
for the lab interface, `systemctl enable --now pxed.socket`.  Each test then checks one
promise of the installed package, from outside (the lab's client namespaces, a QEMU
client) and inside (systemctl, journalctl, busctl, pxectl, /proc).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest

from tests.conftest import IN_CI, need, need_tool
from tests.lab.netns import can_run_lab
from tests.lab.nspawn import built_deb, can_run_nspawn
from tests.lab.qemu import INITRD, KERNEL
from tests.lab.servers import world_readable_dir
from tests.lab.systemlab import SystemLab

pytestmark = [pytest.mark.system, pytest.mark.integration, pytest.mark.slow]
SERVER = "10.77.0.1"


@pytest.fixture(scope="module")
def sl() -> Iterator[SystemLab]:
    for reason in (can_run_lab(), can_run_nspawn()):
        need(reason is None, reason or "")
    need_tool("dnsmasq", "radvd", "curl", "make")
    need(KERNEL.exists() and INITRD.exists(), "Debian netboot kernel missing (debian-installer-12-netboot-amd64)")
    deb = built_deb()
    if IN_CI:  # the system test is about the package: `make check` builds it first
        assert deb is not None, "no current .deb: run make deb (make check and make test-system do)"
    d = world_readable_dir("pxedsys.")
    try:
        with SystemLab(d, deb=deb) as lab:
            lab.start()
            yield lab
    finally:
        shutil.rmtree(d, ignore_errors=True)


def active(sl: SystemLab, unit: str) -> str:
    return sl.c.run(["systemctl", "is-active", unit], check=False).stdout.strip()


def pxed_offers(result: dict[str, object]) -> list[dict[str, str]]:
    offers = result["offers"]
    assert isinstance(offers, list)
    return [o for o in offers if o.get("from", "").startswith(f"{SERVER}:") and o.get("vendor") == "PXEClient"]


def test_discover_starts_pxed_by_socket_activation_and_is_answered(sl: SystemLab) -> None:
    sl.c.run(["systemctl", "stop", "pxed.service"])
    assert active(sl, "pxed.socket") == "active"
    assert sl.c.run(["systemctl", "is-enabled", "pxed-pxe.socket"]).stdout.strip() == "enabled"  # Also=
    assert active(sl, "pxed.service") == "inactive"
    result = sl.discover("52:54:00:5e:00:10", wait=8)
    offers = pxed_offers(result)
    assert offers, (result, sl.c.journal("-u", "pxed", "-n", "50"))
    assert offers[0]["yiaddr"] == "0.0.0.0" and offers[0]["file"] == "lpxelinux.0"
    assert active(sl, "pxed.service") == "active"
    assert active(sl, "pxed-pxe.socket") == "active"  # pulled in by pxed.service (Requires=)
