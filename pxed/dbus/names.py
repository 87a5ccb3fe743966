"""Names of pxed's D-Bus API, shared by the service and pxectl.  No D-Bus library imports here."""

from __future__ import annotations

import enum

from pxed.errors import AccessDenied, PxedError, all_errors

BUS_NAME = "org.pxed.Pxed1"
OBJECT_PATH = "/org/pxed/Pxed1"
MANAGER_INTERFACE = "org.pxed.Pxed1.Manager"
JOB_INTERFACE = "org.pxed.Pxed1.Job"
JOB_PATH_PREFIX = "/org/pxed/Pxed1/job/"
ERROR_PREFIX = "org.pxed.Pxed1.Error."
INTERNAL_ERROR = ERROR_PREFIX + "Internal"

# Errors of the bus itself that a client maps onto pxed's tree.
DBUS_ACCESS_DENIED = "org.freedesktop.DBus.Error.AccessDenied"
DBUS_UNAVAILABLE = frozenset({
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.NoReply",
    "org.freedesktop.DBus.Error.Disconnected",
    "org.freedesktop.DBus.Error.Spawn.ChildExited",
    "org.freedesktop.DBus.Error.Spawn.Failed",
    "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
    "org.freedesktop.systemd1.LoadFailed",
    "org.freedesktop.systemd1.UnitMasked",
})


class Action(enum.StrEnum):
    """polkit actions (packaging/polkit/org.pxed.Pxed1.policy); one per verb."""

    READ = "org.pxed.pxed1.read"
    IMPORT = "org.pxed.pxed1.import"
    REMOVE = "org.pxed.pxed1.remove"
    RELOAD = "org.pxed.pxed1.reload"

    @property
    def allowed_without_polkit(self) -> bool:
        """What holds for a non-root caller when no polkit authority runs: reads only."""
        return self is Action.READ


def error_name(err: PxedError) -> str:
    """The D-Bus error name of a pxed error."""
    return ERROR_PREFIX + type(err).dbus_name


def _error_table() -> dict[str, type[PxedError]]:
    table: dict[str, type[PxedError]] = {}
    # Most general first: a subclass that defines the same name as its parent wins (ImageError and
    # InvalidImage both say "InvalidImage"; a client gets InvalidImage), one that inherits it does not.
    for cls in sorted(all_errors(), key=lambda c: len(c.__mro__)):
        if "dbus_name" in cls.__dict__ or cls is PxedError:
            table[ERROR_PREFIX + cls.dbus_name] = cls
    table[DBUS_ACCESS_DENIED] = AccessDenied
    return table


ERRORS: dict[str, type[PxedError]] = _error_table()


def error_class(name: str) -> type[PxedError] | None:
    """The PxedError class behind a D-Bus error name, or None for names pxed does not define."""
    return ERRORS.get(name)
