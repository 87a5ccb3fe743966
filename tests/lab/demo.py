"""`make demo`: a virtual machine network-boots through pxed in a lab namespace.

Builds the lab (namespaces, bridge, tap; 10.77.0.0/24), runs the network's own DHCP
server (dnsmasq, leases only), pxed under socket activation, tftp-hpa and lighttpd from
the units pxed's generator writes, and a QEMU machine (SeaBIOS with iPXE's NIC ROM, or
OVMF with --uefi, OVMF with Secure Boot enforced through the signed shim + GRUB with
--secure-boot).  The VM's serial console is shown as it boots: pxed's menu, then the
Linux kernel starting.  Then the boot timeline, and everything is removed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import sys
import time

from tests.lab.bootlab import GRUB_CONFIG, GRUB_MILESTONES, MILESTONES, NEXT_SERVER, BootLab
from tests.lab.netns import can_run_lab, wait_for
from tests.lab.qemu import accelerator
from tests.lab.servers import world_readable_dir


def stream(vm_raw: bytes, shown: int) -> int:
    """Copy new serial bytes to the terminal (NULs dropped); returns how much was shown."""
    new = vm_raw[shown:]
    if new:
        sys.stdout.buffer.write(new.replace(b"\0", b""))
        sys.stdout.buffer.flush()
    return len(vm_raw)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="make demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--uefi", action="store_true", help="boot OVMF (UEFI) instead of SeaBIOS")
    p.add_argument("--secure-boot", action="store_true",
                   help="boot OVMF with Secure Boot enforced through the signed shim + GRUB (implies --uefi)")
    p.add_argument("--timeout", type=float, default=300, help="seconds to wait for the kernel (default 300)")
    p.add_argument("--keep", action="store_true", help="leave the work directory for inspection")
    args = p.parse_args(argv)
    reason = can_run_lab()
    if reason:
        print(f"demo: {reason}; run it as root (sudo make demo)", file=sys.stderr)
        return 1
    firmware = "uefi-sb" if args.secure_boot else "uefi" if args.uefi else "bios"
    wd = world_readable_dir("pxed-demo.")
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    print(f"== pxed demo: {firmware.upper()} client, QEMU with {accelerator().upper()}, work dir {wd}")
    try:
        lab = BootLab(wd, extra_config=GRUB_CONFIG, dhcp_extra=NEXT_SERVER) if args.secure_boot else BootLab(wd)
        with lab as bl:
            bl.start()
            assert bl.pxed is not None
            status = next((n for n in reversed(bl.pxed.notifications()) if "STATUS=" in n), "")
            print(f"== pxed is up ({status.split('STATUS=')[-1]}); dnsmasq leases addresses; "
                  "tftp-hpa and lighttpd run from the generated units")
            print("== powering on the VM; its serial console follows\n")
            vm = bl.boot(firmware)
            shown = 0
            pending = list(GRUB_MILESTONES if args.secure_boot else MILESTONES)

            def all_seen() -> bool:
                nonlocal shown
                shown = stream(vm.raw(), shown)
                with contextlib.suppress(TimeoutError):
                    while pending:
                        vm.wait(pending[0][1], 0, pending[0][0])
                        pending.pop(0)
                return not pending

            with contextlib.suppress(TimeoutError):  # what was not seen is reported below
                wait_for(all_seen, args.timeout, interval=0.2, what="the boot", unless=lambda: not vm.running())
            time.sleep(1.0)
            stream(vm.raw(), shown)
            vm.stop()
            print("\n\n\x1b[0m== boot timeline (seconds since power-on)")
            for t, what in bl.timeline(vm):
                print(f"   {t:6.1f}  {what}")
            if pending:
                print(f"== did not see: {', '.join(n for n, _ in pending)} within {args.timeout:.0f}s", file=sys.stderr)
                print(bl.summary(), file=sys.stderr)
                return 1
            print("== the kernel started: pxed network-booted the VM. Cleaning up.")
            return 0
    except KeyboardInterrupt:
        print("\n== interrupted; cleaning up", file=sys.stderr)
        return 130
    finally:
        if args.keep:
            print(f"== kept {wd}")
        else:
            shutil.rmtree(wd, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
