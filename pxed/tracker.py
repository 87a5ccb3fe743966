"""Recent boots per client MAC, for ``pxectl clients`` and the D-Bus ListClients method.

Bounded: the least recently seen MACs are dropped beyond ``capacity``.  Thread-safe,
so the daemon may record from its packet loop while D-Bus reads a snapshot.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any

DEFAULT_CAPACITY = 4096


@dataclass(frozen=True, slots=True)
class ClientRecord:
    mac: str
    arch: int
    stage: str
    boot_file: str
    when: float  # seconds since the epoch
    count: int = 1  # exchanges seen from this MAC since pxed started

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClientTracker:
    """The latest exchange of each MAC, most recently seen last."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._lock = threading.Lock()
        # mac -> (arch, stage, boot_file, when, count); a plain dict keeps insertion order, and
        # re-inserting makes a MAC the newest.  Records are made when read: recording is on the
        # packet path, once per answered exchange.
        self._clients: dict[str, tuple[int, str, str, float, int]] = {}

    def record(self, mac: str, arch: int, stage: str, boot_file: str, when: float) -> None:
        mac = mac.lower()
        clients = self._clients
        with self._lock:
            old = clients.pop(mac, None)
            clients[mac] = (int(arch), stage, boot_file, when, old[4] + 1 if old else 1)
            if len(clients) > self.capacity:
                del clients[next(iter(clients))]

    def recent(self) -> list[ClientRecord]:
        """One record per MAC, most recently seen first."""
        with self._lock:
            items = list(self._clients.items())
        return [ClientRecord(mac, *rest) for mac, rest in reversed(items)]

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)
