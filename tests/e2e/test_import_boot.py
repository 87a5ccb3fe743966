"""Imported images boot in QEMU through pxed: an archiso-layout fixture's kernel, and ipxe.iso via memdisk.

The archiso fixture carries Debian's netboot kernel as ``vmlinuz-linux`` and, as its
initramfs, a one-program initramfs whose /init prints the kernel command line on the
serial port: the menu entry pxed made from the import is what started the kernel, and
the command line it received is checked (archiso_http_srv pointing at pxed, BOOTIF
from SYSAPPEND 2).  Debian's real ipxe.iso, imported through the memdisk fallback,
boots until the iPXE inside it sends its own DHCP request.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
from pathlib import Path

import pytest

from pxed.config import load_config
from pxed.service import ImportOptions, Service
from tests.conftest import need, need_tool
from tests.images import isos
from tests.lab.bootlab import DEBIAN_ENTRY, BootLab
from tests.lab.netns import wait_for
from tests.lab.pxedproc import write_config
from tests.lab.qemu import KERNEL

pytestmark = [pytest.mark.qemu, pytest.mark.integration, pytest.mark.slow]
IPXE_ISO = Path("/usr/lib/ipxe/ipxe.iso")

INIT_C = r"""
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/reboot.h>
#include <unistd.h>
int main(void) {
    char buf[4096];
    int tty = open("/dev/ttyS0", O_WRONLY | O_NOCTTY), fd, n = 0;
    mount("proc", "/proc", "proc", 0, 0);
    if ((fd = open("/proc/cmdline", O_RDONLY)) >= 0) { n = read(fd, buf, sizeof buf - 1); close(fd); }
    if (n < 0) n = 0;
    write(tty, "\r\nPXED-E2E-INIT cmdline: ", 25); write(tty, buf, n); write(tty, "\r\nPXED-E2E-END\r\n", 16);
    sync(); reboot(RB_POWER_OFF);
    for (;;) pause();
}
"""


def newc(entries: list[tuple[str, int, bytes, tuple[int, int]]]) -> bytes:
    """A cpio "newc" archive: (name, mode, data, (rdev major, minor)) per entry."""
    out = bytearray()

    def pad() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, (major, minor)) in enumerate([*entries, ("TRAILER!!!", 0, b"", (0, 0))], 1):
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, major, minor, len(name) + 1, 0)
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0"
        pad()
        out += data
        pad()
    return bytes(out)


def initramfs(workdir: Path) -> bytes:
    src, binary = workdir / "init.c", workdir / "init"
    src.write_text(INIT_C)
    r = subprocess.run(["gcc", "-static", "-Os", "-o", os.fspath(binary), os.fspath(src)], capture_output=True)
    need(r.returncode == 0, f"gcc -static failed (libc6-dev?): {r.stderr.decode()[-300:]}")
    return newc([("dev", 0o40755, b"", (0, 0)), ("proc", 0o40755, b"", (0, 0)),
                 ("dev/ttyS0", 0o20600, b"", (4, 64)), ("dev/console", 0o20600, b"", (5, 1)),
                 ("init", 0o100755, binary.read_bytes(), (0, 0))])


@pytest.fixture
def workdir(lab_dir: Path) -> Path:
    need_tool("xorriso", "gcc")
    return lab_dir


def import_into(workdir: Path, iso: Path, name: str | None = None) -> str:
    """Import as the daemon would, into the lab's boot root and state directory (before it starts)."""
    conf = write_config(workdir / "pxed.conf", workdir, extra=DEBIAN_ENTRY.format(timeout=20, default="debian"))
    svc = Service(load_config(conf), server_address=lambda: ipaddress.IPv4Address("10.77.0.1"))
    svc.recover()
    fd = os.open(iso, os.O_RDONLY)
    try:
        return svc.import_image(fd, name, ImportOptions()).id
    finally:
        os.close(fd)


def test_imported_archiso_fixture_kernel_starts(workdir: Path) -> None:
    label, files = isos.LAYOUTS["archiso"]
    layout = {k: v for k, v in files.items() if "ucode" not in k}
    layout["arch/boot/x86_64/vmlinuz-linux"] = KERNEL.read_bytes()
    layout["arch/boot/x86_64/initramfs-linux.img"] = initramfs(workdir)
    iso, _ = isos.make_iso(workdir / "arch.iso", layout, label)
    image = import_into(workdir, iso)
    assert image == "arch_202611"
    with BootLab(workdir, default=image) as bl:
        bl.start()
        vm = bl.boot("bios")
        vm.wait(r"Loading http://10\.77\.0\.1/images/arch_202611/arch/boot/x86_64/vmlinuz-linux", 180, "kernel loading")
        vm.wait("PXED-E2E-END", 240, "init ran")
        line = vm.text().split("PXED-E2E-INIT cmdline: ", 1)[1].split("\n", 1)[0]
        words = line.split()
        assert "archisobasedir=arch" in words and "ip=dhcp" in words and "checksum=y" in words, line
        assert "archiso_http_srv=http://10.77.0.1/images/arch_202611/" in words, line
        assert f"BOOTIF=01-{vm.mac.replace(':', '-')}" in words, line
        assert "initrd=http://10.77.0.1/images/arch_202611/arch/boot/x86_64/initramfs-linux.img" in words, line


def test_imported_ipxe_iso_boots_through_memdisk(workdir: Path) -> None:
    need(IPXE_ISO.exists(), "ipxe.iso is not installed (ipxe)")
    image = import_into(workdir, IPXE_ISO, "ipxe")
    with BootLab(workdir, default=image) as bl:
        bl.start()
        vm = bl.boot("bios")
        vm.wait("pxed network boot", 120, "menu shown")
        loaded = vm.wait(r"Loading http://10\.77\.0\.1/images/ipxe/ipxe\.iso\.\.\.ok", 180, "ISO loaded")
        # iPXE from the ISO prints to VGA only; it proves itself with its own DHCP exchange.
        wait_for(lambda: any(t > loaded for t, _, e in bl.pxed_events(vm) if "iPXE" in e.get("MESSAGE", "")),
                 240, what="DHCP from the iPXE inside the ISO")
