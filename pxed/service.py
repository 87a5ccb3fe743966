"""Transport-neutral operations: images, menus, reload.  D-Bus and the daemon call these.

Mutations are serialised by one lock; reads return immutable snapshots.  After every
change the menus are regenerated from the catalog, so a client never sees an entry
whose files are not there.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pxed.boottree import MenuExtras, extras_of
from pxed.config import Config
from pxed.errors import NotFound, ToolError
from pxed.images.catalog import Catalog, Detection, ImageRecord, ImageState
from pxed.menu import render_menus, write_menus
from pxed.model import BootEntry

logger = logging.getLogger(__name__)

__all__ = ["Detection", "ImageRecord", "ImageState", "ImportOptions", "RecoveryReport", "Service"]


@dataclass(frozen=True, slots=True)
class ImportOptions:
    title: str | None = None
    memdisk: bool | None = None  # None: [Images] Memdisk= from the configuration


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    removed_staging: tuple[str, ...] = ()
    failed_imports: tuple[str, ...] = ()


class Service:
    def __init__(self, config: Config, *, server_address: Callable[[], ipaddress.IPv4Address | None]) -> None:
        self._config = config
        self._server_address = server_address
        self._lock = threading.RLock()
        self._catalog = Catalog(config.state_dir)
        self._images: tuple[ImageRecord, ...] = ()

    # ------------------------------------------------------------ paths
    @property
    def config(self) -> Config:
        return self._config

    @property
    def images_dir(self) -> Path:
        return self._config.boot_root / "images"

    @property
    def staging_dir(self) -> Path:
        return self._config.state_dir / "staging"

    # ------------------------------------------------------------ reads
    def list_images(self) -> tuple[ImageRecord, ...]:
        return self._images

    def get_image(self, name: str) -> ImageRecord:
        for r in self._images:
            if r.id == name:
                return r
        raise NotFound(f"no image named {name!r}", hint="'pxectl list' shows the images")

    # ------------------------------------------------------------ startup
    def recover(self) -> RecoveryReport:
        """Bring state on disk back to the catalog's word after a crash at any point."""
        with self._lock:
            self._config.state_dir.mkdir(parents=True, exist_ok=True)
            removed: list[str] = []
            if self.staging_dir.is_dir():
                for p in sorted(self.staging_dir.iterdir()):
                    shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)
                    removed.append(p.name)
            for tmp in self._config.state_dir.glob(".*.tmp*"):
                tmp.unlink(missing_ok=True)
            records = list(self._catalog.load())
            failed: list[str] = []
            for i, r in enumerate(records):
                if r.state is ImageState.IMPORTING:
                    shutil.rmtree(self.images_dir / r.id, ignore_errors=True)
                    records[i] = r.with_state(ImageState.FAILED, "import was interrupted (pxed stopped or crashed)")
                    failed.append(r.id)
            ready = {r.id for r in records if r.state is ImageState.READY}
            if self.images_dir.is_dir():
                for d in self.images_dir.iterdir():
                    if d.name not in ready:
                        shutil.rmtree(d, ignore_errors=True) if d.is_dir() else d.unlink(missing_ok=True)
                        removed.append(f"images/{d.name}")
            if failed:
                self._catalog.save(records)
            self._images = tuple(records)
            return RecoveryReport(tuple(removed), tuple(failed))

    # ------------------------------------------------------------ menus
    def entries(self, server: str) -> list[BootEntry]:
        return [*self._config.entries,
                *(r.boot_entry(server) for r in self._images if r.state is ImageState.READY)]

    def render_menus(self) -> None:
        """Regenerate every menu from config + ready images + the current address (atomic)."""
        with self._lock:
            address = self._server_address()
            if address is None:
                logger.debug("no server address yet; menus not written")
                return
            port = self._config.http_port
            server = str(address) if port == 80 else f"{address}:{port}"
            extras: MenuExtras = extras_of(self._config.boot_root)
            files = render_menus(self._config, self.entries(server), address, extras=extras)
            write_menus(self._config.boot_root, files)

    def reload(self, config: Config) -> None:
        with self._lock:
            self._config = config
            self._catalog = Catalog(config.state_dir)
            self._images = self._catalog.load()
            self.render_menus()

    # ------------------------------------------------------------ images
    def import_image(self, fd: int, name: str | None, options: ImportOptions, *,
                     progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None,
                     on_detected: Callable[[Detection], None] | None = None) -> ImageRecord:
        """Import an ISO from an open file descriptor (the importer is not part of this version)."""
        raise ToolError("ISO import is not available in this version of pxed",
                        hint="declare menu entries with [Entry ID] sections in pxed.conf meanwhile")

    def remove_image(self, name: str) -> ImageRecord:
        """Remove an image: catalog first (the menu stops offering it), then its files."""
        with self._lock:
            record = self.get_image(name)
            self._catalog.save([r for r in self._images if r.id != name])
            self._images = tuple(r for r in self._images if r.id != name)
            self.render_menus()
            shutil.rmtree(self.images_dir / name, ignore_errors=True)
            return record
