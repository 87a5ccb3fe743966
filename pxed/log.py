"""Logging setup: the only module that adds handlers.

Under systemd (``JOURNAL_STREAM`` set, or journald's socket present) records go to
the journal through systemd-python's JournalHandler, so structured fields passed
as ``extra={"CLIENT_MAC": ...}`` become journal fields and
``journalctl -u pxed CLIENT_MAC=...`` finds one machine's boot.  Otherwise they go
to stderr, with the same fields appended as ``KEY=value`` so nothing is lost.

Field names must be upper case (journald drops others); :data:`FIELDS` lists the
ones pxed uses.

:class:`InfoLine` is ``logger.info(message, extra=fields)`` for the one line per
answered DHCP exchange, made ready once per kind of exchange: with the handler
:func:`setup_logging` installed it writes the same text (stderr) or the same journal entry
(native protocol, one datagram) without going through a LogRecord, which was half of the
daemon's per-packet Python time.  :func:`info_fields` is the same for a one-off line.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import socket
import struct
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
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
        self._with_time = with_time

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        """The stock format, with the strftime() part made once per second (a line per DHCP exchange)."""
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        return self._time(record.created, record.msecs)

    def _time(self, created: float, msecs: float) -> str:
        second = int(created)
        if self._second[0] != second:
            self._second = (second, time.strftime(self.default_time_format, self.converter(created)))
        msec = self.default_msec_format
        return msec % (self._second[1], msecs) if msec else self._second[1]

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        return self._with_fields(text, record.__dict__)

    @staticmethod
    def _with_fields(text: str, attrs: Mapping[str, Any]) -> str:
        fields = [f"{k}={attrs[k]}" for k in FIELDS if attrs.get(k) not in (None, "")]
        return f"{text} [{' '.join(fields)}]" if fields else text

    def info_head(self, created: float, name: str) -> str:
        """The text before the message of an INFO line logged at `created` by logger `name`."""
        if self._with_time:
            # LogRecord's msecs, so the text is the same as through logging
            return f"{self._time(created, int((created - int(created)) * 1000) + 0.0)} INFO {name}: "
        return "INFO: "


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
    global _direct
    _direct = _JournalWriter(handler, identifier) if chosen == "journal" else \
        _StderrWriter(handler) if isinstance(handler, logging.StreamHandler) and \
        isinstance(handler.formatter, FieldsFormatter) else None
    return chosen


class _StderrWriter:
    def __init__(self, handler: logging.StreamHandler[Any]) -> None:
        self.handler = handler
        assert isinstance(handler.formatter, FieldsFormatter)
        self.formatter: FieldsFormatter = handler.formatter

    def write_line(self, line: InfoLine, message: str, values: Sequence[str], caller: FrameType) -> bool:
        h = self.handler
        self._put(f"{self.formatter.info_head(time.time(), line.logger.name)}{message}"
                  f"{line.stderr_fields(values)}{h.terminator}")
        return True

    def _put(self, line: str) -> None:
        h = self.handler
        with h.lock or contextlib.nullcontext():  # what h.acquire()/h.release() do, without two calls
            h.stream.write(line)
            h.stream.flush()


_LE64 = struct.Struct("<Q")


def _journal_field(key: str, value: str) -> bytes:
    """One field in journald's native protocol: KEY=value, or the length-prefixed form for multi-line values."""
    if "\n" in value:
        raw = value.encode()
        return key.encode() + b"\n" + _LE64.pack(len(raw)) + raw + b"\n"
    return f"{key}={value}\n".encode()


class _JournalWriter:
    """The journal entry :func:`lean_journal_handler` makes of an INFO record, as one datagram.

    Same fields (but CODE_ARGS: the message comes formatted): MESSAGE, PRIORITY, LOGGER,
    THREAD_NAME, PROCESS_NAME, CODE_FILE/LINE/FUNC, SYSLOG_IDENTIFIER and the given ones.
    A datagram journald refuses (too large, socket gone) goes through the handler instead,
    which falls back to a memfd as sd_journal_sendv does.

    The socket does not block: when journald's queue is full (it is not keeping up with a
    flood of requests) the line is dropped rather than the DHCP loop stalled, as dnsmasq's
    log-async does, and a warning entry says how many were lost once the queue has room.
    """

    def __init__(self, handler: logging.Handler, identifier: str) -> None:
        self.handler = handler
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()  # the socket is made once, by whichever thread logs first
        self._constant = (f"PRIORITY={handler.map_priority(logging.INFO)}\n"  # type: ignore[attr-defined]
                          f"SYSLOG_IDENTIFIER={identifier}\n").encode()
        self._per_logger: dict[tuple[str, str, str], bytes] = {}
        self._identifier = identifier
        self.dropped = 0  # lines lost to a full journald queue since the last report

    def _socket(self) -> socket.socket:
        with self._lock:
            if self._sock is None:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC | socket.SOCK_NONBLOCK)
                try:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
                    s.connect(os.fspath(JOURNAL_SOCKET))
                except OSError:
                    s.close()
                    raise
                self._sock = s
            return self._sock

    def write_line(self, line: InfoLine, message: str, values: Sequence[str], caller: FrameType) -> bool:
        return self._send(b"".join((self._head(line.logger.name), _journal_field("MESSAGE", message),
                                    line.journal_code(caller), line.journal_fields(values))))

    def _head(self, name: str) -> bytes:
        thread = threading.current_thread().name
        mp = sys.modules.get("multiprocessing")  # as LogRecord does
        key = (name, thread, mp.current_process().name if mp is not None else "MainProcess")
        head = self._per_logger.get(key)
        if head is None:
            head = self._per_logger[key] = self._constant + b"".join(
                _journal_field(k, v) for k, v in (("LOGGER", name), ("THREAD_NAME", thread),
                                                  ("PROCESS_NAME", key[2])))
        return head

    def _send(self, data: bytes) -> bool:
        try:
            sock = self._sock or self._socket()
            if self.dropped:
                sock.send(f"PRIORITY=4\nSYSLOG_IDENTIFIER={self._identifier}\nLOGGER={__name__}\n"
                          f"MESSAGE={self.dropped} log lines dropped: the journal was not keeping up\n"
                          f"LINES_DROPPED={self.dropped}\n".encode())
                self.dropped = 0
            sock.send(data)
        except BlockingIOError:
            self.dropped += 1
            return True
        except OSError:
            with self._lock:
                if self._sock is not None:
                    self._sock.close()
                    self._sock = None  # reconnect next time (journald restarted)
            return False
        return True


_direct: _StderrWriter | _JournalWriter | None = None


def info_fields(logger: logging.Logger, message: str, fields: Mapping[str, str]) -> None:
    """``logger.info("%s", message, extra=fields)``, written directly when nothing else would see the record.

    The direct path is taken when the handler :func:`setup_logging` installed is the root's
    only handler, unfiltered beyond its own filter, and `logger` and its parents add no
    handlers or filters of their own; the line or journal entry is then the same.  Field
    names must be upper case and values strings.  For a line logged again and again, make
    an :class:`InfoLine` once instead.
    """
    InfoLine(logger, (message,), fields)._log((), depth=2)


class InfoLine:
    """An INFO line logged many times with only a few values changing, made ready once.

    The line per answered DHCP exchange is the same but for the client's MAC, UUID and
    address, so its text and fields are put together when the kind of exchange is first
    seen and only those values are filled in per call.  `message` is a sequence of text
    and value indexes; in `fields` a value is either its text or the index of a per-call
    value.  ``line.info(values)`` logs what ``info_fields(logger, message, fields)`` would,
    with each index replaced by ``values[index]``: the same stderr text or journal entry,
    and a plain ``logger.info`` record when something else listens too.
    """

    __slots__ = ("logger", "_message", "_fields", "_variable", "_stderr", "_journal_constant", "_code")

    def __init__(self, logger: logging.Logger, message: Sequence[str | int], fields: Mapping[str, str | int]) -> None:
        self.logger = logger
        self._message = "".join(p.replace("{", "{{").replace("}", "}}") if isinstance(p, str) else f"{{{p}}}"
                                for p in message)
        self._fields = dict(fields)
        self._variable = tuple((k, v) for k, v in fields.items() if isinstance(v, int))
        # stderr: the fields FieldsFormatter prints (FIELDS order, empty ones left out), each
        # as " KEY=value"; a per-call value becomes a {n} the call fills with its part or "".
        stderr: list[str] = []
        slots: list[tuple[str, int]] = []
        for key in (k for k in FIELDS if k in fields):
            v = fields[key]
            if isinstance(v, int):
                stderr.append(f"{{{len(slots)}}}")
                slots.append((f" {key}=", v))
            elif v:
                stderr.append(f" {key}={v}".replace("{", "{{").replace("}", "}}"))
        self._stderr = ("".join(stderr), tuple(slots))
        self._journal_constant = b"".join(_journal_field(k, v) for k, v in fields.items() if isinstance(v, str))
        self._code: dict[tuple[object, int], bytes] = {}

    def message(self, values: Sequence[str]) -> str:
        return self._message.format(*values)

    def fields(self, values: Sequence[str]) -> dict[str, str]:
        return {k: values[v] if isinstance(v, int) else v for k, v in self._fields.items()}

    def stderr_fields(self, values: Sequence[str]) -> str:
        """What FieldsFormatter appends to the message: ` [KEY=value ...]`, or nothing when every field is empty."""
        fmt, slots = self._stderr
        text = fmt.format(*[key + values[i] if values[i] else "" for key, i in slots])
        return f" [{text[1:]}]" if text else ""

    def journal_fields(self, values: Sequence[str]) -> bytes:
        return self._journal_constant + b"".join(_journal_field(k, values[i]) for k, i in self._variable)

    def journal_code(self, caller: FrameType) -> bytes:
        code, line = caller.f_code, caller.f_lineno
        got = self._code.get((code, line))
        if got is None:
            if len(self._code) >= 64:
                self._code.clear()
            got = self._code[(code, line)] = \
                f"CODE_FILE={code.co_filename}\nCODE_LINE={line}\nCODE_FUNC={code.co_name}\n".encode()
        return got

    def info(self, values: Sequence[str]) -> None:
        self._log(values, depth=2)

    def _log(self, values: Sequence[str], depth: int) -> None:
        """Log for the caller `depth` frames up (its CODE_* fields, its LogRecord location)."""
        logger = self.logger
        if not logger.isEnabledFor(logging.INFO):
            return
        message = self._message.format(*values)
        direct = _direct
        if direct is not None and _plain(logger, direct.handler):
            try:
                if direct.write_line(self, message, values, sys._getframe(depth)):
                    return
            except Exception:  # whatever it was, logging's own path reports it
                pass
        logger.info("%s", message, extra=self.fields(values), stacklevel=depth + 1)


def _plain(logger: logging.Logger, handler: logging.Handler) -> bool:
    root = logging.root
    handlers = root.handlers
    if len(handlers) != 1 or handlers[0] is not handler or root.filters or len(handler.filters) != 1 \
            or handler.level > logging.INFO:
        return False
    node: logging.Logger | None = logger
    while node is not None and node is not root:
        if node.handlers or node.filters or not node.propagate:
            return False
        node = node.parent
    return True


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
