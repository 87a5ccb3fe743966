"""Shared fixtures.  Tests needing root, namespaces or QEMU carry markers (setup.cfg).

A test that cannot find what it needs skips on a developer machine but FAILS in CI
(CI=true): `make check` installs everything, so a missing tool there is a bug.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.lab.netns import Lab, Segment, can_run_lab
from tests.lab.network import LabNetwork

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
REPO = Path(__file__).resolve().parent.parent


def need(condition: bool, reason: str) -> None:
    """Skip (developer machine) or fail (CI) when a prerequisite is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"missing prerequisite in CI: {reason}")
    pytest.skip(reason)


def need_tool(*names: str) -> None:
    for n in names:
        need(shutil.which(n) is not None or Path(n).exists(), f"{n} is not installed (run: make deps)")


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    reason = can_run_lab()
    need(reason is None, reason or "")
    with Lab(workdir=tmp_path) as lb:
        yield lb


@pytest.fixture
def segment(lab: Lab) -> Segment:
    return lab.segment()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, None]:
    """A failed test that used a lab fixture (the system tests' module-wide SystemLab) gets the
    lab's summary in its report; a lab in a ``with`` block writes it to stderr itself."""
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    if report.when != "call" or not report.failed:
        return
    labs = {id(v): (name, v) for name, v in getattr(item, "funcargs", {}).items() if isinstance(v, LabNetwork)}
    for name, lab in labs.values():
        try:
            report.sections.append((f"lab summary ({name})", lab.summary()))
        except Exception as e:  # never hide the failure being reported
            report.sections.append((f"lab summary ({name})", f"could not be taken: {e!r}"))
