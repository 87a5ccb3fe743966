"""The one lifecycle of a boot lab, shared by BootLab (pxed as a process) and SystemLab (pxed under systemd).

    with SomeLab(workdir) as lab:   # a subclass of LabNetwork
        lab.start()                 # prepare(), network(), start_servers(): every lab is built so
        vm = lab.boot("bios")       # a QEMU client on the lab bridge
        vm.wait("Linux version", 240)

:meth:`LabNetwork.start` builds every lab in the same order: what the boot server needs before
there is a network (:meth:`~LabNetwork.prepare`: files, a system tree), the network
(:meth:`~LabNetwork.network`: namespaces, the bridge, the network's own DHCP server and router
advertisements, all on 10.77.0.0/24 in namespaces the lab made), then the boot server on
``seg.srv`` (:meth:`~LabNetwork.start_servers`).

Leaving the ``with`` block on an exception first writes :meth:`~LabNetwork.summary` to stderr
(the processes and how they ended, the VMs' milestones and serial tails, the boot server's
journals, the tails of the logs in the work directory; pytest shows it with the failure, and
tests/conftest.py adds it to the report of a failed test that used a lab fixture).  Closing,
whatever failed on the way, stops the VMs, then the subclass's own processes
(:meth:`~LabNetwork.stop_servers`), then every process the lab spawned, by its PID, and
deletes the namespaces.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from tests.lab.netns import Lab, Segment, wait_for
from tests.lab.qemu import Vm, start_vm

TAIL = 1500  # characters of each log in a summary


def tail(text: str, n: int = TAIL) -> str:
    text = text.rstrip()
    return text if len(text) <= n else "..." + text[-n:]


def _quiet(exc_type: type[BaseException] | None) -> bool:
    """No summary for these: nothing failed (an interrupt, a closed generator, a test that skips)."""
    return exc_type is None or issubclass(exc_type, KeyboardInterrupt | GeneratorExit | SystemExit) or \
        (exc_type.__module__.startswith("_pytest") and exc_type.__name__ == "Skipped")


@dataclass
class LabNetwork:
    workdir: Path
    lab: Lab = field(init=False)
    seg: Segment | None = None
    vms: list[Vm] = field(default_factory=list)
    # extra dnsmasq options for the network's own DHCP server (e.g. a next-server, the documented
    # fallback for boot loaders that ignore proxy DHCP)
    dhcp_extra: tuple[str, ...] = ()
    # dumpcap on the lab bridge from before the first packet: a failure's summary says what the wire saw
    capture: bool = True
    capture_snaplen: int = 600  # bytes of each frame (headers, DHCP, request lines); 0: whole frames
    pcap: Path | None = None
    vm_prefix: ClassVar[str] = ""  # VM names (and their serial logs): <prefix><firmware><n>
    vm_macs: ClassVar[dict[str, str]] = {"bios": "52:54:00:00:b1:05", "uefi": "52:54:00:00:ef:64",
                                         "uefi-sb": "52:54:00:00:5b:64", "arm64": "52:54:00:00:aa:64"}

    def __post_init__(self) -> None:
        self.lab = Lab(workdir=self.workdir)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        try:
            if not _quiet(exc_type):
                sys.stderr.write(self.summary())
                sys.stderr.flush()
        finally:
            self.close()

    # ------------------------------------------------------------------ building
    def start(self) -> None:
        """The whole lab, in the one order; on an exception :meth:`close` (the ``with``) undoes it."""
        self.workdir.chmod(0o755)  # the servers run as nobody and must reach their files
        self.prepare()
        self.network()
        self.start_servers()

    def prepare(self) -> None:
        """What the boot server needs before the network exists (configuration, files, a system tree)."""

    def network(self) -> Segment:
        """The lab segment with the network's own DHCP server (leases only) and router advertisements."""
        seg = self.seg = self.lab.segment()
        if self.capture and shutil.which("dumpcap"):
            self.start_capture(seg)
        self.lab.dnsmasq_dhcp(seg, self.workdir, extra=self.dhcp_extra)
        router_advertisements(self.lab, seg, self.workdir)
        return seg

    def start_servers(self) -> None:
        """The boot server on ``seg.srv``: pxed, TFTP and HTTP."""
        raise NotImplementedError

    def start_capture(self, seg: Segment) -> Path:
        """dumpcap on the bridge, in the switch namespace (it sees every port); running once it writes."""
        pcap = self.pcap = self.workdir / "lab.pcapng"
        argv = ["dumpcap", "-q", "-i", seg.bridge, "-s", str(self.capture_snaplen or 262144), "-w", str(pcap)]
        self.lab.spawn(seg.sw, argv, stdout=subprocess.DEVNULL, stderr=open(self.workdir / "dumpcap.log", "wb"))
        wait_for(lambda: pcap.exists() and pcap.stat().st_size > 0, 10, what="dumpcap running")
        return pcap

    def boot(self, firmware: str = "bios", *, mac: str | None = None, nic_rom: bool | None = None,
             name: str | None = None) -> Vm:
        assert self.seg is not None, "start() first"
        mac = mac or self.vm_macs[firmware]
        vm = start_vm(self.lab, self.seg.sw, self.seg.bridge, self.workdir, firmware=firmware, mac=mac,
                      name=name or f"{self.vm_prefix}{firmware}{len(self.vms)}", nic_rom=nic_rom)
        self.vms.append(vm)
        return vm

    # ------------------------------------------------------------------ closing
    def stop_servers(self) -> None:
        """The subclass's own processes, stopped after the VMs and before the namespaces."""

    def close(self) -> None:
        try:
            for vm in self.vms:
                vm.stop()
            self.stop_servers()
        finally:
            self.lab.close()

    # ------------------------------------------------------------------ when something failed
    def journals(self) -> dict[str, str]:
        """The boot server's own logs, title -> text (the subclass knows where they are)."""
        return {}

    def summary(self) -> str:
        """What the lab saw, for a failure's report: taken before :meth:`close` stops anything."""
        out = [f"==== {type(self).__name__} lab {self.lab.prefix}-*, work directory {self.workdir}"]
        out.append("---- processes (stopped by PID when the lab closes)")
        for p in self.lab.procs:
            rc = p.poll()
            argv = " ".join(map(str, p.args)) if isinstance(p.args, list | tuple) else str(p.args)
            out.append(f"  {p.pid:>7} {'running' if rc is None else f'exited {rc}':<10} {argv[:200]}")
        for vm in self.vms:
            seen = ", ".join(f"{what} at {t:.1f}s" for what, t in vm.seen.items()) or "no milestone"
            state = "running" if vm.running() else f"exited {vm.proc.returncode}"
            out.append(f"---- VM {vm.name} ({vm.firmware}, {vm.mac}, qemu {state}): {seen}; serial tail")
            out.append(tail(vm.text(), 2000))
        for title, text in self._journals().items():
            out.append(f"---- {title}")
            out.append(tail(text, 4000))
        if self.pcap is not None:
            out.append(f"---- capture of the lab bridge ({self.pcap})")
            out.append(capture_summary(self.pcap))
        serials = {vm.serial for vm in self.vms}
        for log in sorted([*self.workdir.glob("*.log"), *self.workdir.glob("*.stderr")]):
            if log in serials:
                continue
            try:
                text = log.read_text(errors="replace")
            except OSError:
                continue
            if text.strip():
                out.append(f"---- {log.name}")
                out.append(tail(text))
        return "\n".join(out) + "\n==== end of the lab summary\n"

    def _journals(self) -> dict[str, str]:
        try:
            return self.journals()
        except Exception as e:  # a summary must not hide the failure it reports
            return {"journals": f"(could not be read: {e!r})"}


def capture_summary(pcap: Path) -> str:
    """What the wire saw (tshark): TCP resets, retransmissions, zero windows, TFTP errors, and the
    last requests (DHCP, TFTP, HTTP) with who sent them."""
    if shutil.which("tshark") is None or not pcap.exists():
        return "(no summary: tshark or the capture is missing)"

    def fields(flt: str) -> list[str]:
        r = subprocess.run(["tshark", "-r", str(pcap), "-Y", flt, "-T", "fields", "-e", "frame.time_relative",
                            "-e", "ip.src", "-e", "ip.dst", "-e", "_ws.col.Info"], capture_output=True, text=True)
        return r.stdout.splitlines()

    counts = {what: len(fields(flt)) for what, flt in (
        ("TCP resets", "tcp.flags.reset == 1"), ("retransmissions", "tcp.analysis.retransmission"),
        ("zero windows", "tcp.analysis.zero_window"), ("TFTP errors", "tftp.opcode == 5"))}
    last = fields("dhcp or tftp.opcode == 1 or tftp.opcode == 5 or http.request or http.response or "
                  "tcp.flags.reset == 1")[-15:]
    return ", ".join(f"{k} {v}" for k, v in counts.items()) + "\nlast exchanges:\n  " + "\n  ".join(last)


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
