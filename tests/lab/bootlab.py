"""The whole network boot in a lab: the network's DHCP, pxed, tftp-hpa, HTTP, and a VM.

    with BootLab(workdir) as bl:
        bl.start()                     # dnsmasq (leases only), pxed (socket-activated), servers from units
        vm = bl.boot("bios")           # SeaBIOS + iPXE ROM, or "uefi" for OVMF
        vm.wait("Linux version", 120)

pxed's configuration declares one entry booting Debian's netboot kernel and initrd over
HTTP with ``console=ttyS0``; extra configuration can be appended.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.netns import Lab, Segment
from tests.lab.pxedproc import PxedProcess, start_pxed, write_config
from tests.lab.qemu import INITRD, KERNEL, Vm, start_vm
from tests.lab.servers import generate, start_unit

MENU_TITLE = "pxed network boot"
DEBIAN_ENTRY = (
    "[Menu]\nTimeout={timeout}\nDefault={default}\n"
    "[Entry debian]\nTitle=Debian 12 installer (netboot)\nKernel=debian/linux\nInitrd=debian/initrd.gz\n"
    "Append=console=ttyS0,115200 priority=critical\n"
)


@dataclass
class BootLab:
    workdir: Path
    extra_config: str = ""
    timeout: int = 20  # tenths of a second before the menu boots its default
    default: str = "debian"
    lab: Lab = field(init=False)
    seg: Segment | None = None
    pxed: PxedProcess | None = None
    vms: list[Vm] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lab = Lab(workdir=self.workdir)

    def __enter__(self) -> BootLab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for vm in self.vms:
            vm.stop()
        if self.pxed is not None:
            self.pxed.close()
        self.lab.close()

    @property
    def boot_root(self) -> Path:
        return self.workdir / "boot"

    def start(self, *, pxed_args: tuple[str, ...] = ("--no-dbus",)) -> None:
        self.workdir.chmod(0o755)
        seg = self.seg = self.lab.segment()
        for ns in (seg.sw, seg.srv, seg.dhcp, seg.cli):  # iPXE waits ~16 s for IPv6 autoconf otherwise
            ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
            ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        self.lab.dnsmasq_dhcp(seg, self.workdir)
        conf = write_config(self.workdir / "pxed.conf", self.workdir,
                            extra=DEBIAN_ENTRY.format(timeout=self.timeout, default=self.default) + self.extra_config)
        self.boot_root.chmod(0o755)
        deb = self.boot_root / "debian"
        deb.mkdir(exist_ok=True)
        for src in (KERNEL, INITRD):
            dest = deb / src.name
            if not dest.exists():
                shutil.copyfile(src, dest)
                os.chmod(dest, 0o644)
        self.pxed = start_pxed(self.lab, seg.srv, self.workdir, conf, args=pxed_args)
        units = generate(conf, self.workdir / "generated")
        start_unit(self.lab, seg.srv, units["pxed-tftp.service"], self.workdir / "tftp.log")
        start_unit(self.lab, seg.srv, units["pxed-http.service"], self.workdir / "http.log")

    def boot(self, firmware: str = "bios", *, mac: str | None = None) -> Vm:
        assert self.seg is not None, "start() first"
        mac = mac or ("52:54:00:00:b1:05" if firmware == "bios" else "52:54:00:00:ef:64")
        vm = start_vm(self.lab, self.seg.sw, self.seg.bridge, self.workdir, firmware=firmware, mac=mac,
                      name=f"{firmware}{len(self.vms)}")
        self.vms.append(vm)
        return vm
