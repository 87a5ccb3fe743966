"""`make soak`: boot the same VM through pxed again and again; every boot must reach Linux.

    make soak                       # 100 BIOS + 100 UEFI + 20 Secure Boot boots
    make soak SOAK_ARGS="--runs 20 --firmware bios"

Each boot gets a fresh lab (tests/lab/bootlab.py: the network's DHCP server, pxed under socket
activation, tftp-hpa and lighttpd from the generated units) and a packet capture on the lab
bridge (dumpcap), and must show ``Linux version`` on the serial console.  A failed boot prints
the lab's summary (processes, serial tail, pxed's journal, the servers' logs, a summary of the
capture: TCP resets, retransmissions, the last DHCP/TFTP/HTTP exchanges) and its timeline, keeps
the capture and serial log, and counts; nothing is retried.  Ends with one line per firmware,
"<firmware>: <failed>/<runs> failed", and exits 1 when any boot failed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from tests.lab.bootlab import GRUB_CONFIG, NEXT_SERVER, BootLab
from tests.lab.netns import can_run_lab
from tests.lab.qemu import accelerator
from tests.lab.servers import world_readable_dir

DEFAULT_RUNS = {"bios": 100, "uefi": 100, "uefi-sb": 20}


def one_boot(firmware: str, out: Path, n: int, timeout: float) -> dict[str, object]:
    wd = world_readable_dir("pxed-soak.")
    grub = firmware == "uefi-sb"
    lab = BootLab(wd, extra_config=GRUB_CONFIG, dhcp_extra=NEXT_SERVER, capture_snaplen=0) if grub else \
        BootLab(wd, capture_snaplen=0)  # whole frames: a failure's capture is kept
    result: dict[str, object] = {"firmware": firmware, "run": n}
    try:
        with lab as bl:
            bl.start()
            vm = bl.boot(firmware)
            try:
                result["seconds"] = round(vm.wait(r"Linux version", timeout, "kernel started"), 1)
                result["ok"] = True
            except TimeoutError as e:
                result["ok"] = False
                result["error"] = str(e).splitlines()[0]
                keep = out / f"{firmware}-{n}"
                keep.mkdir(parents=True, exist_ok=True)
                time.sleep(1)  # the capture's last frames
                for f in (bl.pcap, vm.serial):
                    if f is not None and f.exists():
                        shutil.copy(f, keep / f.name)
                print(f"\n==== {firmware} boot {n} FAILED: {result['error']}", file=sys.stderr)
                print(bl.summary(), file=sys.stderr)
                print("---- timeline (s since power-on)", file=sys.stderr)
                for t, what in bl.timeline(vm):
                    print(f"  {t:6.1f}  {what}", file=sys.stderr)
                print(f"---- kept in {keep}", file=sys.stderr)
            vm.stop()
    finally:
        shutil.rmtree(wd, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", type=int, help="boots per firmware (default: 100 BIOS, 100 UEFI, 20 Secure Boot)")
    p.add_argument("--firmware", action="append", choices=tuple(DEFAULT_RUNS),
                   help="only these (repeatable; default: all three)")
    p.add_argument("--timeout", type=float, default=300, help="seconds from power-on to Linux (default 300)")
    p.add_argument("--out", type=Path, default=Path("/tmp/pxed-soak"), help="where failed boots are kept")
    args = p.parse_args(argv)
    if reason := can_run_lab():
        print(f"soak: {reason}", file=sys.stderr)
        return 1
    firmwares = args.firmware or list(DEFAULT_RUNS)
    args.out.mkdir(parents=True, exist_ok=True)
    results_file = args.out / "results.jsonl"
    print(f"== soak: QEMU {accelerator().upper()}; failed boots are kept in {args.out}")
    failed: dict[str, int] = {}
    runs: dict[str, int] = {}
    for fw in firmwares:
        runs[fw] = args.runs or DEFAULT_RUNS[fw]
        failed[fw] = 0
        for n in range(1, runs[fw] + 1):
            r = one_boot(fw, args.out, n, args.timeout)
            with open(results_file, "a") as f:
                f.write(json.dumps(r) + "\n")
            failed[fw] += not r["ok"]
            print(f"  {fw} {n}/{runs[fw]}: {'ok ' + str(r['seconds']) + ' s' if r['ok'] else 'FAILED'}", flush=True)
    print()
    for fw in firmwares:
        print(f"{fw}: {failed[fw]}/{runs[fw]} failed")
    return 1 if any(failed.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
