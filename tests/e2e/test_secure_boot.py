"""UEFI through the distribution's signed chain: OVMF with Secure Boot enforced → shim → GRUB →
pxed's grub.cfg → Debian's signed kernel over HTTP; an unsigned kernel refused; arm64 (AAVMF).

Debian 12's GRUB takes its server from the network's DHCP ACK, not from pxed's proxy answers
(docs/uefi-secure-boot.md): these labs give the network's DHCP server the documented fallback,
``next-server`` = pxed (dnsmasq: ``dhcp-boot=,pxed,<address>``, no file name, so shim still takes
its file from pxed).  test_debian_grub_ignores_proxy_dhcp shows why the fallback is needed.
"""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from tests.conftest import need, need_tool
from tests.lab.bootlab import GRUB_CONFIG, NEXT_SERVER, BootLab
from tests.lab.netns import DHCP_IP, wait_for
from tests.lab.qemu import AAVMF_CODE, ARM64_NETBOOT_DIR, KERNEL, OVMF_SB_CODE, OVMF_SB_VARS

pytestmark = [pytest.mark.qemu, pytest.mark.integration, pytest.mark.slow]
SHIM = Path("/usr/lib/shim/shimx64.efi.signed")
GRUB = Path("/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed")
UEFI = GRUB_CONFIG
# a title GRUB's lexer would take apart if it were not quoted
HOSTILE = "[Entry quoted]\nTitle=It's $(reboot); } {x}\nKernel=debian/linux\nAppend=a='b c' ; reboot $x \\\n"


@pytest.fixture
def workdir(lab_dir: Path) -> Path:
    need(SHIM.exists() and GRUB.exists(), "Debian's signed shim and GRUB missing (shim-signed, grub-efi-amd64-signed)")
    need(OVMF_SB_CODE.exists() and OVMF_SB_VARS.exists(), "OVMF's Secure Boot build missing (ovmf)")
    return lab_dir


def fetched(bl: BootLab) -> list[str]:
    return [f.lstrip("/") for _, f in bl.tftp_events(bl.vms[-1])]


def test_secure_boot_ovmf_boots_shim_grub_menu_and_signed_kernel(workdir: Path) -> None:
    with BootLab(workdir, extra_config=UEFI + HOSTILE, dhcp_extra=NEXT_SERVER) as bl:
        bl.start()
        vm = bl.boot("uefi-sb")
        vm.wait("Fetching Netboot Image grubx64.efi", 300, "shim loaded GRUB")
        vm.wait("pxed network boot", 300, "menu shown")
        vm.wait(r"Linux version", 600, "kernel started")
        vm.wait(r"Secure boot enabled", 120, "kernel sees Secure Boot")
        stages = [(stage, e["BOOT_FILE"]) for _, stage, e in bl.pxed_events(vm)]
        assert stages[:2] == [("offer", "shimx64.efi"), ("ack", "shimx64.efi")], stages
        files = fetched(bl)
        assert files[0] == "shimx64.efi" and "grubx64.efi" in files and "grub/grub.cfg" in files, files
        assert files.index("grubx64.efi") < files.index("grub/grub.cfg")
        text = vm.text()
        assert "It's $(reboot); } {x}" in text  # the hostile title, shown whole: one GRUB word
        # Debian 12's signed GRUB has no http module: the kernel came over TFTP
        assert "Command line: BOOT_IMAGE=(tftp,10.77.0.1)/debian/linux console=ttyS0,115200" in text
        assert "debian/linux" in files and "debian/initrd.gz" in files, files
        cfg = (bl.boot_root / "grub/grub.cfg").read_text()
        assert "menuentry 'Run Memtest86+ (RAM test)'" not in cfg or 'if [ "$lockdown" != "y" ]' in cfg


def test_secure_boot_refuses_an_unsigned_kernel(workdir: Path) -> None:
    """The same VM and chain, the default entry a kernel whose signature no longer matches."""
    tampered = workdir / "boot/tampered/linux"
    tampered.parent.mkdir(parents=True)
    data = bytearray(KERNEL.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the signed image: the Authenticode hash fails
    tampered.write_bytes(bytes(data))
    tampered.chmod(0o644)
    tampered.parent.chmod(0o755)
    extra = UEFI + "[Entry tampered]\nTitle=Tampered kernel\nKernel=tampered/linux\nAppend=console=ttyS0,115200\n"
    with BootLab(workdir, extra_config=extra, default="tampered", dhcp_extra=NEXT_SERVER) as bl:
        bl.start()
        vm = bl.boot("uefi-sb")
        vm.wait("pxed network boot", 400, "menu shown")
        vm.wait(r"bad shim signature", 300, "kernel refused")
        assert "Linux version" not in vm.text()


def test_debian_grub_ignores_proxy_dhcp(workdir: Path) -> None:
    """Without the fallback, shim comes from pxed but GRUB asks the network's DHCP server (siaddr of
    its ACK) for its files: the evidence that Debian 12's GRUB has no proxy-DHCP support."""
    with BootLab(workdir, extra_config=UEFI) as bl:
        bl.start()
        assert bl.seg is not None
        listener = bl.seg.dhcp.socket(socket.AF_INET, socket.SOCK_DGRAM)  # the TFTP port of the DHCP server
        listener.bind((str(DHCP_IP), 69))
        listener.settimeout(0.2)
        asked: list[bytes] = []

        def grub_asked_dhcp_server() -> bool:
            try:
                asked.append(listener.recv(600))
            except TimeoutError:
                pass
            return any(b"/grub/" in a for a in asked)

        vm = bl.boot("uefi-sb")
        vm.wait("Fetching Netboot Image grubx64.efi", 300, "shim loaded GRUB")
        wait_for(grub_asked_dhcp_server, 120, what="GRUB's TFTP request to the network's DHCP server")
        listener.close()
        assert asked[0][:2] == b"\x00\x01" and b"/grub/x86_64-efi/command.lst" in asked[0], asked
        files = fetched(bl)
        assert files[0] == "shimx64.efi" and "grubx64.efi" in files, files  # shim followed pxed
        assert not any(f.startswith("grub/") for f in files), files  # GRUB did not


def test_arm64_aavmf_boots_grub_menu_and_kernel(workdir: Path) -> None:
    need_tool("qemu-system-aarch64")
    need(AAVMF_CODE.exists(), "AAVMF missing (qemu-efi-aarch64)")
    need((ARM64_NETBOOT_DIR / "bootnetaa64.efi").exists(),
         "Debian's arm64 netboot missing (debian-installer-12-netboot-arm64)")
    arm = workdir / "boot/debian-arm64"
    arm.mkdir(parents=True)
    for name in ("linux", "initrd.gz"):
        shutil.copyfile(ARM64_NETBOOT_DIR / name, arm / name)
        (arm / name).chmod(0o644)
    arm.chmod(0o755)
    extra = UEFI + ("[Entry debian-arm64]\nTitle=Debian 12 installer (arm64)\nKernel=debian-arm64/linux\n"
                    "Initrd=debian-arm64/initrd.gz\nAppend=console=ttyAMA0 priority=critical\n")
    with BootLab(workdir, extra_config=extra, default="debian-arm64", dhcp_extra=NEXT_SERVER) as bl:
        bl.start()
        vm = bl.boot("arm64")
        vm.wait("Fetching Netboot Image grubaa64.efi", 600, "shim loaded GRUB")
        vm.wait("pxed network boot", 300, "menu shown")
        vm.wait(r"Linux version", 900, "kernel started")
        stages = [(stage, e["BOOT_FILE"]) for _, stage, e in bl.pxed_events(vm)]
        assert ("ack", "shimaa64.efi") in stages, stages
        # the boot tree took d-i's signed arm64 chain, whose GRUB reads the menu under debian-installer/
        assert "debian-installer/arm64/grub/grub.cfg" in fetched(bl), fetched(bl)
        assert "aarch64" in vm.text() or "arm64" in vm.text()
