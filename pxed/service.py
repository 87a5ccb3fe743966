"""Transport-neutral operations: images, menus, reload.  D-Bus and the daemon call these.

Mutations are serialised by one lock; reads return immutable snapshots.  After every
change the menus are regenerated from the catalog, so a client never sees an entry
whose files are not there.
"""

from __future__ import annotations

import ipaddress
import logging
import shutil
import stat
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pxed.boottree import MenuExtras, extras_of
from pxed.config import Config
from pxed.errors import Busy, Exists, NotFound
from pxed.images.catalog import Catalog, Detection, ImageRecord, ImageState

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
                elif r.state is ImageState.READY and (damaged := self._damaged_file(r)) is not None:
                    records[i] = r.with_state(ImageState.FAILED, f"{damaged} is missing or has the wrong size; "
                                                                 "remove the image and import it again")
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

    def _damaged_file(self, record: ImageRecord) -> str | None:
        """The first recorded file of an image that is not there with its size (a stat each)."""
        base = self.images_dir / record.id
        for f in record.files:
            try:
                st = (base / f.path).lstat()
            except OSError:
                return f.path
            if not stat.S_ISREG(st.st_mode) or st.st_size != f.size:
                return f.path
        return None

    # ------------------------------------------------------------ menus
    def _menu_files(self, images: tuple[ImageRecord, ...]) -> dict[str, str] | None:
        """The menus for ``images`` (raises InvalidArgument), or None while there is no address."""
        address = self._server_address()
        if address is None:
            logger.debug("no server address yet; menus not written")
            return None
        port = self._config.http_port
        server = str(address) if port == 80 else f"{address}:{port}"
        from pxed.menu import render_menus  # jinja2: imported when first needed, off pxed's cold start

        extras: MenuExtras = extras_of(self._config.boot_root)
        entries = [*self._config.entries, *(r.boot_entry(server) for r in images if r.state is ImageState.READY)]
        return render_menus(self._config, entries, address, extras=extras)

    def render_menus(self) -> None:
        """Regenerate every menu from config + ready images + the current address (atomic)."""
        from pxed.menu import write_menus

        with self._lock:
            files = self._menu_files(self._images)
            if files is not None:
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
        """Import an ISO from an open file descriptor (see :mod:`pxed.images.importer`)."""
        from pxed.images.importer import Request, import_iso  # pycdlib: not needed to answer DHCP

        cfg = self._config
        req = Request(name=name, title=options.title, memdisk=options.memdisk, allow_memdisk=cfg.image_memdisk,
                      max_bytes=cfg.image_max_bytes)
        return import_iso(fd, req, _Store(self), progress=progress, cancel=cancel, on_detected=on_detected)

    def _begin_import(self, record: ImageRecord) -> None:
        with self._lock:
            if any(r.id == record.id for r in self._images):
                raise Exists(f"an image named {record.id!r} already exists",
                             hint=f"choose another --name or pxectl remove {record.id}")
            self._save((*self._images, record))

    def _commit_import(self, record: ImageRecord) -> None:
        from pxed.images.importer import crashpoint
        from pxed.menu import write_menus

        with self._lock:
            images = tuple(record if r.id == record.id else r for r in self._images)
            files = self._menu_files(images)  # refuses an entry the menus cannot hold, before it is ready
            self._save(images)
            crashpoint("committed")
            if files is not None:
                try:  # the image is ready now; stale menus (still whole) are rewritten at the next change
                    write_menus(self._config.boot_root, files)
                except OSError as e:
                    logger.warning("image %s is ready but the menus could not be rewritten: %s", record.id, e)

    def _abort_import(self, image_id: str) -> None:
        with self._lock:
            if any(r.id == image_id and r.state is ImageState.IMPORTING for r in self._images):
                self._save(tuple(r for r in self._images if r.id != image_id))

    def _save(self, images: tuple[ImageRecord, ...]) -> None:
        self._catalog.save(images)
        self._images = images

    def remove_image(self, name: str) -> ImageRecord:
        """Remove an image: catalog first (the menu stops offering it), then its files."""
        with self._lock:
            record = self.get_image(name)
            if record.state is ImageState.IMPORTING:
                raise Busy(f"image {name!r} is being imported", hint="wait for the import or cancel it")
            self._save(tuple(r for r in self._images if r.id != name))
            self.render_menus()
            shutil.rmtree(self.images_dir / name, ignore_errors=True)
            return record


class _Store:
    """The catalog side of an import, for :func:`pxed.images.importer.import_iso`."""

    def __init__(self, service: Service) -> None:
        self._service = service

    @property
    def staging_dir(self) -> Path:
        return self._service.staging_dir

    @property
    def images_dir(self) -> Path:
        return self._service.images_dir

    def begin(self, record: ImageRecord) -> None:
        self._service._begin_import(record)

    def commit(self, record: ImageRecord) -> None:
        self._service._commit_import(record)

    def abort(self, image_id: str) -> None:
        self._service._abort_import(image_id)
