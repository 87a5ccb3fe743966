"""The bridge from pxed.conf to the DHCP core's boot policy (placeholder until the BootFile change lands)."""

from __future__ import annotations

from pxed.config import Config
from pxed.dhcp.proxy import BootPolicy


def boot_policy(config: Config) -> BootPolicy:
    return BootPolicy.from_config(config)
