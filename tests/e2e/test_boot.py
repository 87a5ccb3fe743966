"""Real firmware boots through pxed: SeaBIOS + iPXE ROM, OVMF, and a whole ISO via memdisk.

Each test brings up the full lab (tests/lab/bootlab.py): dnsmasq as the network's DHCP
server (leases only), pxed under systemd-socket-activate, tftp-hpa and lighttpd started
from the generated units, and a QEMU client on the bridge, all in namespaces.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import need
from tests.lab.bootlab import MILESTONES, BootLab
from tests.lab.netns import wait_for
from tests.lab.qemu import OVMF_CODE

pytestmark = [pytest.mark.qemu, pytest.mark.integration, pytest.mark.slow]
IPXE_ISO = Path("/usr/lib/ipxe/ipxe.iso")


@pytest.fixture
def workdir(lab_dir: Path) -> Path:
    return lab_dir


def boot_to_kernel(bl: BootLab, firmware: str) -> None:
    vm = bl.boot(firmware)
    for name, pattern in MILESTONES:
        vm.wait(pattern, 240, name)
    events = bl.pxed_events(vm)
    stages = [stage for _, stage, _ in events]
    expected = ["offer"] if firmware == "bios" else ["offer", "ack"]  # UEFI: the boot file comes on 4011
    assert stages[:len(expected)] == expected, events
    boot_file = events[len(expected) - 1][2]["BOOT_FILE"]
    # the VM's NIC ROM is iPXE: BIOS gets pxelinux.0, which fetches http:// through iPXE (docs/boot-failures.md)
    assert boot_file == ("pxelinux.0" if firmware == "bios" else "efi64/syslinux.efi")
    order = [t for t, _ in bl.timeline(vm)]
    assert order == sorted(order)
    first_answer = events[0][0]
    tftp = bl.tftp_events(vm)
    assert tftp and tftp[0][1].lstrip("/") == boot_file, tftp  # the boot file is the first thing fetched
    assert first_answer <= tftp[0][0] < vm.seen["menu shown"] < vm.seen["kernel started"]
    text = vm.text()
    assert "Command line: BOOT_IMAGE=http://10.77.0.1/debian/linux console=ttyS0,115200" in text
    vm.stop()


def test_bios_seabios_ipxe_boots_menu_and_kernel_over_http(workdir: Path) -> None:
    with BootLab(workdir) as bl:
        bl.start()
        boot_to_kernel(bl, "bios")


def test_uefi_ovmf_boots_menu_and_kernel_over_http(workdir: Path) -> None:
    need(OVMF_CODE.exists(), "OVMF is not installed (ovmf)")
    with BootLab(workdir) as bl:
        bl.start()
        boot_to_kernel(bl, "uefi")


def test_memdisk_entry_boots_whole_ipxe_iso(workdir: Path) -> None:
    need(IPXE_ISO.exists(), "ipxe.iso is not installed (ipxe)")
    iso = workdir / "boot/iso/ipxe.iso"
    iso.parent.mkdir(parents=True)
    shutil.copyfile(IPXE_ISO, iso)
    iso.chmod(0o644)
    iso.parent.chmod(0o755)
    extra = "[Entry ipxe-iso]\nTitle=iPXE ISO via memdisk\nType=memdisk\nKernel=iso/ipxe.iso\n"
    with BootLab(workdir, extra_config=extra, default="ipxe-iso") as bl:
        bl.start()
        vm = bl.boot("bios")
        vm.wait("pxed network boot", 120, "menu shown")
        vm.wait(r"Loading http://10\.77\.0\.1/iso/ipxe\.iso", 60, "ISO loading over HTTP")
        loaded = vm.wait(r"Loading http://10\.77\.0\.1/iso/ipxe\.iso\.\.\.ok", 120, "ISO loaded")
        # iPXE from the ISO prints to VGA only; it proves itself on the network: a new iPXE
        # DHCP exchange from this machine after memdisk started the ISO.
        wait_for(lambda: any(t > loaded for t, _, e in bl.pxed_events(vm) if "iPXE" in e.get("MESSAGE", "")),
                 240, what="DHCP from the iPXE inside the ISO")
        assert "LINUX memdisk" in (workdir / "boot/pxelinux.cfg/pxe.cfg").read_text()
