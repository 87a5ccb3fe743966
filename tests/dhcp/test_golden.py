"""Golden packets captured from real firmware (tools/capture-golden) and pxed's reply to each.

Each tests/data/dhcp/<name>.bin is a client payload seen on the lab bridge while the
firmware booted; <name>.txt is the readable decode of that request and of the reply
pxed's engine gives it today (fixed policy: server 10.77.0.1, ifindex 2, default boot
files).  seabios-ipxe-pxebs-request-4011 is iPXE's boot-server request (43.71) after
dnsmasq's menu offer, captured with ``tools/capture-golden --proxy dnsmasq``.
PXED_UPDATE_GOLDEN=1 rewrites the .txt files.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

import pytest

from pxed.dhcp.options import Opt, decode_tlv
from pxed.dhcp.packet import Packet, parse
from pxed.dhcp.proxy import Answered, Listener, Peer, decide
from pxed.model import InterfaceInfo
from tests.dhcp.policies import syslinux_policy

DATA = Path(__file__).resolve().parents[1] / "data" / "dhcp"
CAPTURES = sorted(DATA.glob("*.bin"))
IFACE = InterfaceInfo(name="lab0", index=2, addresses=(ipaddress.IPv4Interface("10.77.0.1/24"),))
POLICY = syslinux_policy()


def dump(p: Packet) -> str:
    mt = p.message_type
    lines = [f"op={p.op} type={mt.name if mt else None} xid={p.xid:#010x} chaddr={p.mac} flags={p.flags:#06x}",
             f"ciaddr={p.ciaddr} yiaddr={p.yiaddr} siaddr={p.siaddr} giaddr={p.giaddr}",
             f"sname={p.sname!r} file={p.file!r}"]
    for code in p.option_order:
        v = p.options[code]
        name = Opt(code).name if code in Opt._value2member_map_ else str(code)
        shown = repr(v) if code in (Opt.VENDOR_CLASS, Opt.USER_CLASS, 209, 210, Opt.HOSTNAME) else v.hex()
        if code == Opt.VENDOR_SPECIFIC:
            shown += "  " + repr({k: x.hex() for k, x in decode_tlv(v).items()})
        lines.append(f"  {code:3d} {name:<20} {shown}")
    return "\n".join(lines)


def peer_for(path: Path, p: Packet) -> Peer:
    if path.stem.endswith("-4011"):
        return Peer(Listener.PXE, 2, p.ciaddr if int(p.ciaddr) else ipaddress.IPv4Address("10.77.0.186"), 4011)
    return Peer(Listener.DHCP, 2, ipaddress.IPv4Address("0.0.0.0"), 68)


def render(path: Path) -> str:
    req = parse(path.read_bytes())
    d = decide(req, peer_for(path, req), IFACE, POLICY)
    text = f"# {path.name}: request\n{dump(req)}\n# pxed's reply\n"
    if d.outgoing is None:
        text += f"(none: {d.event.reason})\n"  # type: ignore[union-attr]
    else:
        out = d.outgoing
        ev = d.event
        assert isinstance(ev, Answered)
        text += (f"to {out.address}:{out.port} via {out.listener} ({len(out.payload)} bytes)\n"
                 f"event: firmware={ev.firmware} arch={ev.arch} stage={ev.stage} ipxe={ev.ipxe} uuid={ev.uuid} "
                 f"boot_file={ev.boot_file}\n{dump(parse(out.payload))}\n")
    return text


def test_captures_exist_for_each_firmware() -> None:
    names = {p.name.split("-")[0] for p in CAPTURES}
    assert {"seabios", "ovmf", "ipxe"} <= names, names


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_golden_dump(path: Path) -> None:
    golden = path.with_suffix(".txt")
    text = render(path)
    if os.environ.get("PXED_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert golden.read_text() == text


@pytest.mark.parametrize("path", CAPTURES, ids=[p.stem for p in CAPTURES])
def test_firmware_gets_what_it_needs(path: Path) -> None:
    req = parse(path.read_bytes())
    d = decide(req, peer_for(path, req), IFACE, POLICY)
    if "request" in path.stem and not path.stem.endswith("-4011"):
        assert d.outgoing is None  # a REQUEST to the network's DHCP server is not for pxed
        return
    assert d.outgoing is not None and isinstance(d.event, Answered)
    rep = parse(d.outgoing.payload)
    assert rep.opt(Opt.CLIENT_GUID) == req.opt(Opt.CLIENT_GUID)
    item = decode_tlv(req.options[Opt.VENDOR_SPECIFIC]).get(71) if Opt.VENDOR_SPECIFIC in req.options else None
    if item is not None:  # iPXE's pxebs drops an ACK whose 43.71 differs (G7)
        assert decode_tlv(rep.options[Opt.VENDOR_SPECIFIC])[71] == item
    if path.name.startswith("ovmf-") and "ipxe" not in path.name:
        if path.stem.endswith("-4011"):
            assert rep.file == b"efi64/syslinux.efi" and rep.ciaddr == req.ciaddr
        else:
            assert rep.file == b"" and Opt.VENDOR_SPECIFIC not in rep.options  # BINL form
    elif path.name.startswith("seabios-ipxe") or path.name.startswith("ipxe-chain"):
        # BIOS on iPXE's stack: pxelinux.0, whose http:// goes through iPXE (lwIP's fails; docs/boot-failures.md)
        assert rep.file == b"pxelinux.0" and d.event.ipxe
    elif path.name.startswith("ovmf-ipxe"):
        assert rep.file == b"efi64/syslinux.efi" and d.event.ipxe
