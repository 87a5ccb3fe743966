"""Is this a PXE client, and which kind?  (netboot's three steps; protocol.md G1, G10, G11).

:func:`classify` returns a :class:`PxeRequest` or the reason the packet is not for
pxed.  It never raises.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from pxed.dhcp.options import MessageType, Opt, PxeSub, decode_tlv, user_classes
from pxed.dhcp.packet import BOOTREQUEST, Packet
from pxed.errors import MalformedPacket
from pxed.model import Firmware

PXE_VENDOR = b"PXEClient"
HTTP_VENDOR = b"HTTPClient"
IPXE_USER_CLASSES = (b"iPXE",)


@dataclass(frozen=True, slots=True)
class PxeRequest:
    packet: Packet
    mac: str
    arch: int
    firmware: Firmware | None
    vendor: bytes
    http: bool
    ipxe: bool
    guid: bytes | None  # option 97, echoed byte for byte
    boot_item: bytes | None  # 43.71 of a boot-server discovery request

    @property
    def uuid(self) -> str | None:
        return guid_to_uuid(self.guid)


def guid_to_uuid(guid: bytes | None) -> str | None:
    """Option 97's GUID as a UUID string (SMBIOS byte order: first three fields little-endian).

    None when absent, malformed, or one of SMBIOS's "no UUID" values (all 00, all FF),
    which QEMU without ``-uuid`` and some ROMs send.
    """
    if guid is None or len(guid) != 17 or guid[0] != 0:
        return None
    b = guid[1:]
    if b in (bytes(16), b"\xff" * 16):
        return None
    # str(uuid.UUID(bytes_le=b)), without the UUID object (once per client on the packet path)
    h = (b[3::-1] + b[5:3:-1] + b[7:5:-1] + b[8:]).hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def classify(packet: Packet, *, on_pxe_port: bool, vendor_prefixes: tuple[bytes, ...] = ()) -> PxeRequest | str:
    if packet.op != BOOTREQUEST:
        return "not a BOOTREQUEST"
    if packet.htype != 1 or len(packet.chaddr) != 6:
        return f"hardware type {packet.htype}/{len(packet.chaddr)} is not Ethernet"
    mtype = packet.message_type
    allowed = (MessageType.REQUEST, MessageType.INFORM, MessageType.DISCOVER) if on_pxe_port \
        else (MessageType.DISCOVER,)
    if mtype not in allowed:
        name = mtype.name if mtype is not None else "BOOTP/unknown"
        return f"DHCP{name} on port {4011 if on_pxe_port else 67} is not for a proxy server"
    vendor = packet.opt(Opt.VENDOR_CLASS) or b""
    http = vendor.startswith(HTTP_VENDOR)
    if not (vendor.startswith(PXE_VENDOR) or http or any(vendor.startswith(p) for p in vendor_prefixes if p)):
        return f"vendor class {vendor[:32]!r} is not a PXE client"
    arch_raw = packet.opt(Opt.CLIENT_ARCH)
    if arch_raw is None:
        return "no client architecture (option 93)"
    if len(arch_raw) < 2 or len(arch_raw) % 2:
        return f"option 93 has {len(arch_raw)} bytes"
    (arch,) = struct.unpack_from("!H", arch_raw)
    ipxe = any(uc in IPXE_USER_CLASSES for uc in user_classes(packet.opt(Opt.USER_CLASS) or b""))
    boot_item = None
    if (vendor_opts := packet.opt(Opt.VENDOR_SPECIFIC)) is not None:
        try:
            boot_item = decode_tlv(vendor_opts, where="option 43").get(PxeSub.BOOT_ITEM)
        except MalformedPacket:
            boot_item = None
        if boot_item is not None and len(boot_item) != 4:
            return "malformed PXE boot item (43.71)"
    return PxeRequest(
        packet=packet, mac=packet.mac, arch=arch, firmware=Firmware.from_arch(arch), vendor=vendor,
        http=http, ipxe=ipxe, guid=packet.opt(Opt.CLIENT_GUID), boot_item=boot_item,
    )
