"""A real Service on a temporary boot root and state directory, and helpers to check what an import left."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pxed.config import load_config
from pxed.images.catalog import Catalog, ImageRecord, ImageState
from pxed.images.iso import HASH_LIMIT
from pxed.service import ImportOptions, Service

SERVER = ipaddress.IPv4Address("10.77.0.1")


def write_config(root: Path, extra: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    conf = root / "pxed.conf"
    conf.write_text(f"[Network]\nInterface=lab0\n[Paths]\nBootRoot={root}/boot\nStateDirectory={root}/state\n"
                    f"[HTTP]\nPort=8080\n{extra}")
    return conf


@dataclass
class Env:
    root: Path
    service: Service

    @property
    def boot(self) -> Path:
        return self.root / "boot"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def add(self, iso: Path, name: str | None = None, **kw: Any) -> ImageRecord:
        fd = os.open(iso, os.O_RDONLY | os.O_CLOEXEC)
        try:
            return self.service.import_image(fd, name, ImportOptions(title=kw.pop("title", None),
                                                                     memdisk=kw.pop("memdisk", None)), **kw)
        finally:
            os.close(fd)

    def menu(self) -> str:
        return (self.boot / "pxelinux.cfg" / "pxe.cfg").read_text()

    def catalog(self) -> tuple[ImageRecord, ...]:
        return Catalog(self.state).load()

    def tree(self) -> dict[str, str]:
        """Every path under the root (symlinks not followed) → its kind; menus left out."""
        out: dict[str, str] = {}
        for dirpath, dirnames, filenames in os.walk(self.root):
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                rel = os.fspath(p.relative_to(self.root))
                if "pxelinux.cfg" in rel:
                    continue
                out[rel] = "link" if p.is_symlink() else "dir" if p.is_dir() else "file" if p.is_file() else "other"
        return out

    def assert_no_leftovers(self) -> None:
        staging = self.state / "staging"
        assert not staging.exists() or list(staging.iterdir()) == [], list(staging.iterdir())
        assert not list(self.state.glob(".*.tmp*"))
        images = self.boot / "images"
        ready = {r.id for r in self.catalog() if r.state is ImageState.READY}
        on_disk = {p.name for p in images.iterdir()} if images.exists() else set()
        assert on_disk == ready, (on_disk, ready)
        for dirpath, dirnames, filenames in os.walk(self.boot):
            for n in dirnames + filenames:
                p = Path(dirpath) / n
                assert not p.is_symlink(), p
                assert p.is_dir() or p.is_file(), p

    def assert_complete(self, record: ImageRecord) -> None:
        """Every recorded file exists with its size and hash, and nothing else is there."""
        base = self.boot / "images" / record.id
        found = {os.fspath(p.relative_to(base)) for p in base.rglob("*") if p.is_file()}
        assert found == {f.path for f in record.files}
        for f in record.files:
            data = (base / f.path).read_bytes()
            assert len(data) == f.size, f.path
            if f.size <= HASH_LIMIT:  # bigger files are checked by size (see pxed.images.iso.copy_ranges)
                assert hashlib.sha256(data).hexdigest() == f.sha256, f.path
            assert (base / f.path).stat().st_mode & 0o777 == 0o644


def make_env(root: Path, extra: str = "") -> Env:
    config = load_config(write_config(root, extra))
    service = Service(config, server_address=lambda: SERVER)
    service.recover()
    service.render_menus()
    return Env(root, service)


@pytest.fixture
def env(tmp_path: Path) -> Env:
    return make_env(tmp_path / "pxed")
