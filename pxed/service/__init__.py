"""The application layer (see :mod:`pxed.service.core`): what every adapter talks to."""

from __future__ import annotations

from pxed.service.clients import ClientRecord, ClientTracker
from pxed.service.core import ImportOptions, RecoveryReport, RuntimeStatus, Service
from pxed.service.events import Event, Events, JobInfo

__all__ = ["ClientRecord", "ClientTracker", "Event", "Events", "ImportOptions", "JobInfo", "RecoveryReport",
           "RuntimeStatus", "Service"]
