"""A scripted PXE client for network tests: sends what firmware sends, prints what comes back.

Run inside a lab namespace::

    ip netns exec NS python3 -m tests.lab.pxeclient --kind efi64 --mac 52:54:00:00:00:07 --json

It broadcasts a DISCOVER from UDP 68 through ``--interface`` (default lab0) and
collects every OFFER for ``--wait`` seconds.  With ``--request-4011`` and a proxy
offer received, it then sends the REQUEST to the proxy's port 4011 the way EDK2 does
(which needs an address: ``--address`` is added to the interface for that, and removed
afterwards).  ``--replay FILE`` sends a captured firmware packet (tests/data/dhcp/*.bin)
instead of a built one, with the MAC and xid replaced.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import random
import select
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from pxed.dhcp.options import MessageType, Opt, PxeSub, decode_tlv
from pxed.dhcp.packet import BOOTREQUEST, FLAG_BROADCAST, Packet, encode, parse

SO_BINDTODEVICE = 25

KINDS: dict[str, dict[str, Any]] = {
    "bios": {"arch": 0, "vendor": b"PXEClient:Arch:00000:UNDI:002001"},
    "efi64": {"arch": 7, "vendor": b"PXEClient:Arch:00007:UNDI:003016"},
    "efi9": {"arch": 9, "vendor": b"PXEClient:Arch:00009:UNDI:003016"},
    "efi32": {"arch": 6, "vendor": b"PXEClient:Arch:00006:UNDI:003016"},
    "arm64": {"arch": 11, "vendor": b"PXEClient:Arch:00011:UNDI:003016"},
    "http64": {"arch": 16, "vendor": b"HTTPClient:Arch:00016:UNDI:003001"},
    "ipxe": {"arch": 0, "vendor": b"PXEClient:Arch:00000:UNDI:002001", "user_class": b"iPXE"},
    "ipxe-rfc3004": {"arch": 0, "vendor": b"PXEClient:Arch:00000:UNDI:002001", "user_class": b"\x04iPXE"},
    "ipxe-efi": {"arch": 7, "vendor": b"PXEClient:Arch:00007:UNDI:003010", "user_class": b"iPXE"},
    "http-arch7": {"arch": 7, "vendor": b"HTTPClient:Arch:00007:UNDI:003001"},
    "pxe-arch16": {"arch": 16, "vendor": b"PXEClient:Arch:00016:UNDI:003001"},
    "arch-itanium": {"arch": 2, "vendor": b"PXEClient:Arch:00002:UNDI:003016"},
    "huawei": {"arch": 0, "vendor": b"HW-Client"},
    "nonpxe": {"arch": None, "vendor": b"MSFT 5.0"},
    "no93": {"arch": None, "vendor": b"PXEClient:Arch:00000:UNDI:002001"},
}
GUID = bytes([0]) + bytes(range(1, 17))


def build(kind: str, mac: bytes, xid: int, *, mtype: MessageType = MessageType.DISCOVER,
          ciaddr: ipaddress.IPv4Address | None = None, giaddr: ipaddress.IPv4Address | None = None,
          guid: bool = True, boot_item: bytes | None = None, arch_raw: bytes | None = None,
          op: int = BOOTREQUEST) -> bytes:
    """The packet a client of `kind` sends (option order and contents modelled on EDK2/iPXE)."""
    spec = KINDS[kind]
    opts: list[tuple[int, bytes]] = [(Opt.MESSAGE_TYPE, bytes((mtype,))),
                                     (Opt.PARAMETER_LIST, bytes([1, 3, 43, 60, 66, 67, 97, 128, 209, 210])),
                                     (Opt.MAX_MESSAGE_SIZE, struct.pack("!H", 1464))]
    opts.append((Opt.VENDOR_CLASS, spec["vendor"]))
    if spec["arch"] is not None:
        opts.append((Opt.CLIENT_ARCH, arch_raw if arch_raw is not None else struct.pack("!H", spec["arch"])))
        opts.append((Opt.CLIENT_NDI, b"\x01\x03\x10"))
    if guid:
        opts.append((Opt.CLIENT_GUID, GUID))
    if "user_class" in spec:
        opts.append((Opt.USER_CLASS, spec["user_class"]))
    if boot_item is not None:
        opts.append((Opt.VENDOR_SPECIFIC, bytes((PxeSub.BOOT_ITEM, 4)) + boot_item + b"\xff"))
    zero = ipaddress.IPv4Address(0)
    p = Packet(op=op, xid=xid, chaddr=mac, flags=FLAG_BROADCAST, ciaddr=ciaddr or zero,
               giaddr=giaddr or zero).with_options(opts)
    return encode(p, pad_to=0)


def replay(raw: bytes, mac: bytes, xid: int, *, mtype: MessageType | None = None,
           ciaddr: ipaddress.IPv4Address | None = None) -> bytes:
    """A captured client packet with a fresh MAC and xid (and optionally another type/ciaddr)."""
    p = parse(raw)
    opts = [(c, p.options[c]) for c in p.option_order]
    if mtype is not None:
        opts = [(c, bytes((mtype,)) if c == Opt.MESSAGE_TYPE else v) for c, v in opts]
    if Opt.CLIENT_ID in p.options and p.options[Opt.CLIENT_ID][:1] == b"\x01":
        opts = [(c, b"\x01" + mac if c == Opt.CLIENT_ID else v) for c, v in opts]
    p = replace(p, xid=xid, chaddr=mac, ciaddr=ciaddr if ciaddr is not None else p.ciaddr)
    return encode(p.with_options(opts), pad_to=0)


def describe(p: Packet, src: tuple[str, int], size: int) -> dict[str, Any]:
    opts = {str(k): v.hex() for k, v in p.options.items()}
    sub = {}
    if Opt.VENDOR_SPECIFIC in p.options:
        sub = {str(k): v.hex() for k, v in decode_tlv(p.options[Opt.VENDOR_SPECIFIC]).items()}
    mt = p.message_type
    return {
        "from": f"{src[0]}:{src[1]}", "size": size, "type": mt.name if mt else None, "xid": p.xid,
        "ciaddr": str(p.ciaddr), "yiaddr": str(p.yiaddr), "siaddr": str(p.siaddr), "giaddr": str(p.giaddr),
        "flags": p.flags, "sname": p.sname.decode(errors="replace"), "file": p.file.decode(errors="replace"),
        "options": opts, "vendor": (p.opt(Opt.VENDOR_CLASS) or b"").decode(errors="replace"),
        "option43": sub, "server_id": str(ipaddress.IPv4Address(p.opt(Opt.SERVER_ID)))
        if p.opt(Opt.SERVER_ID) else None,
    }


@dataclass
class Client:
    interface: str = "lab0"

    def open(self, port: int, address: str = "0.0.0.0") -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        s.setsockopt(socket.SOL_SOCKET, SO_BINDTODEVICE, self.interface.encode())
        s.bind((address, port))
        return s

    def collect(self, s: socket.socket, xid: int, wait: float) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            r, _, _ = select.select([s], [], [], left)
            if not r:
                break
            data, src = s.recvfrom(4096)
            try:
                p = parse(data)
            except Exception as e:  # report garbage replies instead of crashing the test client
                out.append({"from": f"{src[0]}:{src[1]}", "error": str(e)})
                continue
            if p.xid == xid and p.op == 2:
                out.append(describe(p, src, len(data)))
        return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    mac = bytes.fromhex(args.mac.replace(":", ""))
    xid = random.getrandbits(32)
    cl = Client(args.interface)
    result: dict[str, Any] = {"xid": xid, "offers": [], "acks": []}
    giaddr = ipaddress.IPv4Address(args.giaddr) if args.giaddr else None
    with cl.open(67 if giaddr else 68, args.address.split("/")[0] if giaddr and args.address else "0.0.0.0") as s:
        if args.replay:
            pkt = replay(Path(args.replay).read_bytes(), mac, xid, mtype=MessageType.DISCOVER)
        else:
            pkt = build(args.kind, mac, xid, giaddr=giaddr, guid=not args.no_guid)
        dest = (args.server, 67) if giaddr else ("255.255.255.255", 67)
        s.sendto(pkt, dest)
        result["offers"] = cl.collect(s, xid, args.wait)
    if args.request_4011:
        proxy = next((o for o in result["offers"] if o.get("yiaddr") == "0.0.0.0" and o.get("vendor")), None)
        target = args.server or (proxy and proxy["siaddr"])
        if target:
            added = False
            if args.address:
                subprocess.run(["ip", "addr", "add", args.address, "dev", args.interface], check=False,
                               capture_output=True)
                added = True
            try:
                ip = args.address.split("/")[0] if args.address else "0.0.0.0"
                with cl.open(0, ip) as s2:
                    item = bytes.fromhex(args.boot_item) if args.boot_item else None
                    if args.replay:
                        req = replay(Path(args.replay).read_bytes(), mac, xid, mtype=MessageType.REQUEST,
                                     ciaddr=ipaddress.IPv4Address(ip))
                    else:
                        req = build(args.kind, mac, xid, mtype=MessageType.REQUEST,
                                    ciaddr=ipaddress.IPv4Address(ip), boot_item=item, guid=not args.no_guid)
                    s2.sendto(req, (target, 4011))
                    result["acks"] = cl.collect(s2, xid, args.wait)
            finally:
                if added:
                    subprocess.run(["ip", "addr", "del", args.address, "dev", args.interface], check=False,
                                   capture_output=True)
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kind", choices=sorted(KINDS), default="bios")
    p.add_argument("--mac", default="52:54:00:00:00:01")
    p.add_argument("--interface", default="lab0")
    p.add_argument("--wait", type=float, default=2.0, help="seconds to collect replies")
    p.add_argument("--request-4011", action="store_true", help="then send the REQUEST to port 4011")
    p.add_argument("--address", help="CIDR address to use for the 4011 request or as relay, e.g. 10.77.0.50/24")
    p.add_argument("--server", help="unicast destination (relay mode / 4011 target)")
    p.add_argument("--giaddr", help="act as a relay agent with this giaddr (send unicast to --server:67)")
    p.add_argument("--boot-item", help="43.71 boot item to send in the 4011 request, hex (4 bytes)")
    p.add_argument("--no-guid", action="store_true", help="leave out option 97")
    p.add_argument("--replay", help="send this captured client packet (.bin) with --mac and a fresh xid")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.giaddr and args.address:
        subprocess.run(["ip", "addr", "add", args.address, "dev", args.interface], check=False, capture_output=True)
    result = run(args)
    json.dump(result, sys.stdout, indent=1 if not args.json else None)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    raise SystemExit(main())
