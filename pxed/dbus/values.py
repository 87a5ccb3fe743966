"""D-Bus values back to plain Python: the one Variant unwrapper (pxectl, tests)."""

from __future__ import annotations

from typing import Any

from dbus_fast import Variant


def plain(value: Any) -> Any:
    """Variants and their containers → plain JSON-able values (dict keys sorted)."""
    if isinstance(value, Variant):
        return plain(value.value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in sorted(value.items())}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value
