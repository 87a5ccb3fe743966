"""Value types shared across pxed's layers.  Standard library only."""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass


class ClientArch(enum.IntEnum):
    """Option 93 client system architecture (IANA "Processor Architecture Types")."""

    X86_BIOS = 0
    NEC_PC98 = 1
    EFI_ITANIUM = 2
    DEC_ALPHA = 3
    ARC_X86 = 4
    INTEL_LEAN = 5
    EFI_IA32 = 6
    EFI_X86_64 = 7
    EFI_XSCALE = 8
    EFI_BC = 9  # sent for x86-64 by much firmware in the wild (protocol.md G10)
    EFI_ARM32 = 10
    EFI_ARM64 = 11
    EFI_IA32_HTTP = 15
    EFI_X86_64_HTTP = 16
    EFI_ARM32_HTTP = 18
    EFI_ARM64_HTTP = 19
    RPI = 0x29


class Firmware(enum.StrEnum):
    """What kind of boot file a client needs: the key of the per-arch boot file table."""

    BIOS = "bios"
    EFI32 = "efi32"
    EFI64 = "efi64"
    ARM64 = "arm64"
    HTTP32 = "http32"
    HTTP64 = "http64"
    HTTPARM64 = "httparm64"

    @property
    def is_http(self) -> bool:
        return self in (Firmware.HTTP32, Firmware.HTTP64, Firmware.HTTPARM64)

    @property
    def is_uefi(self) -> bool:
        return self is not Firmware.BIOS

    @classmethod
    def from_arch(cls, arch: int) -> Firmware | None:
        """Map an option-93 value to a firmware kind (G10: 7 and 9 are both x86-64)."""
        return _ARCH_TO_FIRMWARE.get(arch)


_ARCH_TO_FIRMWARE: dict[int, Firmware] = {
    ClientArch.X86_BIOS: Firmware.BIOS,
    ClientArch.EFI_IA32: Firmware.EFI32,
    ClientArch.EFI_X86_64: Firmware.EFI64,
    ClientArch.EFI_BC: Firmware.EFI64,
    ClientArch.EFI_ARM64: Firmware.ARM64,
    ClientArch.EFI_IA32_HTTP: Firmware.HTTP32,
    ClientArch.EFI_X86_64_HTTP: Firmware.HTTP64,
    ClientArch.EFI_ARM64_HTTP: Firmware.HTTPARM64,
}


class JobState(enum.StrEnum):
    """Where an image import job is."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELED = "canceled"


class PxeStage(enum.StrEnum):
    """Which exchange of a boot a log line or ClientSeen signal describes."""

    OFFER = "offer"
    ACK = "ack"


@dataclass(frozen=True, slots=True)
class InterfaceInfo:
    """A snapshot of the served interface, as netlink reports it."""

    name: str
    index: int
    mac: str | None = None
    mtu: int = 1500
    up: bool = True
    addresses: tuple[ipaddress.IPv4Interface, ...] = ()

    @property
    def address(self) -> ipaddress.IPv4Address | None:
        """The address pxed announces: the first IPv4 address of the interface."""
        return self.addresses[0].ip if self.addresses else None

    def on_link(self, ip: ipaddress.IPv4Address) -> bool:
        return any(ip in a.network for a in self.addresses)


@dataclass(frozen=True, slots=True)
class BootEntry:
    """One menu entry: what syslinux loads and with which command line.

    ``kernel``/``initrds`` are paths relative to the boot root (the menu renderer
    turns them into HTTP URLs); ``append`` is the kernel command line without
    initrd= (syslinux adds that from INITRD).
    """

    id: str
    title: str
    kernel: str
    initrds: tuple[str, ...] = ()
    append: str = ""
    sysappend: int | None = None
    kind: str = "linux"  # "linux" or "memdisk"


@dataclass(frozen=True, slots=True)
class Tool:
    """One entry of the menu's tail (local disk, memtest86+, HDT, reboot, power off).

    ``firmware`` is where its payload runs (memtest86+'s ``memtest.bin`` and HDT are BIOS
    programs); a loader may offer it on fewer (syslinux cannot power a UEFI machine off).
    ``path`` is the program in the boot root, ``args`` its named arguments, both optional.
    """

    id: str
    title: str
    firmware: frozenset[Firmware]
    path: str | None = None
    args: tuple[tuple[str, str], ...] = ()
    efi_path: str | None = None  # the program's UEFI build (memtest86+'s memtest64.efi), when it has one


ALL_FIRMWARE: frozenset[Firmware] = frozenset(Firmware)


@dataclass(frozen=True, slots=True)
class Menu:
    """The one menu model every boot loader renders: entries, then the tools.

    ``host`` is the server as URLs name it ("ip" or "ip:port"); ``default`` the configured
    [Menu] Default= (an entry id), which a firmware whose menu lacks it replaces by its first.
    """

    title: str
    timeout: int  # tenths of a second
    serial: str  # "port speed", "" for none
    splash: str | None
    default: str | None
    entries: tuple[BootEntry, ...]
    tools: tuple[Tool, ...]
    host: str


@dataclass(frozen=True, slots=True)
class Installed:
    """The menu tools the boot root offers."""

    memtest: str | None = None  # paths relative to the boot root
    memtest_efi: str | None = None
    hdt: str | None = None
    pciids: str | None = None
    modalias: str | None = None
