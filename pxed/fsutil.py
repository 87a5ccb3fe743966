"""Crash-safe file writes: temp file, fsync, rename, fsync of the directory.  The one way pxed replaces a file."""

from __future__ import annotations

import filecmp
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def fsync_dir(path: Path) -> None:
    dfd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def _replace(path: Path, fill: Callable[[BinaryIO], object], mode: int) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            fill(f)
            f.flush()
            os.fchmod(f.fileno(), mode)  # whatever the umask: served files are world-readable
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace `path` with `data` so that a reader sees the old or the new file, never a mix."""
    _replace(path, lambda f: f.write(data), mode)


def atomic_copy(src: Path, dest: Path, mode: int = 0o644) -> bool:
    """Copy `src` over `dest` as :func:`atomic_write` does, unless identical; returns whether `dest` changed."""
    if dest.is_file() and not dest.is_symlink() and filecmp.cmp(src, dest, shallow=False):
        return False
    dest.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(src, "rb") as fi:
        _replace(dest, lambda fo: shutil.copyfileobj(fi, fo, 1 << 20), mode)
    return True
