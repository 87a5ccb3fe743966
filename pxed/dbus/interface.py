"""D-Bus plumbing for the exported objects (:mod:`pxed.dbus.server`): decorators and value conversion.

Every exported method goes through :func:`exported`, the one place where a call is
authorized (polkit, before anything else happens; a denied call's file descriptors are
closed) and where errors become D-Bus errors: a
:class:`~pxed.errors.PxedError` becomes ``org.pxed.Pxed1.Error.<dbus_name>`` with its
message, anything else is logged and becomes ``org.pxed.Pxed1.Error.Internal``
("internal error"), so no traceback ever reaches a caller (dbus-fast 1.84 would send
one).

D-Bus signatures are attached as ``__signature__`` string annotations (what dbus-fast
reads) instead of being written as annotations, so the Python annotations stay real
types for mypy and ruff, and the code runs on dbus-fast 1.84 and 5.x alike.
"""

from __future__ import annotations

import contextlib
import contextvars
import enum
import functools
import inspect
import logging
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

from dbus_fast import DBusError, Message, MessageFlag, PropertyAccess, Variant
from dbus_fast.service import dbus_property, method, signal

from pxed.dbus.names import INTERNAL_ERROR, Action, error_name
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


class Authorizing(Protocol):
    """An exported object whose changing methods are authorized per call."""

    async def authorize(self, caller: Caller, action: Action) -> None: ...


def exported(member: str, /, *, returns: str = "", action: Action | None = None, **args: str) -> Callable[[F], F]:
    """Export an ``async def`` as D-Bus method ``member`` with per-argument signatures.

    With ``action`` the caller is authorized first (``self.authorize``); when that fails,
    the call's file descriptors (arguments of type "h") are closed and nothing else runs.
    """

    def decorate(fn: F) -> F:
        order = list(inspect.signature(fn).parameters)[1:]
        fd_positions = [order.index(name) for name, sig in args.items() if sig == "h"]

        @functools.wraps(fn)
        async def wrapper(self: Any, *a: Any) -> Any:
            try:
                if action is not None:
                    try:
                        await cast(Authorizing, self).authorize(current_caller(), action)
                    except BaseException:
                        for i in fd_positions:
                            with contextlib.suppress(OSError):
                                os.close(a[i])
                        raise
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


def option(options: Mapping[str, Variant], key: str, sig: str) -> Any:
    """One typed entry of an a{sv} options argument, or None when absent."""
    v = options.get(key)
    if v is None:
        return None
    if not isinstance(v, Variant) or v.signature != sig:
        got = v.signature if isinstance(v, Variant) else type(v).__name__
        raise InvalidArgument(f"option {key!r} must have type {sig!r}, got {got!r}")
    return v.value
