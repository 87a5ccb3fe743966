"""Proxy-DHCP load: pxed vs dnsmasq's proxy mode in the same run, and pxed's cold start.

A transaction is what a UEFI client does: DISCOVER (broadcast) → proxy OFFER, then
REQUEST to port 4011 → ACK.  The load generator runs in the client namespace with a
distinct MAC per transaction, at a fixed rate for a few seconds; it reports how many
transactions completed and the p50/p99 latency of each step.  All traffic stays in the
lab namespaces (10.77.0.0/24).
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import select
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from pxed.boottree import populate
from pxed.dhcp.options import MessageType
from pxed.dhcp.packet import parse
from tests.lab.netns import Lab, Segment, wait_for
from tests.lab.pxeclient import build
from tests.lab.pxedproc import REPO, start_pxed, write_config

CLIENT_IP = "10.77.0.50"
SERVER = "10.77.0.1"


# ----------------------------------------------------------------------------- generator (runs in the cli ns)
def generate(rate: float, duration: float, wait: float = 1.0) -> dict[str, Any]:
    bc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    bc.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    bc.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    bc.setsockopt(socket.SOL_SOCKET, 25, b"lab0")
    bc.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    bc.bind(("0.0.0.0", 68))
    uc = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    uc.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    uc.bind((CLIENT_IP, 0))
    for s in (bc, uc):
        s.setblocking(False)
    n = int(rate * duration)
    sent_d: dict[int, float] = {}
    sent_r: dict[int, float] = {}
    offer_lat: list[float] = []
    ack_lat: list[float] = []
    start = time.perf_counter()
    i = 0
    ciaddr = ipaddress.IPv4Address(CLIENT_IP)

    def drain() -> None:
        for s in (bc, uc):
            while True:
                try:
                    data = s.recv(2048)
                except BlockingIOError:
                    break
                now = time.perf_counter()
                try:
                    p = parse(data)
                except Exception:
                    continue
                if p.message_type is MessageType.OFFER and p.xid in sent_d and int(p.yiaddr) == 0:
                    offer_lat.append(now - sent_d.pop(p.xid))
                    sent_r[p.xid] = time.perf_counter()
                    uc.sendto(build("efi64", p.chaddr, p.xid, mtype=MessageType.REQUEST, ciaddr=ciaddr),
                              (SERVER, 4011))
                elif p.message_type is MessageType.ACK and p.xid in sent_r:
                    ack_lat.append(now - sent_r.pop(p.xid))

    while i < n:
        due = start + i / rate
        now = time.perf_counter()
        if now >= due:
            xid = 0x10000000 + i
            mac = (0x525400000000 + i).to_bytes(6, "big")
            sent_d[xid] = now
            bc.sendto(build("efi64", mac, xid), ("255.255.255.255", 67))
            i += 1
        else:
            select.select([bc, uc], [], [], min(due - now, 0.001))
        drain()
    end = time.perf_counter() + wait
    while time.perf_counter() < end and (sent_d or sent_r):
        select.select([bc, uc], [], [], 0.01)
        drain()

    def pct(xs: list[float], q: float) -> float | None:
        return round(sorted(xs)[min(len(xs) - 1, int(q * len(xs)))] * 1000, 3) if xs else None

    return {"rate": rate, "sent": n, "offers": len(offer_lat), "acks": len(ack_lat),
            "offer_p50_ms": pct(offer_lat, 0.5), "offer_p99_ms": pct(offer_lat, 0.99),
            "ack_p50_ms": pct(ack_lat, 0.5), "ack_p99_ms": pct(ack_lat, 0.99),
            "elapsed": round(time.perf_counter() - start, 2)}


def first_offer_ms(timeout: float = 5.0) -> float | None:
    """Send one DISCOVER; milliseconds until the first proxy OFFER arrives (None: no offer)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    s.setsockopt(socket.SOL_SOCKET, 25, b"lab0")
    s.bind(("0.0.0.0", 68))
    t = time.perf_counter()
    s.sendto(build("bios", bytes.fromhex("525400c0ffee"), 7), ("255.255.255.255", 67))
    while (left := timeout - (time.perf_counter() - t)) > 0:
        if not select.select([s], [], [], left)[0]:
            break
        p = parse(s.recv(2048))
        if p.xid == 7 and p.message_type is MessageType.OFFER:
            return (time.perf_counter() - t) * 1000
    return None


# ----------------------------------------------------------------------------- orchestration
def run_load(seg: Segment, rate: float, duration: float) -> dict[str, Any]:
    r = seg.cli.run([sys.executable, "-m", "tests.bench_dhcp", "--generate", str(rate), "--duration", str(duration)],
                    cwd=REPO, timeout=duration + 60)
    return json.loads(r.stdout)


def dnsmasq_proxy(lab: Lab, seg: Segment, wd: Path) -> None:
    lab.spawn(seg.srv, [
        "dnsmasq", "--keep-in-foreground", "--no-daemon", "--port=0", "--no-resolv", "--no-hosts",
        "--bind-interfaces", "--interface=lab0", "--except-interface=lo", "--dhcp-range=10.77.0.0,proxy,255.255.255.0",
        "--pxe-service=x86PC,pxed,lpxelinux", "--pxe-service=X86-64_EFI,pxed,efi64/syslinux.efi",
        f"--pid-file={wd / 'dnsmasq-proxy.pid'}", "--log-facility=/dev/null",
    ], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: ":67 " in seg.srv.run(["ss", "-lun"]).stdout, 10, what="dnsmasq on port 67")


def server_lab(kind: str, wd: Path) -> tuple[Lab, Segment]:
    lab = Lab(workdir=wd)
    seg = lab.segment()
    seg.cli.ip("addr", "add", f"{CLIENT_IP}/24", "dev", "lab0")
    if kind == "pxed":
        conf = write_config(wd / "pxed.conf", wd)
        start_pxed(lab, seg.srv, wd, conf, debug=False)
    else:
        dnsmasq_proxy(lab, seg, wd)
    return lab, seg


def cold_start(wd: Path, runs: int = 3) -> list[float]:
    """First DISCOVER to a socket-activated pxed that is not running yet → its OFFER (ms)."""
    out = []
    for k in range(runs):
        d = wd / f"cold{k}"
        d.mkdir()
        with Lab(workdir=d) as lab:
            seg = lab.segment()
            conf = write_config(d / "pxed.conf", d)
            populate(d / "boot")  # an installed pxed has its boot tree from earlier runs
            start_pxed(lab, seg.srv, d, conf, debug=False, wait_ready=False)
            wait_for(lambda srv=seg.srv: ":67 " in srv.run(["ss", "-lun"]).stdout, 10,  # type: ignore[misc]
                     what="activator listening")
            r = seg.cli.run([sys.executable, "-m", "tests.bench_dhcp", "--first-offer"], cwd=REPO)
            ms = json.loads(r.stdout)
            if ms is not None:
                out.append(ms)
    return out


def run(rates: tuple[float, ...] = (1000, 2000, 5000, 10000), duration: float = 3.0) -> dict[str, Any]:
    import tempfile

    results: dict[str, Any] = {"load": {}, "cold_start_ms": []}
    base = Path(tempfile.mkdtemp(prefix="pxed-bench-dhcp."))
    try:
        for kind in ("pxed", "dnsmasq"):
            wd = base / kind
            wd.mkdir()
            lab, seg = server_lab(kind, wd)
            try:
                run_load(seg, 200, 1.0)  # warm up
                results["load"][kind] = [run_load(seg, r, duration) for r in rates]
            finally:
                lab.close()
        results["cold_start_ms"] = cold_start(base)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return results


def report(res: dict[str, Any]) -> None:
    print("\n== proxy DHCP load (UEFI transaction: DISCOVER→OFFER, REQUEST:4011→ACK), same run")
    print("| rate/s | server | complete | offer p50/p99 ms | ack p50/p99 ms |\n|---|---|---|---|---|")
    lossless: dict[str, float] = {}
    for kind, rows in res["load"].items():
        for row in rows:
            ok = row["acks"] == row["sent"]
            if ok:
                lossless[kind] = max(lossless.get(kind, 0), row["rate"])
            print(f"| {row['rate']:.0f} | {kind} | {row['acks']}/{row['sent']}{'' if ok else ' (loss)'} | "
                  f"{row['offer_p50_ms']}/{row['offer_p99_ms']} | {row['ack_p50_ms']}/{row['ack_p99_ms']} |")
    p, d = lossless.get("pxed", 0), lossless.get("dnsmasq", 0)
    ratio = f"{p / d:.2f}" if d else "n/a"
    print(f"\nhighest lossless rate tried: pxed {p:.0f}/s, dnsmasq {d:.0f}/s, ratio {ratio} (target >= 0.5)")
    cs = res["cold_start_ms"]
    if cs:
        print(f"cold start (first DISCOVER to OFFER, pxed not running): median {statistics.median(cs):.0f} ms "
              f"of {len(cs)} (target < 300 ms)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generate", type=float, help=argparse.SUPPRESS)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--first-offer", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.first_offer:
        print(json.dumps(first_offer_ms()))
        return 0
    if args.generate:
        print(json.dumps(generate(args.generate, args.duration)))
        return 0
    report(run(duration=args.duration))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
