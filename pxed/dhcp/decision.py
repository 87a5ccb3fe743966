"""What :func:`~pxed.dhcp.proxy.decide` takes and gives: where a request came from, the boot
policy, and the decision (the reply to send, and what happened).

Plain frozen values shared by :mod:`pxed.dhcp.proxy` (which re-exports them) and
:mod:`pxed.dhcp.memo`, so neither imports the other's machinery.
"""

from __future__ import annotations

import enum
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

from pxed.model import Firmware, PxeStage

# Options decide() writes itself (message type, server id, vendor class, GUID, PXE options).
_DECIDED = frozenset({53, 54, 60, 97, 43})


class Listener(enum.StrEnum):
    DHCP = "dhcp"  # UDP 67
    PXE = "pxe"  # UDP 4011


@dataclass(frozen=True, slots=True)
class Peer:
    listener: Listener
    ifindex: int | None
    address: ipaddress.IPv4Address
    port: int


@dataclass(frozen=True, slots=True)
class BootFile:
    """A boot file, relative to the boot root, and what its boot loader wants beside it.

    ``options`` are extra DHCP options (code, value) for PXE (non-HTTP) replies naming this
    file, appended in this order after option 43; HTTP Boot replies never carry them.
    """

    path: str
    options: tuple[tuple[int, bytes], ...] = ()

    def __post_init__(self) -> None:
        for code, _ in self.options:
            if not 0 < code < 255 or code in _DECIDED:
                raise ValueError(f"option {code} cannot be a boot file's: decide() sets it, or it is no option")


class ReplyForm(enum.StrEnum):
    """How a UEFI PXE client is answered on :67 ([Host] ReplyForm=)."""

    AUTO = "auto"  # BINL for UEFI (no 43, no file: the client asks :4011), PXE10 direct for BIOS and iPXE
    BINL = "binl"  # always the BINL form
    DIRECT = "direct"  # 43.6=8 with the file in the offer, for firmware that ignores BINL offers


@dataclass(frozen=True, slots=True)
class HostRule:
    """One ``[Host NAME]`` of pxed.conf (or a host set over D-Bus), as the DHCP core applies it.

    A rule matches a request when every match field it sets holds: ``mac`` (6 bytes) equals
    chaddr, ``mac_prefix`` (1 to 5 bytes) starts it, ``uuid`` (lower case) is option 97's,
    ``arch`` is option 93's, ``vendor_class`` starts option 60.  Of several matching rules the
    most specific wins (:attr:`rank`); the config refuses two rules of one rank that can match
    the same client.  What a match does: ``ignore`` (no reply at all), this host's own
    ``boot_files`` (its loader's, per firmware class; missing classes keep the policy's),
    the :class:`ReplyForm`, and a reply ``delay`` in seconds (as dnsmasq's dhcp-reply-delay).
    """

    name: str
    mac: bytes | None = None
    mac_prefix: bytes | None = None
    uuid: str | None = None
    arch: int | None = None
    vendor_class: bytes | None = None
    ignore: bool = False
    boot_files: Mapping[Firmware, BootFile] = field(default_factory=dict)
    reply_form: ReplyForm = ReplyForm.AUTO
    delay: float = 0.0

    @property
    def rank(self) -> tuple[int, int, int, int]:
        """Specificity, larger wins: a MAC, then a UUID, then the longest MAC prefix, then vendor class, then arch."""
        return (2 if self.mac is not None else 1 if self.uuid is not None else 0,
                len(self.mac_prefix or b""), int(self.vendor_class is not None), int(self.arch is not None))


@dataclass(frozen=True, slots=True)
class BootPolicy:
    """What pxed answers: the boot file of each firmware class (a class missing, or with an
    empty path, is not answered), iPXE's own, and the network rules.  Knows no boot loader.

    A client already running iPXE gets ``ipxe_boot_file`` when set ([Boot] IPXE=), else its
    class's entry in ``ipxe_boot_files`` (the loader's build for iPXE's network stack), else
    the class's boot file."""

    boot_files: Mapping[Firmware, BootFile]
    ipxe_boot_file: BootFile | None = None
    ipxe_boot_files: Mapping[Firmware, BootFile] = field(default_factory=dict)
    http_port: int = 80
    allow_relay: bool = False
    vendor_classes: tuple[str, ...] = ()
    hosts: tuple[HostRule, ...] = ()  # per-machine rules ([Host NAME]); see HostRule


@dataclass(frozen=True, slots=True)
class Outgoing:
    payload: bytes
    address: ipaddress.IPv4Address
    port: int
    listener: Listener
    ifindex: int | None
    delay: float = 0.0  # seconds to wait before sending (a HostRule's delay)


@dataclass(frozen=True, slots=True)
class Answered:
    mac: str
    arch: int
    firmware: Firmware
    uuid: str | None
    stage: PxeStage
    boot_file: str
    ipxe: bool
    xid: int
    relayed: bool
    host: str | None = None  # the HostRule that matched


@dataclass(frozen=True, slots=True)
class Ignored:
    reason: str
    mac: str | None = None
    notable: bool = False  # worth an info line (a PXE client pxed cannot serve), else debug


@dataclass(frozen=True, slots=True)
class Decision:
    outgoing: Outgoing | None
    event: Answered | Ignored


__all__ = ["Answered", "BootFile", "BootPolicy", "Decision", "HostRule", "Ignored", "Listener", "Outgoing", "Peer",
           "ReplyForm"]
