"""`make bench`: pxed against reference tools measured in the same run, reported as ratios.

Proxy-DHCP load and cold start (tests/bench_dhcp.py): pxed vs dnsmasq's proxy mode.

Boot storm (tests/bench_storm.py): 200 simulated clients at once through the generated tftp-hpa
and lighttpd units, kernel and initrd over HTTP vs everything over TFTP; all must complete whole.

ISO import (tests/bench_import.py): import of a 1 GiB archiso-layout ISO vs `cp` of it
(target <= 1.1x), and menu regeneration with 1,000 images in the catalog (< 100 ms).

Network boot, power-on to the kernel's first line on the serial console (TCG or KVM,
whatever the machine does), medians of interleaved runs:
  - BIOS and UEFI through pxed vs through dnsmasq's proxy mode, with the same tftp-hpa,
    lighttpd, boot tree and menus (target: ratio <= 1.05);
  - the same BIOS boot with kernel and initrd over TFTP instead of HTTP (the gain of HTTP);
  - UEFI (OVMF) through shim + GRUB vs through syslinux.efi, both from pxed (target: <= 0.7x).
A noisy machine slows both sides of a ratio alike; the absolute seconds are printed too.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import sys
from collections.abc import Callable

from tests.lab.bootlab import GRUB_CONFIG, NEXT_SERVER, BootLab
from tests.lab.netns import can_run_lab
from tests.lab.qemu import accelerator
from tests.lab.servers import world_readable_dir


def boot_seconds(proxy: str, firmware: str, *, tftp: bool = False, grub: bool = False) -> float:
    wd = world_readable_dir("pxed-bench.")
    lab = BootLab(wd, proxy=proxy, extra_config=GRUB_CONFIG, dhcp_extra=NEXT_SERVER) if grub else \
        BootLab(wd, proxy=proxy)
    try:
        with lab as bl:
            bl.start()
            if tftp:  # same menu, but syslinux fetches kernel and initrd over TFTP
                for cfg in wd.glob("boot/**/pxelinux.cfg/pxe.cfg"):
                    cfg.write_text(re.sub(r"http://10\.77\.0\.1(:\d+)?/", "", cfg.read_text()))
            vm = bl.boot(firmware)
            t = vm.wait(r"Linux version", 400, "kernel started")
            vm.stop()
            return t
    finally:
        shutil.rmtree(wd, ignore_errors=True)


def measure(runs: int, cases: dict[str, Callable[[], float]]) -> dict[str, list[float]]:
    got: dict[str, list[float]] = {k: [] for k in cases}
    for i in range(runs):
        order = list(cases) if i % 2 == 0 else list(reversed(cases))  # interleave, alternate order
        for name in order:
            t = cases[name]()
            got[name].append(t)
            print(f"  run {i + 1}/{runs} {name:<24} {t:6.1f} s", flush=True)
    return got


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--quick", action="store_true", help="BIOS only, one run (a smoke test)")
    p.add_argument("--only", choices=("boot", "dhcp", "import", "storm"),
                   help="run only the network-boot, the DHCP-load, the ISO-import or the boot-storm part")
    p.add_argument("--clients", type=int, default=200, help="boot storm clients (default 200)")
    args = p.parse_args(argv)
    ok = True
    if args.only in (None, "import"):
        from tests import bench_import

        ok = bench_import.run(runs=1 if args.quick else max(args.runs, 5), size_mib=256 if args.quick else 1024)
        print()
        if args.only == "import":
            return 0 if ok else 2
    if reason := can_run_lab():
        print(f"bench: {reason}", file=sys.stderr)
        return 1
    if args.only in (None, "storm"):
        from tests import bench_storm

        ok &= bench_storm.report(bench_storm.run(clients=20 if args.quick else args.clients))
        print()
        if args.only == "storm":
            return 0 if ok else 2
    if args.only in (None, "dhcp"):
        from tests import bench_dhcp

        res = bench_dhcp.run(rates=(1000, 5000) if args.quick else bench_dhcp.RATES,
                             duration=1.0 if args.quick else 3.0)
        bench_dhcp.report(res)
        print()
    if args.only == "dhcp":
        return 0
    runs = 1 if args.quick else args.runs
    print(f"== network boot, power-on to kernel start; QEMU {accelerator().upper()}, medians of {runs}")
    cases: dict[str, Callable[[], float]] = {
        "bios pxed": lambda: boot_seconds("pxed", "bios"),
        "bios dnsmasq": lambda: boot_seconds("dnsmasq", "bios"),
    }
    if not args.quick:
        cases |= {
            "uefi pxed": lambda: boot_seconds("pxed", "uefi"),
            "uefi dnsmasq": lambda: boot_seconds("dnsmasq", "uefi"),
            "bios pxed kernel/TFTP": lambda: boot_seconds("pxed", "bios", tftp=True),
            "uefi pxed shim+GRUB": lambda: boot_seconds("pxed", "uefi", grub=True),
        }
    got = measure(runs, cases)
    med = {k: statistics.median(v) for k, v in got.items()}
    print("\n| boot | pxed s | dnsmasq s | pxed / dnsmasq | target |\n|---|---|---|---|---|")
    for fw in ("bios", "uefi"):
        if f"{fw} pxed" in med:
            ratio = med[f"{fw} pxed"] / med[f"{fw} dnsmasq"]
            ok &= ratio <= 1.05
            print(f"| {fw.upper()} | {med[f'{fw} pxed']:.1f} | {med[f'{fw} dnsmasq']:.1f} | {ratio:.3f} | <= 1.05 |")
    if "bios pxed kernel/TFTP" in med:
        print(f"\nBIOS kernel+initrd over HTTP {med['bios pxed']:.1f} s vs TFTP {med['bios pxed kernel/TFTP']:.1f} s: "
              f"HTTP takes {med['bios pxed'] / med['bios pxed kernel/TFTP']:.2f}x the time of TFTP")
    if "uefi pxed shim+GRUB" in med:
        ratio = med["uefi pxed shim+GRUB"] / med["uefi pxed"]
        print(f"\nUEFI through shim + GRUB {med['uefi pxed shim+GRUB']:.1f} s vs syslinux.efi "
              f"{med['uefi pxed']:.1f} s: {ratio:.2f}x (target <= 0.7)")
        ok &= ratio <= 0.7
    return 0 if ok else 2


if __name__ == "__main__":
    raise SystemExit(main())
