"""The whole network boot in a lab: the network's DHCP, pxed, tftp-hpa, HTTP, and a VM.

    with BootLab(workdir) as bl:
        bl.start()                     # dnsmasq (leases only), pxed (socket-activated), servers from units
        vm = bl.boot("bios")           # SeaBIOS + iPXE ROM, or "uefi" for OVMF
        vm.wait("Linux version", 120)

pxed's configuration declares one entry booting Debian's netboot kernel and initrd over
HTTP with ``console=ttyS0``; extra configuration can be appended.  The lifecycle (building
order, closing, the summary on failure) is LabNetwork's (tests/lab/network.py).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from tests.lab.network import LabNetwork
from tests.lab.pxedproc import DatagramSink, PxedProcess, start_pxed, write_config
from tests.lab.qemu import INITRD, KERNEL, Vm
from tests.lab.servers import generate, start_unit

MENU_TITLE = "pxed network boot"
# Serial milestones of a boot, in order: (name, pattern).
BOOT_FILE_LOADED = r"PXELINUX \d|Getting cached packet"
MILESTONES = (("menu shown", MENU_TITLE),
              ("kernel loading over HTTP", r"Loading http://\S+/debian/linux"), ("kernel started", r"Linux version"))
# UEFI through the distribution's signed shim + GRUB, and the network DHCP server's next-server
# naming pxed: Debian 12's GRUB ignores proxy DHCP (docs/uefi-secure-boot.md).
GRUB_CONFIG = "[Boot]\nEFI64Loader=grub\nARM64Loader=grub\n"
NEXT_SERVER = ("--dhcp-boot=,pxed,10.77.0.1",)  # siaddr = pxed, no file name: shim still asks pxed
GRUB_MILESTONES = (("shim loaded GRUB", r"Fetching Netboot Image grub\w+\.efi"), ("menu shown", MENU_TITLE),
                   ("kernel loading over TFTP", r"Loading Debian 12 installer"), ("kernel started", r"Linux version"))
DEBIAN_ENTRY = (
    "[Menu]\nTimeout={timeout}\nDefault={default}\n"
    "[Entry debian]\nTitle=Debian 12 installer (netboot)\nKernel=debian/linux\nInitrd=debian/initrd.gz\n"
    "Append=console=ttyS0,115200 priority=critical\n"
)


@dataclass
class BootLab(LabNetwork):
    proxy: str = "pxed"  # or "dnsmasq": dnsmasq's proxy mode as the reference boot server
    extra_config: str = ""
    timeout: int = 20  # tenths of a second before the menu boots its default
    default: str = "debian"
    pxed_args: tuple[str, ...] = ()  # appended to pxed's command line
    pxed: PxedProcess | None = None
    tftp_log: DatagramSink | None = None

    @property
    def boot_root(self) -> Path:
        return self.workdir / "boot"

    @property
    def config_path(self) -> Path:
        return self.workdir / "pxed.conf"

    def prepare(self) -> None:
        """pxed.conf (paths in the work directory) and Debian's netboot kernel and initrd in the boot root."""
        write_config(self.config_path, self.workdir,
                     extra=DEBIAN_ENTRY.format(timeout=self.timeout, default=self.default) + self.extra_config)
        self.boot_root.chmod(0o755)
        deb = self.boot_root / "debian"
        deb.mkdir(exist_ok=True)
        for src in (KERNEL, INITRD):
            dest = deb / src.name
            if not dest.exists():
                shutil.copyfile(src, dest)
                os.chmod(dest, 0o644)

    def start_servers(self) -> None:
        """pxed under socket activation (or the dnsmasq reference), tftp-hpa and lighttpd from the units."""
        assert self.seg is not None
        conf = self.config_path
        if self.proxy == "pxed":
            self.pxed = start_pxed(self.lab, self.seg.srv, self.workdir, conf, args=self.pxed_args)
        else:
            self.dnsmasq_proxy(conf)
        units = generate(conf, self.workdir / "generated")
        self.tftp_log = DatagramSink(self.workdir / "tftp-syslog.sock")
        start_unit(self.lab, self.seg.srv, units["pxed-tftp.service"], self.workdir / "tftp.log",
                   syslog=self.tftp_log.path)
        start_unit(self.lab, self.seg.srv, units["pxed-http.service"], self.workdir / "http.log")

    def stop_servers(self) -> None:
        if self.pxed is not None:
            self.pxed.close()
        if self.tftp_log is not None:
            self.tftp_log.close()

    def journals(self) -> dict[str, str]:
        """pxed's journal (what the fake journald received) and tftp-hpa's syslog lines."""
        out = {}
        if self.pxed is not None:
            lines = []
            for e in self.pxed.journal_entries()[-80:]:
                fields = " ".join(f"{k}={e[k]}" for k in ("PXE_STAGE", "CLIENT_MAC", "BOOT_FILE") if e.get(k))
                lines.append(f"<{e.get('PRIORITY', '?')}> {e.get('MESSAGE', '')}" + (f"  [{fields}]" if fields else ""))
            out["pxed's journal (last 80 entries)"] = "\n".join(lines) or "(nothing logged)"
            out["pxed's sd_notify messages"] = "\n".join(n.replace("\n", " ") for n in self.pxed.notifications()[-20:])
        if self.tftp_log is not None:
            lines = [m.decode(errors="replace").rstrip() for m in self.tftp_log.messages[-40:]]
            out["tftp-hpa's syslog"] = "\n".join(lines)
        return out

    def pxed_events(self, vm: Vm) -> list[tuple[float, str, dict[str, str]]]:
        """pxed's journal entries about this VM: (seconds since the VM started, stage, entry)."""
        assert self.pxed is not None
        return [(t - vm.started, e.get("PXE_STAGE", ""), e) for t, e in self.pxed.timed_entries()
                if e.get("CLIENT_MAC") == vm.mac and e.get("PXE_STAGE")]

    def tftp_events(self, vm: Vm) -> list[tuple[float, str]]:
        """Files tftp-hpa served (its --verbose syslog lines): (seconds since the VM started, file)."""
        assert self.tftp_log is not None
        out = []
        for t, m in zip(self.tftp_log.times, self.tftp_log.messages, strict=False):
            line = m.decode(errors="replace")
            if "RRQ from" in line and t >= vm.started:
                out.append((t - vm.started, line.rsplit("filename ", 1)[-1].strip()))
        return out

    def timeline(self, vm: Vm) -> list[tuple[float, str]]:
        """Boot milestones in order: pxed's answers (journal) and what the serial console showed."""
        events = [(t, f"pxed: {stage} sent, boot file {e.get('BOOT_FILE')}") for t, stage, e in self.pxed_events(vm)]
        tftp = self.tftp_events(vm)
        if tftp:
            events.append((tftp[0][0], f"tftp: {tftp[0][1]} requested"))
        events += [(t, f"serial: {name}") for name, t in vm.seen.items()]
        return sorted(events)

    def dnsmasq_proxy(self, conf: Path) -> None:
        """The reference: the same boot tree and menus (rendered by pxed's own code, no daemon),
        served by dnsmasq in proxy-DHCP mode with one PXE service per architecture."""
        import ipaddress

        from pxed.config import load_config
        from pxed.daemon import build_service

        assert self.seg is not None
        config = load_config(conf)
        service = build_service(config, conf, server_address=lambda: ipaddress.IPv4Address("10.77.0.1"))
        service.install_boot_files()
        service.render_menus()
        self.lab.spawn(self.seg.srv, [
            "dnsmasq", "--keep-in-foreground", "--no-daemon", "--port=0", "--no-resolv", "--no-hosts",
            "--bind-interfaces", "--interface=lab0", "--except-interface=lo", "--no-ping",
            "--dhcp-range=10.77.0.0,proxy,255.255.255.0", "--log-dhcp",
            "--pxe-service=x86PC,pxed,pxelinux", "--pxe-service=X86-64_EFI,pxed,efi64/syslinux.efi",
            "--pxe-service=BC_EFI,pxed,efi64/syslinux.efi", f"--pid-file={self.workdir / 'dnsmasq-proxy.pid'}",
        ], stdout=subprocess.DEVNULL, stderr=open(self.workdir / "dnsmasq-proxy.log", "wb"))
