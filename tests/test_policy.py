"""pxed.policy: pxed.conf → the DHCP core's boot policy, with today's syslinux options as data."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from types import MappingProxyType

import pytest

from pxed import loaders
from pxed.config import Config, load_config
from pxed.dhcp.options import Opt
from pxed.dhcp.packet import parse
from pxed.dhcp.proxy import BootFile, Listener, Peer, decide
from pxed.loaders.syslinux import CONFIG_FILE, path_prefix
from pxed.model import Firmware, InterfaceInfo
from pxed.policy import boot_policy
from tests.dhcp.policies import syslinux_policy
from tests.lab.pxeclient import build


def test_boot_policy_takes_every_field() -> None:
    c = Config(allow_relay=True, vendor_classes=("HW-Client",), http_port=8081, ipxe_boot_file="boot.ipxe")
    p = boot_policy(c)
    assert (p.allow_relay, p.vendor_classes, p.http_port) == (True, ("HW-Client",), 8081)
    assert p.ipxe_boot_file == BootFile("boot.ipxe", ((Opt.PXELINUX_CONFIGFILE, b"pxelinux.cfg/default"),
                                                      (Opt.PXELINUX_PATHPREFIX, b"/")))
    assert {fw: f.path for fw, f in p.boot_files.items()} == dict(c.boot_files)


def test_boot_files_get_their_loader_s_options_http_and_hand_named_ones_nothing() -> None:
    files = {Firmware.BIOS: "lpxelinux.0", Firmware.EFI32: "efi32/syslinux.efi", Firmware.EFI64: "efi64/syslinux.efi",
             Firmware.ARM64: "arm64/grub/grubaa64.efi", Firmware.HTTP64: "efi64/syslinux.efi",
             Firmware.HTTP32: "h/x.efi", Firmware.HTTPARM64: "h/a.efi"}
    p = boot_policy(Config(boot_files=MappingProxyType(files)))  # loaders: the defaults (BIOS, EFI64, HTTP64)
    for fw, path in files.items():
        syslinux = fw in (Firmware.BIOS, Firmware.EFI64)
        want = ((209, b"pxelinux.cfg/default"), (210, path_prefix(path))) if syslinux else ()
        assert p.boot_files[fw] == BootFile(path, want), fw
    assert path_prefix("arm64/grub/grubaa64.efi") == b"arm64/grub/"
    assert path_prefix("lpxelinux.0") == b"/" and CONFIG_FILE == b"pxelinux.cfg/default"


@pytest.mark.parametrize("ipxe", [None, ""])
def test_no_ipxe_boot_file(ipxe: str | None) -> None:
    assert boot_policy(Config(ipxe_boot_file=ipxe)).ipxe_boot_file is None


def test_the_dhcp_tests_policy_is_what_the_defaults_give() -> None:
    """tests/dhcp (golden replies included) use tests.dhcp.policies: the same as pxed.conf's defaults."""
    assert boot_policy(Config()) == syslinux_policy()
    assert boot_policy(Config(http_port=8080, ipxe_boot_file="ipxe/menu.ipxe")) == \
        syslinux_policy(http_port=8080, ipxe_boot_file="ipxe/menu.ipxe")


def test_a_default_reply_carries_syslinux_s_options() -> None:
    iface = InterfaceInfo(name="lab0", index=2, addresses=(ipaddress.IPv4Interface("10.77.0.1/24"),))
    req = parse(build("efi64", bytes.fromhex("525400aabbcc"), 1))
    d = decide(req, Peer(Listener.DHCP, 2, ipaddress.IPv4Address(0), 68), iface, boot_policy(Config()))
    assert d.outgoing is not None
    rep = parse(d.outgoing.payload)
    assert rep.opt(209) == b"pxelinux.cfg/default" and rep.opt(210) == b"efi64/"


def test_syslinux_ipxe_chains_undionly_for_vendor_roms_and_gives_ipxe_pxelinux(tmp_path: Path) -> None:
    """[Boot] BIOSLoader=syslinux-ipxe: a BIOS client whose ROM is not iPXE gets undionly.kpxe; once
    it runs iPXE (the real SeaBIOS + iPXE ROM capture), pxelinux.0 with syslinux's options."""
    conf = tmp_path / "pxed.conf"
    conf.write_text("[Boot]\nBIOSLoader=syslinux-ipxe\n")
    config = load_config(conf, system_root=None)
    p = boot_policy(config)
    assert p.boot_files[Firmware.BIOS].path == "undionly.kpxe"
    assert p.ipxe_boot_files[Firmware.BIOS] == BootFile("pxelinux.0", ((209, CONFIG_FILE), (210, b"/")))
    iface = InterfaceInfo(name="lab0", index=2, addresses=(ipaddress.IPv4Interface("10.77.0.1/24"),))
    peer = Peer(Listener.DHCP, 2, ipaddress.IPv4Address(0), 68)
    vendor_rom = parse(build("bios", bytes.fromhex("525400aabbcd"), 7))  # PXEClient, no iPXE user class
    ipxe_rom = parse((Path(__file__).parent / "data/dhcp/seabios-ipxe-1-discover.bin").read_bytes())
    for req, want in ((vendor_rom, b"undionly.kpxe"), (ipxe_rom, b"pxelinux.0")):
        d = decide(req, peer, iface, p)
        assert d.outgoing is not None
        assert parse(d.outgoing.payload).file == want
    assert "undionly.kpxe" in {n.dest for n in loaders.needed(config.loaders)}
