"""The lab's own housekeeping: the system tests' debootstrap cache does not grow for ever."""

from __future__ import annotations

import os
from pathlib import Path

from tests.lab.nspawn import PRUNE_AFTER, SUITE, prune


def test_prune_removes_only_long_unused_trees_and_dead_builds(tmp_path: Path) -> None:
    now = 2_000_000_000.0

    def tree(name: str, age: float, complete: bool = True) -> Path:
        d = tmp_path / name
        d.mkdir()
        stamp = d / (".pxed-tree-complete" if complete else "partial")
        stamp.write_text("")
        os.utime(stamp, (now - age, now - age))
        os.utime(d, (now - age, now - age))
        return d

    current = tree(f"{SUITE}-current", PRUNE_AFTER * 3)  # the one asked for: kept however old
    recent = tree(f"{SUITE}-recent", PRUNE_AFTER / 2)  # another branch's tree, in use
    old = tree(f"{SUITE}-old", PRUNE_AFTER + 60)
    dead = tree(".build-abc-123", 2 * 86400, complete=False)
    running = tree(".build-def-456", 600, complete=False)  # a build in progress elsewhere
    other = tree("not-ours", PRUNE_AFTER * 3, complete=False)
    (tmp_path / ".lock").write_text("")
    assert sorted(prune(tmp_path, keep=current, now=now)) == sorted([old, dead])
    assert all(d.exists() for d in (current, recent, running, other)) and not old.exists() and not dead.exists()
