"""The bridge from pxed.conf to the DHCP core: :func:`boot_policy` turns a
:class:`~pxed.config.Config` into the loader-neutral :class:`~pxed.dhcp.proxy.BootPolicy`
that :func:`~pxed.dhcp.proxy.decide` answers by.

The DHCP core knows no boot loader: each :class:`~pxed.dhcp.proxy.BootFile` carries the
options its firmware class's loader ([Boot] <CLASS>Loader=) wants in PXE replies
(syslinux's: 209, the config file, and 210, the path prefix).  A class without a loader
(a boot file named by hand) gets none; HTTP Boot replies never carry any.  iPXE's boot
file gets the options of the BIOS class's loader, iPXE's usual home.  A loader's build for
iPXE's network stack (syslinux: pxelinux.0 for BIOS) is offered to iPXE clients of a class
whose boot file is that loader's own.
"""

from __future__ import annotations

from types import MappingProxyType

from pxed import loaders
from pxed.config import Config
from pxed.dhcp.proxy import BootFile, BootPolicy
from pxed.model import Firmware


def _boot_file(config: Config, firmware: Firmware, path: str) -> BootFile:
    name = config.loaders.get(firmware)
    if firmware.is_http or name is None:
        return BootFile(path)
    return BootFile(path, loaders.get(name).dhcp_options(path))


def boot_policy(config: Config) -> BootPolicy:
    """The DHCP core's policy for `config`: its boot files with their loaders' options, iPXE's
    boot file, HTTP port, relay rule and extra vendor classes."""
    files = {fw: _boot_file(config, fw, path) for fw, path in config.boot_files.items()}
    on_ipxe = {}  # a loader's build for iPXE's network stack, where the class's boot file is the loader's own
    for fw, name in config.loaders.items():
        loader = loaders.get(name)
        path = loader.ipxe_boot_file(fw)
        if path is not None and config.boot_files.get(fw) == loader.boot_file(fw):
            on_ipxe[fw] = _boot_file(config, fw, path)
    ipxe = config.ipxe_boot_file
    return BootPolicy(boot_files=MappingProxyType(files),
                      ipxe_boot_file=_boot_file(config, Firmware.BIOS, ipxe) if ipxe else None,
                      ipxe_boot_files=MappingProxyType(on_ipxe),
                      http_port=config.http_port, allow_relay=config.allow_relay, vendor_classes=config.vendor_classes)


__all__ = ["boot_policy"]
