"""The installed pxed under a real systemd: a booted container on the lab's server namespace.

    with SystemLab(workdir) as sl:
        sl.start()        # lab segment + dnsmasq + RAs, container booted, pxed installed,
                          # configured and `systemctl enable --now pxed.socket`
        sl.discover(mac)  # a scripted PXE DISCOVER from the client namespace
        sl.boot("bios")   # a QEMU client on the lab bridge

The container replaces the boot-server namespace's processes of BootLab: pxed, tftp-hpa
and lighttpd are started by the container's systemd from the installed units.  Both labs
are LabNetworks (tests/lab/network.py), built and closed alike; on failure the summary carries the
container's journal of pxed's units and its console.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from tests.lab.bootlab import DEBIAN_ENTRY
from tests.lab.netns import Netns, Segment
from tests.lab.network import LabNetwork
from tests.lab.nspawn import Container, debian_tree, install_pxed, runtime_packages
from tests.lab.qemu import INITRD, KERNEL

REPO = Path(__file__).resolve().parents[2]
BOOT_ROOT = "/var/lib/pxed/boot"
WEB_IP = "10.77.0.60"  # the namespace that fetches over TFTP and HTTP (a booted client's view)


@dataclass
class SystemLab(LabNetwork):
    deb: Path | None = None  # install this package; None: `make install`
    tree: Path | None = None  # the debootstrap'd Debian 12 the container boots (prepare)
    web: Netns | None = None
    container: Container | None = None
    installed_by: str = ""
    vm_prefix: ClassVar[str] = "sys-"
    vm_macs: ClassVar[dict[str, str]] = {"bios": "52:54:00:5e:00:01", "uefi": "52:54:00:5e:00:01",
                                         "uefi-sb": "52:54:00:5e:00:01"}

    @property
    def c(self) -> Container:
        assert self.container is not None, "start() first"
        return self.container

    def prepare(self) -> None:
        """The system tree (built once per package list, minutes; before any namespace exists)."""
        self.tree = debian_tree(runtime_packages(self.deb))

    def network(self) -> Segment:
        """BootLab's network, and the web namespace that fetches over TFTP and HTTP as a booted client would."""
        seg = super().network()
        self.web = self.lab.netns("web")
        self.lab.port(seg.sw, seg.bridge, self.web, "lab0")
        self.web.ip("addr", "add", f"{WEB_IP}/24", "dev", "lab0")
        return seg

    def start_servers(self) -> None:
        """The container on the server namespace, pxed installed and configured in it."""
        assert self.seg is not None and self.tree is not None
        self.container = Container(self.tree, self.workdir / "container", netns=self.seg.srv.name)
        self.container.start()
        self.installed_by = install_pxed(self.container, self.deb)
        self.configure()

    def stop_servers(self) -> None:
        if self.container is not None:
            self.container.stop()

    def journals(self) -> dict[str, str]:
        """The container's journal of pxed's units, its failed units, and its console."""
        c = self.container
        if c is None:
            return {}
        out = {}
        if c.leader and c.proc is not None and c.proc.poll() is None:
            out["container journal of pxed's units (last 120 lines)"] = c.journal(
                "-u", "pxed.socket", "-u", "pxed-pxe.socket", "-u", "pxed.service", "-u", "pxed-tftp.service",
                "-u", "pxed-http.service", "-n", "120")
            out["container: systemctl --failed"] = c.run(["systemctl", "--failed", "--no-pager", "--plain"],
                                                         check=False, timeout=30).stdout
        with contextlib.suppress(OSError):
            out["container console"] = c.console.read_text(errors="replace")
        return out

    def configure(self) -> None:
        """What an admin does after installing (README.Debian): name the interface (and here add
        a boot entry), reload, turn off Debian's own tftpd-hpa and lighttpd, enable pxed.socket."""
        c = self.c
        deb = c.path(BOOT_ROOT) / "debian"
        deb.mkdir(parents=True, exist_ok=True)
        for src in (KERNEL, INITRD):
            shutil.copyfile(src, deb / src.name)
            os.chmod(deb / src.name, 0o644)
        conf = c.path("/etc/pxed/pxed.conf.d/50-lab.conf")
        conf.write_text("[Network]\nInterface=lab0\n[HTTP]\nBackend=lighttpd\n"
                        + DEBIAN_ENTRY.format(timeout=20, default="debian"))
        conf.chmod(0o644)
        c.run(["systemctl", "daemon-reload"])  # the generator writes pxed-tftp/pxed-http and the socket drop-ins
        c.run(["systemctl", "disable", "--now", "tftpd-hpa", "lighttpd"])
        c.run(["systemctl", "enable", "--now", "pxed.socket"])

    def discover(self, mac: str, *, kind: str = "bios", wait: float = 3.0,
                 request_4011: bool = False) -> dict[str, Any]:
        """A scripted PXE client in the client namespace; its parsed replies."""
        assert self.seg is not None
        argv = [sys.executable, "-m", "tests.lab.pxeclient", "--kind", kind, "--mac", mac, "--wait", str(wait),
                "--json", *(["--request-4011", "--address", "10.77.0.51/24"] if request_4011 else [])]
        r = self.seg.cli.run(argv, timeout=wait * 3 + 30, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": os.fspath(REPO)})
        result: dict[str, Any] = json.loads(r.stdout)
        return result

    def fetch(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[bytes]:
        """A command (curl) in the web namespace, binary output."""
        assert self.web is not None
        return subprocess.run(self.web.argv(argv), capture_output=True, timeout=timeout)
