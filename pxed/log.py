"""Logging setup: the only module that adds handlers.

Under systemd (``JOURNAL_STREAM`` set, or journald's socket present) records go to
the journal through systemd-python's JournalHandler, so structured fields passed
as ``extra={"CLIENT_MAC": ...}`` become journal fields and
``journalctl -u pxed CLIENT_MAC=...`` finds one machine's boot.  Otherwise they go
to stderr, with the same fields appended as ``KEY=value`` so nothing is lost.

Field names must be upper case (journald drops others); :data:`FIELDS` lists the
ones pxed uses.
"""

from __future__ import annotations

import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
FIELDS = ("CLIENT_MAC", "CLIENT_ARCH", "CLIENT_UUID", "PXE_STAGE", "BOOT_FILE", "CLIENT_IP",
          "LISTENER", "IFINDEX", "INTERFACE", "SERVER_ADDRESS", "IMAGE_ID", "REASON")

_LEVELS = {
    "emerg": logging.CRITICAL, "alert": logging.CRITICAL, "crit": logging.CRITICAL,
    "err": logging.ERROR, "error": logging.ERROR, "warning": logging.WARNING, "warn": logging.WARNING,
    "notice": logging.INFO, "info": logging.INFO, "debug": logging.DEBUG,
}


class FieldsFormatter(logging.Formatter):
    """stderr format: the message, then the structured fields the record carries."""

    def __init__(self, with_time: bool) -> None:
        fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s" if with_time else "%(levelname)s: %(message)s"
        super().__init__(fmt)
        self._second: tuple[int, str] = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """The stock format, with the strftime() part made once per second (a line per DHCP exchange)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        if self._second[0] != second:
            self._second = (second, time.strftime(self.default_time_format, self.converter(record.created)))
        msec = self.default_msec_format
        return msec % (self._second[1], record.msecs) if msec else self._second[1]

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        attrs = record.__dict__
        fields = [f"{k}={attrs[k]}" for k in FIELDS if attrs.get(k) not in (None, "")]
        return f"{text} [{' '.join(fields)}]" if fields else text


def level_from_env(default: int = logging.INFO) -> int:
    value = os.environ.get("PXED_LOG_LEVEL") or os.environ.get("SYSTEMD_LOG_LEVEL")
    if not value:
        return default
    return _LEVELS.get(value.strip().lower(), default)


def journal_available() -> bool:
    return bool(os.environ.get("JOURNAL_STREAM")) or JOURNAL_SOCKET.exists()


def setup_logging(*, debug: bool = False, target: str = "auto", identifier: str = "pxed") -> str:
    """Configure the root logger once; returns "journal" or "stderr" (what was chosen)."""
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.setLevel(logging.DEBUG if debug else level_from_env())
    handler: logging.Handler | None = None
    chosen = "stderr"
    if target in ("auto", "journal") and (target == "journal" or journal_available()):
        try:
            handler = lean_journal_handler(identifier)
            chosen = "journal"
        except ImportError:  # pragma: no cover - systemd-python is a hard dependency
            handler = None
    if handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(FieldsFormatter(with_time=not os.environ.get("INVOCATION_ID")))
    handler.addFilter(_quiet_libraries)
    root.addHandler(handler)
    return chosen


def _quiet_libraries(record: logging.LogRecord) -> bool:
    """pyroute2, dbus_fast and asyncio debug chatter is noise for an admin: keep warnings and up.

    pyroute2's tc module warns at import that /proc/net/psched is missing: the unit's
    ProcSubset=pid hides /proc/net, and pxed uses no traffic control, so that is dropped."""
    if record.name.startswith("pyroute2.netlink.rtnl.tcmsg"):
        return False
    if record.name.startswith(("pyroute2", "dbus_fast", "asyncio")):
        return record.levelno >= logging.WARNING
    return True


_JOURNAL_FIELD = re.compile(r"[A-Z][A-Z0-9_]{0,63}")  # what journald accepts from a client


def lean_journal_handler(identifier: str) -> logging.Handler:
    """systemd-python's JournalHandler, sending only the fields journald stores.

    The stock ``emit()`` passes all ~25 LogRecord attributes through keyword arguments and
    ``str()``, though journald keeps only upper-case field names; with one journal line per
    answered DHCP exchange that was the daemon's costliest step after the send itself.
    The entry journald stores is the same: MESSAGE, PRIORITY, LOGGER, THREAD_NAME,
    PROCESS_NAME, CODE_FILE/LINE/FUNC, CODE_ARGS, EXCEPTION_*, the handler's fields
    (SYSLOG_IDENTIFIER) and each upper-case ``extra=`` field.
    """
    from systemd.journal import JournalHandler, sendv

    class LeanJournalHandler(JournalHandler):  # type: ignore[misc]
        _valid: dict[str, bool] = {}

        def emit(self, record: logging.LogRecord) -> None:
            try:
                lines: list[Any] = [
                    "MESSAGE=" + self.format(record),
                    f"PRIORITY={self.map_priority(record.levelno)}",
                    "LOGGER=" + record.name,
                    f"THREAD_NAME={record.threadName}",
                    f"PROCESS_NAME={record.processName}",
                    f"CODE_FILE={record.pathname}",
                    f"CODE_LINE={record.lineno:d}",
                    f"CODE_FUNC={record.funcName}",
                ]
                fields: dict[str, Any] = dict(self._extra)
                if record.exc_text:
                    fields["EXCEPTION_TEXT"] = record.exc_text
                if record.exc_info:
                    fields["EXCEPTION_INFO"] = record.exc_info
                if record.args:
                    fields["CODE_ARGS"] = record.args
                valid = self._valid
                for key, value in record.__dict__.items():
                    ok = valid.get(key)
                    if ok is None:
                        ok = valid[key] = _JOURNAL_FIELD.fullmatch(key) is not None
                    if ok:
                        fields[key] = value
                for key, value in fields.items():
                    lines.append(key.encode() + b"=" + value if isinstance(value, bytes) else f"{key}={value}")
                sendv(*lines)
            except Exception:
                self.handleError(record)

    return LeanJournalHandler(SYSLOG_IDENTIFIER=identifier)
