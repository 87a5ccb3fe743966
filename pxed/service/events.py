"""What the application layer announces, and the hub adapters subscribe to.

Events are published on the event loop's thread (work done in worker threads comes
back to it first), synchronously and in order; a subscriber that raises is logged and
the others still run.  The D-Bus adapter turns them into signals and PropertiesChanged,
the daemon into sd_notify and its boot policy.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pxed.config import Config
from pxed.errors import PxedError
from pxed.images.catalog import Detection
from pxed.model import JobState

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class JobInfo:
    """A snapshot of one import job."""

    id: int
    name: str  # "" until the ISO named it
    state: JobState
    done: int
    total: int
    owner: str  # who asked for it (a D-Bus unique name), "" when unknown
    detection: Detection | None = None


@dataclass(frozen=True, slots=True)
class ImageAdded:
    id: str
    title: str


@dataclass(frozen=True, slots=True)
class ImageRemoved:
    id: str


@dataclass(frozen=True, slots=True)
class MenusReloaded:
    pass


@dataclass(frozen=True, slots=True)
class ClientSeen:
    mac: str
    arch: int
    stage: str
    boot_file: str


@dataclass(frozen=True, slots=True)
class JobAdded:
    job: JobInfo


@dataclass(frozen=True, slots=True)
class JobChanged:
    job: JobInfo


@dataclass(frozen=True, slots=True)
class JobRemoved:
    job: JobInfo
    error: PxedError | None  # None: done, or an internal error when the state is FAILED


@dataclass(frozen=True, slots=True)
class StatusChanged:
    """Announced status values that changed: "Interface", "Address", "State", "ImageCount"."""

    changed: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Reloading:
    pass


@dataclass(frozen=True, slots=True)
class Reloaded:
    config: Config


@dataclass(frozen=True, slots=True)
class ReloadFailed:
    error: PxedError


Event = (ImageAdded | ImageRemoved | MenusReloaded | ClientSeen | JobAdded | JobChanged | JobRemoved | StatusChanged
         | Reloading | Reloaded | ReloadFailed)
Subscriber = Callable[[Event], None]


class Events:
    """The hub: subscribe once, receive every event."""

    def __init__(self) -> None:
        self._subscribers: tuple[Subscriber, ...] = ()

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        """Add ``fn``; returns the function that removes it again."""
        self._subscribers = (*self._subscribers, fn)

        def unsubscribe() -> None:
            self._subscribers = tuple(s for s in self._subscribers if s is not fn)

        return unsubscribe

    def publish(self, event: Event) -> None:
        for fn in self._subscribers:
            try:
                fn(event)
            except Exception:  # one adapter's bug must not stop the others, or the service
                logger.exception("event subscriber failed on %s", type(event).__name__)
