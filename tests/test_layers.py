"""The layering of docs/architecture.md, enforced on every module's imports (also those inside
functions and ``if TYPE_CHECKING:`` blocks).

- ``pxed/dhcp/``, the sans-I/O core, imports only pure stdlib modules and pxed's leaves;
- the loaders and the menu model do no I/O but writing their own output (jinja2 is theirs);
- ``pxed/dbus/`` talks to the application layer (``pxed.service``) only;
- pxectl (``pxed/cli.py``) imports nothing of the daemon, service, io, images or dhcp;
- the application layer and the image code never reach for an adapter;
- only the daemon (the composition root) imports the adapters.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

import pytest

from tests.conftest import REPO

PACKAGE = REPO / "pxed"
MODULES = sorted(PACKAGE.rglob("*.py"))
DHCP = sorted((PACKAGE / "dhcp").glob("*.py"))

# Pure-computation stdlib modules.  Deliberately absent: socket, asyncio, selectors, select,
# subprocess, os, threading, logging (a logger is fine, but the core decides and the daemon logs),
# time (the clock is passed in), and every third-party package (dbus_fast, pyroute2, jinja2, pycdlib).
STDLIB_PURE = {
    "__future__", "collections", "collections.abc", "dataclasses", "enum", "ipaddress", "re", "struct",
    "types", "typing", "uuid",
}
LEAVES = {"pxed.errors", "pxed.model", "pxed.rules"}  # standard library only, like the core
ADAPTERS = ("pxed.io", "pxed.dbus.server", "pxed.dbus.polkit", "pxed.dbus.interface")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports(source: str, name: str = "<source>") -> set[str]:
    """Every module an `import`/`from ... import` names, anywhere in the file (also inside functions).

    ``from pxed import rules`` counts as ``pxed.rules`` alone: a name imported from a package
    that is one of its modules is that module."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, name)):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None, f"{name}: use absolute imports"
            subs = {f"{node.module}.{a.name}" for a in node.names}
            modules = {m for m in subs if _is_module(m)}
            found |= modules
            if modules != subs:  # a name that is not a module: the package itself is used
                found.add(node.module)
    return found


def _is_module(dotted: str) -> bool:
    if not dotted.startswith("pxed."):
        return False
    p = REPO.joinpath(*dotted.split("."))
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def under(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def pxed_imports(path: Path) -> set[str]:
    return {m for m in imports(path.read_text(), path.name) if under(m, "pxed")} - {"pxed"}


def offending(paths: Iterable[Path], bad: tuple[str, ...]) -> dict[str, list[str]]:
    out = {}
    for p in paths:
        hits = sorted(m for m in pxed_imports(p) if under(m, *bad))
        if hits:
            out[module_name(p)] = hits
    return out


def dhcp_disallowed(source: str, name: str = "<source>") -> set[str]:
    allowed = STDLIB_PURE | LEAVES | {"pxed.dhcp"} | {f"pxed.dhcp.{p.stem}" for p in DHCP}
    return {m for m in imports(source, name) if m not in allowed}


def test_the_tree_has_its_layers() -> None:
    names = {module_name(p) for p in MODULES}
    assert {"pxed.dhcp.proxy", "pxed.service", "pxed.loaders", "pxed.loaders.syslinux", "pxed.dbus.server",
            "pxed.daemon", "pxed.cli", "pxed.rules", "pxed.menus"} <= names


@pytest.mark.parametrize("path", DHCP, ids=[p.name for p in DHCP])
def test_dhcp_core_imports_only_pure_stdlib_and_leaves(path: Path) -> None:
    bad = dhcp_disallowed(path.read_text(), path.name)
    assert not bad, f"pxed/dhcp/{path.name} imports {sorted(bad)}"


def test_loaders_and_the_menu_model_do_no_io() -> None:
    paths = [*sorted((PACKAGE / "loaders").glob("*.py")), PACKAGE / "menus.py", PACKAGE / "rules.py"]
    io_modules = {"socket", "subprocess", "asyncio", "threading", "shutil", "selectors", "pycdlib", "pyroute2",
                  "dbus_fast", "systemd"}
    for p in paths:
        found = imports(p.read_text(), p.name)
        assert not {m.split(".")[0] for m in found} & io_modules, (p.name, sorted(found))
    assert not offending(paths, ("pxed.service", "pxed.images", "pxed.io", "pxed.dbus", "pxed.daemon",
                                 "pxed.boottree"))
    for p in sorted((PACKAGE / "loaders").glob("*.py")):  # a loader knows no configuration file
        assert "pxed.config" not in pxed_imports(p), p.name


def test_dbus_talks_to_the_service_only() -> None:
    paths = sorted((PACKAGE / "dbus").glob("*.py"))
    assert not offending(paths, ("pxed.images", "pxed.config", "pxed.rules", "pxed.boottree", "pxed.menus",
                                 "pxed.loaders", "pxed.dhcp", "pxed.io", "pxed.daemon", "pxed.service.core",
                                 "pxed.service.jobs", "pxed.service.clients"))


def test_pxectl_imports_no_part_of_the_daemon() -> None:
    assert not offending([PACKAGE / "cli.py"], ("pxed.daemon", "pxed.service", "pxed.io", "pxed.images",
                                                "pxed.dhcp", "pxed.dbus.server", "pxed.dbus.interface"))


def test_the_application_layer_reaches_for_no_adapter() -> None:
    paths = [*sorted((PACKAGE / "service").glob("*.py")), *sorted((PACKAGE / "images").glob("*.py"))]
    assert not offending(paths, (*ADAPTERS, "pxed.daemon", "pxed.cli"))
    assert not offending(sorted((PACKAGE / "images").glob("*.py")), ("pxed.service", "pxed.menus", "pxed.loaders"))


def test_only_the_daemon_composes() -> None:
    found = {}
    for p in MODULES:
        name = module_name(p)
        if name in ("pxed.daemon", "pxed.__main__") or under(name, "pxed.io", "pxed.dbus"):
            continue
        hits = sorted(m for m in pxed_imports(p) if under(m, *ADAPTERS, "pxed.daemon"))
        if hits:
            found[name] = hits
    assert not found


def test_the_checker_would_catch_io() -> None:
    src = ("import socket\nfrom asyncio import run\nimport logging.handlers\n"
           "def f():\n    from pyroute2 import IPRoute\n")
    assert dhcp_disallowed(src) == {"socket", "asyncio", "logging.handlers", "pyroute2"}
    assert dhcp_disallowed("import struct\nfrom pxed.model import Firmware\n") == set()
    assert dhcp_disallowed("from pxed.config import Config\n") == {"pxed.config"}
    assert imports("from pxed import rules, __version__\n") == {"pxed", "pxed.rules"}
    assert imports("from pxed import rules\n") == {"pxed.rules"}
    assert offending([PACKAGE / "daemon.py"], ("pxed.io",))  # the daemon does compose the adapters
