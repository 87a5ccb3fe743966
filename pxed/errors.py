"""The one error tree of pxed.

Library code raises these; the edges map them: the D-Bus layer to
``org.pxed.Pxed1.Error.<dbus_name>``, the command line tools to an exit code and
a message that says what to do next.  Anything that is not a :class:`PxedError`
is a bug and becomes ``org.pxed.Pxed1.Error.Internal`` / exit code 70.
"""

from __future__ import annotations

import os

# Exit codes follow sysexits.h where one fits.
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOINPUT = 66
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_OSERR = 71
EX_CANTCREAT = 73
EX_IOERR = 74
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78


class PxedError(Exception):
    """Base of every error pxed raises on purpose.

    ``hint`` tells the reader what to do next; it is shown after the message.
    """

    dbus_name = "Failed"
    exit_code = EX_SOFTWARE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message} ({self.hint})"
        return self.message


class ConfigError(PxedError):
    """A configuration file is invalid.  Carries file, line and key when known."""

    dbus_name = "InvalidConfig"
    exit_code = EX_CONFIG

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike[str] | None = None,
        line: int | None = None,
        key: str | None = None,
        hint: str | None = None,
    ) -> None:
        where = ""
        if path is not None:
            where = os.fspath(path)
            if line is not None:
                where += f":{line}"
            where += ": "
        if key:
            where += f"{key}: "
        super().__init__(where + message, hint=hint)
        self.path = os.fspath(path) if path is not None else None
        self.line = line
        self.key = key


class MalformedPacket(PxedError):
    """A datagram could not be decoded.  Never leaves the packet loop."""

    dbus_name = "MalformedPacket"
    exit_code = EX_DATAERR


class NotFound(PxedError):
    dbus_name = "NotFound"
    exit_code = EX_NOINPUT


class InvalidName(PxedError):
    dbus_name = "InvalidName"
    exit_code = EX_USAGE


class InvalidArgument(PxedError):
    dbus_name = "InvalidArgument"
    exit_code = EX_USAGE


class AccessDenied(PxedError):
    dbus_name = "AccessDenied"
    exit_code = EX_NOPERM


class Busy(PxedError):
    dbus_name = "Busy"
    exit_code = EX_TEMPFAIL


class Cancelled(PxedError):
    dbus_name = "Cancelled"
    exit_code = EX_TEMPFAIL


class ImageError(PxedError):
    """Base of the errors of image import and removal."""

    dbus_name = "InvalidImage"
    exit_code = EX_DATAERR


class NotAnIso(ImageError):
    dbus_name = "NotAnIso"
    exit_code = EX_DATAERR


class UnknownLayout(ImageError):
    dbus_name = "UnknownLayout"
    exit_code = EX_DATAERR


class InvalidImage(ImageError):
    """The ISO is hostile or inconsistent (escaping names, lies about sizes...)."""

    dbus_name = "InvalidImage"
    exit_code = EX_DATAERR


class Exists(ImageError):
    dbus_name = "Exists"
    exit_code = EX_CANTCREAT


class NoSpace(ImageError):
    dbus_name = "NoSpace"
    exit_code = EX_CANTCREAT


class TooLarge(ImageError):
    dbus_name = "TooLarge"
    exit_code = EX_DATAERR


class ImageIOError(ImageError):
    dbus_name = "IOError"
    exit_code = EX_IOERR


class SocketError(PxedError):
    """The UDP sockets could not be bound or are not what pxed.socket should pass."""

    dbus_name = "SocketError"
    exit_code = EX_OSERR


class CatalogError(PxedError):
    """The image catalog on disk is invalid (or a record would make it so)."""

    dbus_name = "CatalogCorrupt"
    exit_code = EX_DATAERR


class ToolError(PxedError):
    """A required external program or installed file is missing or failed."""

    dbus_name = "ToolError"
    exit_code = EX_UNAVAILABLE


class MissingPackage(ToolError):
    """A file pxed needs is not installed; the message names the package."""

    dbus_name = "MissingPackage"


def all_errors() -> list[type[PxedError]]:
    """Every error class, for the D-Bus and exit-code tables and their tests."""
    seen: list[type[PxedError]] = []
    todo: list[type[PxedError]] = [PxedError]
    while todo:
        cls = todo.pop()
        seen.append(cls)
        todo.extend(cls.__subclasses__())
    return seen
