"""systemd adapter: socket activation, sd_notify and the watchdog.

The wire protocol of both is tiny and stable, so it is spoken directly here with
the standard library (the same behaviour as libsystemd's ``sd_listen_fds_with_names``
and ``sd_notify``), which also keeps this module testable without PID 1.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

SD_LISTEN_FDS_START = 3


def listen_fds(environ: Mapping[str, str] | None = None, *, unset: bool = True) -> dict[str, list[int]]:
    """Sockets passed by systemd, grouped by FileDescriptorName (``unknown`` when unnamed).

    Honours ``LISTEN_PID`` (the fds are for this process only) and, like
    ``sd_listen_fds(unset_environment=1)``, removes the variables so children do
    not inherit them.
    """
    env = os.environ if environ is None else environ
    try:
        pid = int(env.get("LISTEN_PID", ""))
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return {}
    if pid != os.getpid() or count <= 0:
        return {}
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    result: dict[str, list[int]] = {}
    for i in range(count):
        fd = SD_LISTEN_FDS_START + i
        os.set_inheritable(fd, False)
        name = names[i] if i < len(names) and names[i] else "unknown"
        result.setdefault(name, []).append(fd)
    if unset and environ is None:
        for var in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
            os.environ.pop(var, None)
    return result


class Notifier:
    """sd_notify(3) over $NOTIFY_SOCKET; a no-op when not run by systemd."""

    def __init__(self, address: str | None = None) -> None:
        addr = address if address is not None else os.environ.get("NOTIFY_SOCKET")
        self._addr: str | bytes | None = None
        self._sock: socket.socket | None = None
        if addr:
            self._addr = "\0" + addr[1:] if addr.startswith("@") else addr
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, **fields: str | int) -> bool:
        """Send ``KEY=value`` lines; keyword names are upper-cased (ready=1 → READY=1)."""
        if self._sock is None or self._addr is None:
            return False
        text = "\n".join(f"{k.upper()}={v}" for k, v in fields.items())
        try:
            self._sock.sendto(text.encode(), self._addr)
        except OSError as e:
            logger.warning("sd_notify failed: %s", e)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.notify(ready=1, status=status)

    def status(self, status: str) -> bool:
        return self.notify(status=status)

    def reloading(self) -> bool:
        return self.notify(reloading=1, monotonic_usec=time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)

    def stopping(self) -> bool:
        return self.notify(stopping=1)

    def watchdog(self) -> bool:
        return self.notify(watchdog=1)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


@dataclass(frozen=True, slots=True)
class Watchdog:
    """The watchdog interval systemd asks for, if any (WATCHDOG_USEC for this PID)."""

    interval: float | None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Watchdog:
        env = os.environ if environ is None else environ
        try:
            usec = int(env.get("WATCHDOG_USEC", ""))
        except ValueError:
            return cls(None)
        pid = env.get("WATCHDOG_PID")
        if usec <= 0 or (pid and pid.isdigit() and int(pid) != os.getpid()):
            return cls(None)
        return cls(usec / 1e6)

    @property
    def ping_every(self) -> float | None:
        """Ping at half the interval, as sd_watchdog_enabled(3) recommends."""
        return self.interval / 2 if self.interval else None
