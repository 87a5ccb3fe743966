"""Boot storm (`make bench`): many clients fetch a boot at once through the generated units.

Each simulated client is one curl in the lab's client namespace doing what a BIOS boot fetches
after its DHCP: the boot file, ldlinux.c32 and the menus over TFTP (tftp-hpa from pxed-tftp's
unit), then Debian's netboot kernel and initrd over HTTP (lighttpd from pxed-http's unit).
The reference, same lab, same run: the same clients fetching everything over TFTP.  Every
client must complete and every file arrive whole (its size, from curl, against the file on disk).
"""

from __future__ import annotations

import shutil
import subprocess
import time
from typing import Any

from tests.lab.bootlab import BootLab
from tests.lab.netns import SERVER_IP
from tests.lab.servers import world_readable_dir

CLIENT_IP = "10.77.0.60/24"
SMALL = ("pxelinux.0", "ldlinux.c32", "pxelinux.cfg/default", "pxelinux.cfg/pxe.cfg", "vesamenu.c32")
BIG = ("debian/linux", "debian/initrd.gz")


def client_argv(big_over: str) -> list[str]:
    """One client: the small files over TFTP, the kernel and initrd over `big_over` (http or tftp)."""
    argv = ["curl", "-sS", "--fail", "--tftp-blksize", "1468", "--max-time", "900",
            "-w", "%{url_effective} %{size_download}\\n"]
    urls = [f"tftp://{SERVER_IP}/{f}" for f in SMALL] + [f"{big_over}://{SERVER_IP}/{f}" for f in BIG]
    for u in urls:
        argv += ["-o", "/dev/null", u]
    return argv


def storm(bl: BootLab, clients: int, big_over: str) -> dict[str, Any]:
    assert bl.seg is not None
    sizes = {f: (bl.boot_root / f).stat().st_size for f in SMALL + BIG}
    argv = bl.seg.cli.argv(client_argv(big_over))
    start = time.perf_counter()
    procs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(clients)]
    outs = [p.communicate(timeout=1200) for p in procs]
    elapsed = time.perf_counter() - start
    failed, short = 0, 0
    for p, (out, _err) in zip(procs, outs, strict=True):
        got = dict(line.rsplit(" ", 1) for line in out.splitlines() if " " in line)
        whole = all(int(got.get(f"{scheme}://{SERVER_IP}/{f}", -1)) == sizes[f]
                    for scheme, files in (("tftp", SMALL), (big_over, BIG)) for f in files)
        failed += p.returncode != 0
        short += p.returncode == 0 and not whole
    total = clients * sum(sizes.values())
    return {"clients": clients, "big_over": big_over, "seconds": round(elapsed, 2), "failed": failed,
            "incomplete": short, "bytes": total, "mb_per_s": round(total / elapsed / 1e6, 1)}


def run(clients: int = 200) -> dict[str, Any]:
    wd = world_readable_dir("pxed-storm.")
    try:
        with BootLab(wd, capture=False) as bl:
            bl.start()
            assert bl.seg is not None
            bl.seg.cli.ip("addr", "add", CLIENT_IP, "dev", "lab0")
            for f in SMALL:
                if not (bl.boot_root / f).exists():
                    raise FileNotFoundError(f"{f} missing from the boot root (pxed installs it)")
            storm(bl, min(clients, 5), "http")  # warm the page cache and the servers
            return {"http": storm(bl, clients, "http"), "tftp": storm(bl, clients, "tftp")}
    finally:
        shutil.rmtree(wd, ignore_errors=True)


def report(res: dict[str, Any]) -> bool:
    h, t = res["http"], res["tftp"]
    print(f"== boot storm: {h['clients']} clients at once, each {h['bytes'] // h['clients'] / 1e6:.1f} MB "
          f"(boot file, modules and menus over TFTP; kernel and initrd over HTTP vs over TFTP)")
    print("| path | seconds | MB/s | failed | incomplete |\n|---|---|---|---|---|")
    for r in (h, t):
        print(f"| kernel+initrd over {r['big_over'].upper()} | {r['seconds']} | {r['mb_per_s']} | {r['failed']} | "
              f"{r['incomplete']} |")
    print(f"HTTP path takes {h['seconds'] / t['seconds']:.2f}x the time of all-TFTP")
    return not (h["failed"] or h["incomplete"] or t["failed"] or t["incomplete"])

