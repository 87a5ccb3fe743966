"""Per-call authorization of changing methods: root, or polkit's CheckAuthorization.

The subject is the caller's unique bus name (``system-bus-name``), not its pid, so a
caller cannot exit and have its pid reused between the check and the action.  Root
is allowed without asking polkit, as systemd's services do.  When no polkit authority
runs on the bus, non-root callers get only the actions marked
:attr:`~pxed.dbus.names.Action.allowed_without_polkit` (reads).
"""

from __future__ import annotations

import logging
from typing import Protocol

from dbus_fast import Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from pxed.dbus.names import Action
from pxed.errors import AccessDenied

logger = logging.getLogger(__name__)

POLKIT_NAME = "org.freedesktop.PolicyKit1"
POLKIT_PATH = "/org/freedesktop/PolicyKit1/Authority"
POLKIT_INTERFACE = "org.freedesktop.PolicyKit1.Authority"
ALLOW_USER_INTERACTION = 1
_NO_AUTHORITY = frozenset({
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
})

_VERBS = {
    Action.READ: "read pxed's state",
    Action.IMPORT: "import or cancel images",
    Action.REMOVE: "remove images",
    Action.RELOAD: "reload pxed's configuration",
}
DENIED_HINT = "run as root or a member of pxed-admin"


class Authorizer(Protocol):
    async def check(self, bus: MessageBus, sender: str, action: Action, *, interactive: bool) -> None:
        """Return if ``sender`` may do ``action``; raise :class:`~pxed.errors.AccessDenied` if not."""


async def caller_uid(bus: MessageBus, sender: str) -> int:
    reply = await bus.call(Message(
        destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
        member="GetConnectionUnixUser", signature="s", body=[sender]))
    if reply.message_type == MessageType.ERROR:
        raise AccessDenied(f"cannot identify the caller {sender}: {reply.error_name}")
    return int(reply.body[0])


class PolkitAuthorizer:
    """The production authorizer."""

    async def check(self, bus: MessageBus, sender: str, action: Action, *, interactive: bool) -> None:
        uid = await caller_uid(bus, sender)
        if uid == 0:
            return
        reply = await bus.call(Message(
            destination=POLKIT_NAME, path=POLKIT_PATH, interface=POLKIT_INTERFACE, member="CheckAuthorization",
            signature="(sa{sv})sa{ss}us",
            body=[["system-bus-name", {"name": Variant("s", sender)}], action.value, {},
                  ALLOW_USER_INTERACTION if interactive else 0, ""]))
        what = _VERBS[action]
        if reply.message_type == MessageType.ERROR:
            if reply.error_name in _NO_AUTHORITY:
                if action.allowed_without_polkit:
                    return
                logger.warning("polkit is not running; refusing %s for uid %d (only root may)", action, uid)
                raise AccessDenied(f"not authorized to {what}: polkit is not running, so only root may",
                                   hint=DENIED_HINT)
            detail = reply.body[0] if reply.body else ""
            logger.warning("polkit check of %s for uid %d failed: %s %s", action, uid, reply.error_name, detail)
            raise AccessDenied(f"not authorized to {what}: polkit check failed ({reply.error_name})",
                               hint=DENIED_HINT)
        authorized, challenge, _details = reply.body[0]
        if authorized:
            return
        logger.info("uid %d denied %s%s", uid, action, " (authentication required)" if challenge else "")
        if challenge:
            raise AccessDenied(f"not authorized to {what}: authentication is required",
                               hint=DENIED_HINT + ", or allow interactive authentication with a polkit agent")
        raise AccessDenied(f"not authorized to {what}", hint=DENIED_HINT)
