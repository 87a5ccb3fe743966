"""Recent boots per client MAC, for ``pxectl clients`` and the D-Bus ListClients method.

Bounded: the least recently seen MACs are dropped beyond ``capacity``.  Thread-safe,
so the daemon may record from its packet loop while D-Bus reads a snapshot.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
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
        self._clients: OrderedDict[str, ClientRecord] = OrderedDict()

    def record(self, mac: str, arch: int, stage: str, boot_file: str, when: float) -> ClientRecord:
        mac = mac.lower()
        with self._lock:
            old = self._clients.pop(mac, None)
            rec = ClientRecord(mac, int(arch), stage, boot_file, when, old.count + 1 if old else 1)
            self._clients[mac] = rec
            while len(self._clients) > self.capacity:
                self._clients.popitem(last=False)
            return rec

    def recent(self) -> list[ClientRecord]:
        """One record per MAC, most recently seen first."""
        with self._lock:
            return list(reversed(self._clients.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._clients)
