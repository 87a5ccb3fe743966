"""The exported D-Bus objects: org.pxed.Pxed1.Manager and org.pxed.Pxed1.Job.

Thin: each method converts D-Bus values, asks the :class:`Controller` (the server) to
act, and converts the result back.  Every exported method goes through
:func:`exported`, the one place where errors become D-Bus errors: a
:class:`~pxed.errors.PxedError` becomes ``org.pxed.Pxed1.Error.<dbus_name>`` with its
message, anything else is logged and becomes ``org.pxed.Pxed1.Error.Internal``
("internal error"), so no traceback ever reaches a caller (dbus-fast 1.84 would send
one).

D-Bus signatures are attached as ``__signature__`` string annotations (what dbus-fast
reads) instead of being written as annotations, so the Python annotations stay real
types for mypy and ruff, and the code runs on dbus-fast 1.84 and 5.x alike.
"""

from __future__ import annotations

import contextvars
import enum
import functools
import inspect
import logging
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from dbus_fast import DBusError, Message, MessageFlag, PropertyAccess, Variant
from dbus_fast.service import ServiceInterface, dbus_property, method, signal

from pxed.dbus.names import INTERNAL_ERROR, JOB_INTERFACE, MANAGER_INTERFACE, JobState, error_name
from pxed.errors import InvalidArgument, PxedError

logger = logging.getLogger(__name__)

CURRENT_MESSAGE: contextvars.ContextVar[Message | None] = contextvars.ContextVar("pxed_dbus_message", default=None)

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- caller identity


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent the method call being served."""

    sender: str
    interactive: bool  # the caller allows interactive authorization (a polkit agent may ask)


def current_caller() -> Caller:
    msg = CURRENT_MESSAGE.get()
    if msg is None or not msg.sender:
        raise PxedError("cannot tell who sent this call")
    flags = int(msg.flags.value) if hasattr(msg.flags, "value") else int(msg.flags)
    return Caller(msg.sender, bool(flags & MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION.value))


# --------------------------------------------------------------------------- decorators


def _dbus_signature(fn: Callable[..., Any], args: Mapping[str, str], returns: str) -> inspect.Signature:
    params = list(inspect.signature(fn).parameters.values())
    names = [p.name for p in params[1:]]
    if sorted(names) != sorted(args):
        raise TypeError(f"{fn.__name__}: D-Bus signatures given for {sorted(args)}, parameters are {names}")
    return inspect.Signature(
        [params[0].replace(annotation=inspect.Parameter.empty)]
        + [inspect.Parameter(n, inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=args[n]) for n in names],
        return_annotation=returns or inspect.Signature.empty,
    )


def to_dbus_error(err: BaseException, member: str) -> DBusError:
    if isinstance(err, DBusError):
        return err
    if isinstance(err, PxedError):
        return DBusError(error_name(err), str(err))
    logger.error("D-Bus method %s failed", member, exc_info=err)
    return DBusError(INTERNAL_ERROR, "internal error")


def exported(member: str, /, *, returns: str = "", **args: str) -> Callable[[F], F]:
    """Export an ``async def`` as D-Bus method ``member`` with per-argument signatures."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        async def wrapper(self: Any, *a: Any) -> Any:
            try:
                return await fn(self, *a)
            except Exception as e:  # the boundary: nothing but DBusError leaves
                raise to_dbus_error(e, member) from None

        wrapper.__signature__ = _dbus_signature(fn, args, returns)  # type: ignore[attr-defined]
        del wrapper.__wrapped__
        return cast(F, method(name=member)(wrapper))

    return decorate


def exported_property(name: str, sig: str) -> Callable[[Callable[[Any], Any]], Any]:
    """A read-only D-Bus property; the getter must not raise (it is served from state in memory)."""

    def decorate(fn: Callable[[Any], Any]) -> Any:
        @functools.wraps(fn)
        def getter(self: Any) -> Any:
            try:
                return fn(self)
            except Exception as e:
                raise to_dbus_error(e, name) from None

        getter.__signature__ = _dbus_signature(fn, {}, sig)  # type: ignore[attr-defined]
        del getter.__wrapped__
        return dbus_property(access=PropertyAccess.READ, name=name)(getter)

    return decorate


def exported_signal(name: str, sig: str = "") -> Callable[[F], F]:
    """A D-Bus signal; calling the method emits it.  Multiple values are returned as a list."""

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def body(self: Any, *a: Any) -> Any:
            return fn(self, *a)

        params = list(inspect.signature(fn).parameters.values())
        body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [p.replace(annotation=inspect.Parameter.empty) for p in params],
            return_annotation=sig or inspect.Signature.empty)
        del body.__wrapped__
        return cast(F, signal(name=name)(body))

    return decorate


# --------------------------------------------------------------------------- value conversion


def variant(value: Any) -> Variant:
    """Python → Variant by a fixed rule: str s, bool b, int x, float d, lists of str as, of dicts aa{sv}."""
    if isinstance(value, Variant):
        return value
    if isinstance(value, enum.Enum):
        value = value.value
    if isinstance(value, bool):
        return Variant("b", value)
    if isinstance(value, int):
        return Variant("x", value)
    if isinstance(value, float):
        return Variant("d", value if math.isfinite(value) else 0.0)
    if isinstance(value, str):
        return Variant("s", value)
    if isinstance(value, Mapping):
        return Variant("a{sv}", to_vardict(value))
    if isinstance(value, list | tuple):
        if all(isinstance(v, str) for v in value):
            return Variant("as", list(value))
        if all(isinstance(v, Mapping) for v in value):
            return Variant("aa{sv}", [to_vardict(v) for v in value])
        return Variant("av", [variant(v) for v in value])
    raise TypeError(f"no D-Bus mapping for {type(value).__name__}")


def to_vardict(d: Mapping[str, Any]) -> dict[str, Variant]:
    """A dict for a{sv}; keys whose value is None are left out (D-Bus has no null)."""
    return {str(k): variant(v) for k, v in d.items() if v is not None}


def unvariant(value: Any) -> Any:
    """Variant trees → plain Python values (for options received from callers)."""
    if isinstance(value, Variant):
        return unvariant(value.value)
    if isinstance(value, dict):
        return {k: unvariant(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [unvariant(v) for v in value]
    return value


def option(options: Mapping[str, Variant], key: str, sig: str) -> Any:
    """One typed entry of an a{sv} options argument, or None when absent."""
    v = options.get(key)
    if v is None:
        return None
    if not isinstance(v, Variant) or v.signature != sig:
        got = v.signature if isinstance(v, Variant) else type(v).__name__
        raise InvalidArgument(f"option {key!r} must have type {sig!r}, got {got!r}")
    return v.value


# --------------------------------------------------------------------------- the controller


class Controller(Protocol):
    """What the exported objects ask of the server (implemented by :class:`pxed.dbus.server.DBusServer`)."""

    def prop_interface(self) -> str: ...
    def prop_address(self) -> str: ...
    def prop_state(self) -> str: ...
    def prop_image_count(self) -> int: ...
    async def add_image(self, caller: Caller, fd: int, name: str, options: dict[str, Variant]) -> str: ...
    async def remove_image(self, caller: Caller, name: str) -> None: ...
    async def reload(self, caller: Caller) -> None: ...
    async def cancel_job(self, caller: Caller, job: JobObject) -> None: ...
    def list_images(self) -> list[dict[str, Variant]]: ...
    def get_image(self, name: str) -> dict[str, Variant]: ...
    def status(self) -> dict[str, Variant]: ...
    def list_clients(self) -> list[dict[str, Variant]]: ...
    def list_jobs(self) -> list[dict[str, Variant]]: ...


class ManagerObject(ServiceInterface):
    """org.pxed.Pxed1.Manager at /org/pxed/Pxed1."""

    def __init__(self, controller: Controller) -> None:
        super().__init__(MANAGER_INTERFACE)
        self._c = controller

    # ---------------------------------------------------------------- changing methods (polkit)
    @exported("AddImage", fd="h", name="s", options="a{sv}", returns="o")
    async def add_image(self, fd: int, name: str, options: dict[str, Variant]) -> str:
        return await self._c.add_image(current_caller(), fd, name, options)

    @exported("RemoveImage", name="s")
    async def remove_image(self, name: str) -> None:
        await self._c.remove_image(current_caller(), name)

    @exported("Reload")
    async def reload(self) -> None:
        await self._c.reload(current_caller())

    # ---------------------------------------------------------------- reads (snapshots)
    @exported("ListImages", returns="aa{sv}")
    async def list_images(self) -> list[dict[str, Variant]]:
        return self._c.list_images()

    @exported("GetImage", name="s", returns="a{sv}")
    async def get_image(self, name: str) -> dict[str, Variant]:
        return self._c.get_image(name)

    @exported("GetStatus", returns="a{sv}")
    async def get_status(self) -> dict[str, Variant]:
        return self._c.status()

    @exported("ListClients", returns="aa{sv}")
    async def list_clients(self) -> list[dict[str, Variant]]:
        return self._c.list_clients()

    @exported("ListJobs", returns="aa{sv}")
    async def list_jobs(self) -> list[dict[str, Variant]]:
        return self._c.list_jobs()

    # ---------------------------------------------------------------- properties
    @exported_property("Interface", "s")
    def interface(self) -> str:
        return self._c.prop_interface()

    @exported_property("Address", "s")
    def address(self) -> str:
        return self._c.prop_address()

    @exported_property("Version", "s")
    def version(self) -> str:
        from pxed import __version__

        return __version__

    @exported_property("State", "s")
    def state(self) -> str:
        return self._c.prop_state()

    @exported_property("ImageCount", "u")
    def image_count(self) -> int:
        return self._c.prop_image_count()

    # ---------------------------------------------------------------- signals
    @exported_signal("ImageAdded", "ss")
    def image_added(self, name: str, title: str) -> list[str]:
        return [name, title]

    @exported_signal("ImageRemoved", "s")
    def image_removed(self, name: str) -> str:
        return name

    @exported_signal("MenusReloaded")
    def menus_reloaded(self) -> None:
        return None

    @exported_signal("ClientSeen", "sqss")
    def client_seen(self, mac: str, arch: int, stage: str, boot_file: str) -> list[Any]:
        return [mac, arch, stage, boot_file]

    @exported_signal("JobNew", "uo")
    def job_new(self, job_id: int, path: str) -> list[Any]:
        return [job_id, path]

    @exported_signal("JobRemoved", "uossss")
    def job_removed(self, job_id: int, path: str, result: str, name: str, error: str, message: str) -> list[Any]:
        return [job_id, path, result, name, error, message]


class JobObject(ServiceInterface):
    """org.pxed.Pxed1.Job at /org/pxed/Pxed1/job/N: one import, exported while it is queued or running."""

    def __init__(self, controller: Controller, job_id: int, path: str, name: str, total: int, owner: str) -> None:
        super().__init__(JOB_INTERFACE)
        self._c = controller
        self.job_id = job_id
        self.path = path
        self.image_name = name  # not .name: ServiceInterface keeps its interface name there
        self.owner = owner
        self.job_state = JobState.QUEUED
        self.done = 0
        self.total = total
        self.detection: dict[str, Variant] = {}

    def update(self, **changes: Any) -> None:
        """Change fields and tell watchers (PropertiesChanged)."""
        props: dict[str, Any] = {}
        for key, value in changes.items():
            if getattr(self, key) == value:
                continue
            setattr(self, key, value)
            props[_JOB_PROPS[key]] = value.value if isinstance(value, enum.Enum) else value
        if props:
            self.emit_properties_changed(props)

    @exported("Cancel")
    async def cancel(self) -> None:
        await self._c.cancel_job(current_caller(), self)

    @exported_property("Id", "u")
    def id_(self) -> int:
        return self.job_id

    @exported_property("Name", "s")
    def name_(self) -> str:
        return self.image_name

    @exported_property("State", "s")
    def state_(self) -> str:
        return self.job_state.value

    @exported_property("Progress", "t")
    def progress_(self) -> int:
        return self.done

    @exported_property("Total", "t")
    def total_(self) -> int:
        return self.total

    @exported_property("Detection", "a{sv}")
    def detection_(self) -> dict[str, Variant]:
        return self.detection


_JOB_PROPS = {"image_name": "Name", "job_state": "State", "done": "Progress", "total": "Total",
              "detection": "Detection"}

