"""A private system-like dbus-daemon for tests, with pxed's SHIPPED policy file.

The configuration copies the default policy of /usr/share/dbus-1/system.conf (deny
owning names and method calls unless a policy file punches a hole), adds polkit's
hole (as /usr/share/dbus-1/system.d/org.freedesktop.PolicyKit1.conf does, but owned
by root: the stand-in authority runs as root) and includes a directory holding an
unmodified copy of packaging/dbus/org.pxed.Pxed1.conf.

The directory is world-traversable so that ``runuser -u nobody`` callers can connect.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.lab.netns import wait_for
from tests.lab.pxedproc import REPO

SHIPPED_POLICY = REPO / "packaging" / "dbus" / "org.pxed.Pxed1.conf"

BUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path={sock}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"
          send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
  <!-- the stand-in polkit authority (root here; user polkitd on a real system) -->
  <policy user="root">
    <allow own="org.freedesktop.PolicyKit1"/>
  </policy>
  <policy context="default">
    <allow send_destination="org.freedesktop.PolicyKit1"/>
  </policy>
  <includedir>{systemd}</includedir>
</busconfig>
"""


class PrivateBus:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pxed-bus-", dir="/tmp"))
        os.chmod(self.dir, 0o755)
        self.socket = self.dir / "bus.sock"
        self.address = f"unix:path={self.socket}"
        systemd = self.dir / "system.d"
        systemd.mkdir()
        shutil.copyfile(SHIPPED_POLICY, systemd / SHIPPED_POLICY.name)
        self.conf = self.dir / "bus.conf"
        self.conf.write_text(BUS_CONF.format(sock=self.socket, systemd=systemd))
        self.log = open(self.dir / "dbus-daemon.log", "w+b")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            ["dbus-daemon", f"--config-file={self.conf}", "--nofork", "--nopidfile", "--nosyslog"],
            stdout=self.log, stderr=subprocess.STDOUT)
        try:
            wait_for(self.socket.exists, 10, interval=0.02, what="dbus-daemon's socket",
                     unless=lambda: self.proc.poll() is not None)
        except TimeoutError:
            raise RuntimeError(f"dbus-daemon did not start: {self.daemon_log()}") from None

    def daemon_log(self) -> str:
        self.log.flush()
        return (self.dir / "dbus-daemon.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)
