"""The sans-I/O core stays sans-I/O: pxed/dhcp imports only harmless stdlib modules and pxed's leaves."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO

DHCP = sorted((REPO / "pxed" / "dhcp").glob("*.py"))

# Pure-computation stdlib modules.  Deliberately absent: socket, asyncio, selectors, select,
# subprocess, os, threading, logging (a logger is fine, but the core decides and the daemon logs),
# time (the clock is passed in), and every third-party package (dbus_fast, pyroute2, jinja2, pycdlib).
STDLIB_ALLOWED = {
    "__future__", "collections", "collections.abc", "dataclasses", "enum", "ipaddress", "re", "struct",
    "types", "typing", "uuid",
}
PXED_ALLOWED = {"pxed.errors", "pxed.model", "pxed.config"} | {f"pxed.dhcp.{p.stem}" for p in DHCP} | {"pxed.dhcp"}


def imports(source: str, name: str = "<source>") -> set[str]:
    """Every module an `import`/`from ... import` names, anywhere in the file (also inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None, f"{name}: use absolute imports"
            found.add(node.module)
    return found


def disallowed(source: str, name: str = "<source>") -> set[str]:
    return {m for m in imports(source, name) if m not in STDLIB_ALLOWED and m not in PXED_ALLOWED}


def test_the_core_has_modules() -> None:
    assert {p.stem for p in DHCP} >= {"__init__", "options", "packet", "classify", "proxy"}


@pytest.mark.parametrize("path", DHCP, ids=[p.name for p in DHCP])
def test_dhcp_core_imports_only_the_allow_list(path: Path) -> None:
    bad = disallowed(path.read_text(), path.name)
    assert not bad, f"pxed/dhcp/{path.name} imports {sorted(bad)}"


def test_the_checker_would_catch_io() -> None:
    src = ("import socket\nfrom asyncio import run\nimport logging.handlers\n"
           "def f():\n    from pyroute2 import IPRoute\n")
    assert disallowed(src) == {"socket", "asyncio", "logging.handlers", "pyroute2"}
    assert disallowed("import struct\nfrom pxed.model import Firmware\n") == set()
