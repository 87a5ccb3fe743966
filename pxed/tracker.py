"""Recent boots per client MAC, for `pxectl clients` and the D-Bus ListClients method."""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class ClientRecord:
    mac: str
    arch: int
    stage: str
    boot_file: str
    when: float  # seconds since the epoch
    count: int = 1

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class ClientTracker:
    """The latest exchange of each MAC, bounded (least recently seen MACs are dropped)."""

    def __init__(self, capacity: int = 4096) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._clients: OrderedDict[str, ClientRecord] = OrderedDict()

    def record(self, mac: str, arch: int, stage: str, boot_file: str, when: float) -> ClientRecord:
        with self._lock:
            old = self._clients.pop(mac, None)
            rec = ClientRecord(mac, arch, stage, boot_file, when, (old.count + 1) if old else 1)
            self._clients[mac] = rec
            while len(self._clients) > self.capacity:
                self._clients.popitem(last=False)
            return rec

    def recent(self) -> list[ClientRecord]:
        """Most recently seen first."""
        with self._lock:
            return list(reversed(self._clients.values()))

    def __len__(self) -> int:
        return len(self._clients)
