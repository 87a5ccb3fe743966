"""The boot labs' work directory: checked for what a lab needs, world-readable, removed afterwards."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import need, need_tool
from tests.lab.netns import can_run_lab
from tests.lab.qemu import INITRD, KERNEL
from tests.lab.servers import world_readable_dir

LAB_TOOLS = ("qemu-system-x86_64", "systemd-socket-activate", "dnsmasq", "in.tftpd", "lighttpd", "setpriv")


@pytest.fixture
def lab_dir() -> Iterator[Path]:
    """A work directory for a BootLab, once the lab can run here (namespaces, QEMU, the servers,
    Debian's netboot kernel); a test's own ``workdir`` fixture adds what else it needs."""
    reason = can_run_lab()
    need(reason is None, reason or "")
    need_tool(*LAB_TOOLS)
    need(KERNEL.exists() and INITRD.exists(), "Debian netboot kernel missing (debian-installer-12-netboot-amd64)")
    d = world_readable_dir()
    yield d
    shutil.rmtree(d, ignore_errors=True)
