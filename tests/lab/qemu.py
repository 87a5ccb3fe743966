"""Real PXE firmware in QEMU: SeaBIOS with iPXE's NIC ROM, or OVMF, on a lab bridge.

The guest's serial console goes to a file; :class:`Vm` waits for markers in it and
records when each first appeared (seconds since QEMU started), which is the boot
timeline.  KVM is used only when a real guest kernel actually runs under it here.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.netns import Lab, Netns, stop_process, wait_for

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.fd")
# Secure Boot: the SMM build, and variables with Microsoft's keys enrolled and Secure Boot on
OVMF_SB_CODE = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_SB_VARS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
AAVMF_CODE = Path("/usr/share/AAVMF/AAVMF_CODE.fd")
AAVMF_VARS = Path("/usr/share/AAVMF/AAVMF_VARS.fd")
ARM64_NETBOOT_DIR = Path("/usr/lib/debian-installer/images/12/arm64/text/debian-installer/arm64")
FIRMWARES = ("bios", "uefi", "uefi-sb", "arm64")
NETBOOT_DIR = Path("/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64")
KERNEL = NETBOOT_DIR / "linux"
_ANSI = re.compile(rb"\x1b(\[[0-9;?=]*[A-Za-z]|[()][0-9A-Za-z]|[=>78DEHMc])")
INITRD = NETBOOT_DIR / "initrd.gz"


@functools.cache
def accelerator() -> str:
    """'kvm' if a Linux kernel really starts under KVM within seconds, else 'tcg'."""
    if os.environ.get("PXED_LAB_ACCEL") in ("kvm", "tcg"):
        return os.environ["PXED_LAB_ACCEL"]
    if not os.access("/dev/kvm", os.R_OK | os.W_OK) or not KERNEL.exists():
        return "tcg"
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    cache = Path(f"/tmp/.pxed-lab-accel-{boot_id}")
    if cache.exists():
        return cache.read_text().strip()
    try:
        r = subprocess.run(
            ["qemu-system-x86_64", "-accel", "kvm", "-m", "256", "-display", "none", "-nodefaults", "-no-reboot",
             "-serial", "stdio", "-kernel", str(KERNEL), "-append", "console=ttyS0 panic=-1"],
            capture_output=True, text=True, timeout=8,
        )
        out = r.stdout
    except subprocess.TimeoutExpired as e:
        out = (e.stdout or b"").decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
    accel = "kvm" if "Linux version" in out else "tcg"
    cache.write_text(accel)
    return accel


@dataclass
class Vm:
    proc: subprocess.Popen[bytes]
    serial: Path
    started: float
    firmware: str
    mac: str
    seen: dict[str, float] = field(default_factory=dict)
    name: str = "vm"

    def raw(self) -> bytes:
        try:
            return self.serial.read_bytes()
        except OSError:
            return b""

    def text(self) -> str:
        """The serial console as plain text: NULs and terminal control sequences removed
        (OVMF's console positions the cursor before every character)."""
        return _ANSI.sub(b"", self.raw().replace(b"\0", b"")).decode(errors="replace")

    def running(self) -> bool:
        return self.proc.poll() is None

    def wait(self, pattern: str, timeout: float, name: str | None = None) -> float:
        """Wait until the serial console matches `pattern`; return seconds since QEMU start."""
        rx = re.compile(pattern)
        try:
            wait_for(lambda: rx.search(self.text()), timeout, what=f"{pattern!r} on serial",
                     unless=lambda: not self.running())
        except TimeoutError:
            raise TimeoutError(f"{self.firmware} VM: no {pattern!r} on serial after {timeout:.0f}s "
                               f"(qemu rc={self.proc.poll()}); serial tail:\n{self.text()[-2000:]}") from None
        return self.seen.setdefault(name or pattern, time.monotonic() - self.started)

    def wait_after(self, anchor: str, pattern: str, timeout: float, name: str | None = None) -> float:
        """Like wait(), but `pattern` must appear after the first match of `anchor`."""
        rx_a, rx = re.compile(anchor), re.compile(pattern)

        def after() -> bool:
            text = self.text()
            m = rx_a.search(text)
            return bool(m and rx.search(text, m.end()))

        try:
            wait_for(after, timeout, what=f"{pattern!r} after {anchor!r}", unless=lambda: not self.running())
        except TimeoutError:
            raise TimeoutError(f"{self.firmware} VM: no {pattern!r} after {anchor!r} within {timeout:.0f}s; "
                               f"serial tail:\n{self.text()[-2000:]}") from None
        return self.seen.setdefault(name or pattern, time.monotonic() - self.started)

    def stop(self) -> None:
        stop_process(self.proc)


def start_vm(lab: Lab, sw: Netns, bridge: str, workdir: Path, *, firmware: str = "bios",
             mac: str = "52:54:00:12:34:56", memory: int = 512, name: str = "vm",
             nic_rom: bool | None = None) -> Vm:
    """Boot a VM from the network on `bridge` (in namespace `sw`).

    ``firmware``: "bios" (SeaBIOS, iPXE NIC ROM), "uefi" (OVMF), "uefi-sb" (OVMF with Secure Boot
    enforced: the SMM build with Microsoft's keys enrolled), "arm64" (qemu-system-aarch64 with AAVMF).
    """
    if firmware not in FIRMWARES:
        raise ValueError(f"unknown firmware {firmware!r}")
    tap = lab.tap(sw, bridge)
    serial = workdir / f"{name}-serial.log"
    serial.unlink(missing_ok=True)
    if firmware == "arm64":
        return _start_arm64(lab, sw, tap, serial, workdir, mac=mac, memory=memory, name=name)
    argv = [
        "qemu-system-x86_64", "-accel", accelerator(), "-m", str(memory), "-display", "none", "-nodefaults",
        "-no-reboot", "-boot", "n", "-chardev", f"file,id=s0,path={serial}", "-serial", "chardev:s0",
        "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
    ]
    # BIOS: SeaBIOS has no PXE stack, the NIC's iPXE ROM is the PXE client.  UEFI: OVMF's own
    # network stack (EDK2 PxeBcDxe: the BINL offer, then the port-4011 request), no option ROM.
    if nic_rom is None:
        nic_rom = firmware == "bios"
    rom = "" if nic_rom else ",romfile="
    argv += ["-device", f"virtio-net-pci,netdev=n0,mac={mac}{rom}"]
    if firmware == "bios":
        # SeaBIOS mirrors its console (and so iPXE's) to the serial port.
        argv += ["-fw_cfg", "name=etc/sercon-port,string=0x3f8", "-vga", "std"]
    else:
        secure = firmware == "uefi-sb"
        code, variables = (OVMF_SB_CODE, OVMF_SB_VARS) if secure else (OVMF_CODE, OVMF_VARS)
        vars_copy = workdir / f"{name}-OVMF_VARS.fd"
        shutil.copyfile(variables, vars_copy)
        argv += ["-machine", "q35,smm=on" if secure else "q35", "-vga", "std",
                 "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}",
                 "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]
        if secure:  # only SMM code may write the variable store: the OS cannot turn Secure Boot off
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
    started = time.monotonic()
    proc = lab.spawn(sw, argv, stdout=subprocess.DEVNULL, stderr=open(workdir / f"{name}-qemu.log", "wb"))
    return Vm(proc, serial, started, firmware, mac, name=name)


def _start_arm64(lab: Lab, sw: Netns, tap: str, serial: Path, workdir: Path, *, mac: str, memory: int,
                 name: str) -> Vm:
    """An arm64 UEFI machine (TCG): QEMU's virt board with AAVMF; its PXE is EDK2's, as on x86-64."""
    vars_copy = workdir / f"{name}-AAVMF_VARS.fd"  # virt's pflash banks are 64 MiB; Debian's images are that size
    shutil.copyfile(AAVMF_VARS, vars_copy)
    argv = ["qemu-system-aarch64", "-M", "virt", "-cpu", "max", "-m", str(max(memory, 1024)), "-display", "none",
            "-nodefaults", "-no-reboot", "-chardev", f"file,id=s0,path={serial}", "-serial", "chardev:s0",
            "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={AAVMF_CODE}",
            "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}",
            "-netdev", f"tap,id=n0,ifname={tap},script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n0,mac={mac},romfile="]
    started = time.monotonic()
    proc = lab.spawn(sw, argv, stdout=subprocess.DEVNULL, stderr=open(workdir / f"{name}-qemu.log", "wb"))
    return Vm(proc, serial, started, "arm64", mac, name=name)
