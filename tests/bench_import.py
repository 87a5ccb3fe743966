"""ISO import against `cp` of the same ISO, in the same run; menu regeneration with 1,000 images.

    python -m tests.bench --only import [--runs 5] [--size-mib 1024]

The ISO has the archiso layout (random airootfs.sfs, initramfs and kernel, as a real Arch
ISO's sizes) and is built once with xorriso.  Each round copies it with `cp` and imports
it with pxed, in alternating order, warm cache, on the same file system; both sides
include the flush to disk (pxed fsyncs what it writes, so `cp` is followed by `sync -f`).
pxed also sha256s every file it extracts, in a second thread.  Targets: import median
<= 1.1 x cp median; menus for 1,000 catalog images rendered and written in < 100 ms.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from pxed.images.catalog import Catalog, Detection, ImageRecord, ImageState
from pxed.service import ImportOptions, Service
from tests.images import isos
from tests.images.conftest import make_env

MIB = 1 << 20


def build_iso(workdir: Path, size_mib: int) -> Path:
    layout: dict[str, bytes | int] = {
        "arch/boot/x86_64/vmlinuz-linux": 13 * MIB, "arch/boot/x86_64/initramfs-linux.img": 90 * MIB,
        "arch/x86_64/airootfs.sfs": max(1, size_mib - 104) * MIB, "arch/x86_64/airootfs.sha512": 200,
        "arch/version": 11}
    return isos.make_iso(workdir / "arch.iso", layout, "ARCH_202611", remember=False)[0]


def time_cp(iso: Path, dest: Path) -> float:
    t = time.perf_counter()
    subprocess.run(["cp", os.fspath(iso), os.fspath(dest)], check=True)
    subprocess.run(["sync", "-f", os.fspath(dest)], check=True)
    took = time.perf_counter() - t
    dest.unlink()
    return took


def time_import(iso: Path, service: Service) -> float:
    fd = os.open(iso, os.O_RDONLY)
    try:
        t = time.perf_counter()
        service.import_image(fd, "bench", ImportOptions())
        took = time.perf_counter() - t
    finally:
        os.close(fd)
    service.remove_image("bench")
    return took


def menu_time(workdir: Path, images: int = 1000, runs: int = 7) -> float:
    env = make_env(workdir / "menus")
    det = Detection(profile="archiso", version="2026.11.01", label="ARCH_202611",
                    kernel="arch/boot/x86_64/vmlinuz-linux",
                    initrds=("arch/boot/x86_64/initramfs-linux.img",),
                    cmdline="archisobasedir=arch archiso_http_srv=http://{server}/{base}/ ip=dhcp", sysappend=2)
    base = ImageRecord(id="x", title="x", state=ImageState.READY, detection=det)
    Catalog(env.state).save([replace(base, id=f"img{i:04d}", title=f"Arch Linux {i}") for i in range(images)])
    svc = Service(env.service.config, server_address=lambda: ipaddress.IPv4Address("10.77.0.1"))
    svc.recover()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        svc.render_menus()
        times.append(time.perf_counter() - t)
    assert (env.boot / "pxelinux.cfg/pxe.cfg").read_text().count("\nLABEL img") == images
    return statistics.median(times)


def run(runs: int = 5, size_mib: int = 1024) -> bool:
    workdir = Path(tempfile.mkdtemp(prefix="pxed-bench-import.", dir="/var/tmp"))
    try:
        print(f"== ISO import vs cp: {size_mib} MiB archiso-layout ISO, medians of {runs} (building it...)", flush=True)
        iso = build_iso(workdir, size_mib)
        env = make_env(workdir / "pxed")
        cp_dest = workdir / "pxed" / "copy.iso"  # same file system as the boot root
        time_cp(iso, cp_dest)  # warm the page cache for both
        time_import(iso, env.service)
        got: dict[str, list[float]] = {"cp": [], "import": []}
        for i in range(runs):
            order = ("cp", "import") if i % 2 == 0 else ("import", "cp")
            for what in order:
                t = time_cp(iso, cp_dest) if what == "cp" else time_import(iso, env.service)
                got[what].append(t)
                print(f"  run {i + 1}/{runs} {what:<7} {t:6.2f} s", flush=True)
        cp, imp = statistics.median(got["cp"]), statistics.median(got["import"])
        ratio = imp / cp
        menus = menu_time(workdir)
        size = iso.stat().st_size
        print("\n| measure | pxed | reference | ratio | target |\n|---|---|---|---|---|")
        print(f"| import {size / MIB:.0f} MiB ISO | {imp:.2f} s ({size / imp / MIB:.0f} MiB/s) | cp {cp:.2f} s "
              f"| {ratio:.2f}x | <= 1.1x |")
        print(f"| menus, 1000 images | {menus * 1000:.1f} ms | | | < 100 ms |")
        return ratio <= 1.1 and menus < 0.1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
