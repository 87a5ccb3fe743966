"""Recent boots per client MAC (``pxectl clients``, ListClients), and the ClientSeen rate limit.

The tracker is bounded: the least recently seen MACs are dropped beyond ``capacity``.
Thread-safe, so the daemon may record from its packet loop while an adapter reads a
snapshot.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

logger = logging.getLogger(__name__)

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


class SeenLimiter:
    """At most ``per_second`` ClientSeen events a second.

    A flood of DHCP requests must not become a flood of signals (each costs more than
    answering the request did, and every subscriber as much again).  The tracker still
    records every exchange, so ListClients misses nothing; one log line a second says how
    many events were left out.
    """

    PER_SECOND = 200

    def __init__(self, per_second: int = PER_SECOND, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_second = per_second
        self._clock = clock
        self._window = (float("-inf"), 0)  # (start of the current second, events let through in it)
        self._unsent = 0

    def allow(self) -> bool:
        now = self._clock()
        start, sent = self._window
        if now - start >= 1.0:
            if self._unsent:
                logger.info("%d ClientSeen signals left out in the last second (at most %d a second are sent); "
                            "ListClients (pxectl clients) has every client", self._unsent, self.per_second)
                self._unsent = 0
            start, sent = now, 0
        if sent >= self.per_second:
            self._unsent += 1
            return False
        self._window = (start, sent + 1)
        return True
