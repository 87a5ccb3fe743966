"""The one lifecycle of a boot lab, shared by BootLab (pxed as a process) and SystemLab (pxed under systemd).

    with SomeLab(workdir) as lab:   # a subclass of LabNetwork
        lab.network()               # namespaces, bridge, the network's DHCP server (dnsmasq) and RAs
        ...                         # the subclass starts its boot server on lab.seg.srv
        vm = lab.boot("bios")       # a QEMU client on the lab bridge

Closing stops the VMs, then the subclass's own processes (:meth:`stop_servers`), then
the namespaces and every process the lab spawned (by PID), whatever failed on the way.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.netns import Lab, Segment
from tests.lab.qemu import Vm, start_vm


@dataclass
class LabNetwork:
    workdir: Path
    lab: Lab = field(init=False)
    seg: Segment | None = None
    vms: list[Vm] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.lab = Lab(workdir=self.workdir)

    def __enter__(self) -> LabNetwork:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop_servers(self) -> None:
        """The subclass's own processes, stopped after the VMs and before the namespaces."""

    def close(self) -> None:
        try:
            for vm in self.vms:
                vm.stop()
            self.stop_servers()
        finally:
            self.lab.close()

    def network(self) -> Segment:
        """The lab segment with the network's own DHCP server (leases only) and router advertisements."""
        self.workdir.chmod(0o755)
        seg = self.seg = self.lab.segment()
        self.lab.dnsmasq_dhcp(seg, self.workdir)
        router_advertisements(self.lab, seg, self.workdir)
        return seg

    def boot(self, firmware: str = "bios", *, mac: str | None = None, nic_rom: bool | None = None,
             name: str | None = None) -> Vm:
        assert self.seg is not None, "start() first"
        mac = mac or ("52:54:00:00:b1:05" if firmware == "bios" else "52:54:00:00:ef:64")
        vm = start_vm(self.lab, self.seg.sw, self.seg.bridge, self.workdir, firmware=firmware, mac=mac,
                      name=name or f"{firmware}{len(self.vms)}", nic_rom=nic_rom)
        self.vms.append(vm)
        return vm


def router_advertisements(lab: Lab, seg: Segment, workdir: Path) -> None:
    """iPXE waits ~16 s for IPv6 autoconfiguration on a link without router advertisements.

    radvd in the DHCP server's namespace advertises a ULA prefix and no default route,
    as a real network's router would; without it the lab measures that wait, not pxed.
    """
    conf = workdir / "radvd.conf"
    conf.write_text("interface lab0 {\n AdvSendAdvert on;\n MinRtrAdvInterval 3;\n MaxRtrAdvInterval 4;\n"
                    " AdvDefaultLifetime 0;\n prefix fd77:77::/64 { };\n};\n")
    seg.dhcp.sysctl("net.ipv6.conf.all.forwarding", "1")
    lab.spawn(seg.dhcp, ["radvd", "--nodaemon", "-C", str(conf), "-p", str(workdir / "radvd.pid"), "-m", "stderr"],
              stdout=subprocess.DEVNULL, stderr=open(workdir / "radvd.log", "wb"))
