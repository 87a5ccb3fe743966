"""The application layer: images, import jobs, clients, status, menus and reload.

Adapters (D-Bus, the daemon's packet loop, tests) call this and only this; it publishes
:mod:`~pxed.service.events` they subscribe to.  Two kinds of method:

- the blocking core (``recover``, ``import_image``, ``remove_image``, ``render_menus``,
  ``reload``), serialised by one lock; reads return immutable snapshots.  Tests and
  worker threads call these; they publish nothing;
- the event-loop methods adapters call (``submit_import``, ``cancel_import``, ``remove``,
  ``reload_config``, ``address_changed``, ``client_seen``, ``runtime_changed``): they run
  the core in a worker thread where it blocks and publish events on the loop.

Every request is checked against the domain rules (:mod:`pxed.rules`) when it is
accepted, before any byte is copied.  After every change the menus are regenerated from
the catalog, so a client never sees an entry whose files are not there.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import os
import shutil
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pxed import __version__, loaders, rules
from pxed.boottree import populate, scan
from pxed.config import Config, load_config
from pxed.errors import Busy, ConfigError, Exists, InvalidName, NotFound, PxedError
from pxed.images.catalog import Catalog, Detection, ImageRecord, ImageState
from pxed.model import Installed
from pxed.service.clients import ClientRecord, ClientTracker, SeenLimiter
from pxed.service.events import (
    ClientSeen,
    Events,
    ImageAdded,
    ImageRemoved,
    JobInfo,
    MenusReloaded,
    Reloaded,
    ReloadFailed,
    Reloading,
    StatusChanged,
)
from pxed.service.jobs import Jobs

logger = logging.getLogger(__name__)

# For validating an entry's menu text before commit while the interface has no address yet.
_NO_ADDRESS = ipaddress.IPv4Address("0.0.0.0")


@dataclass(frozen=True, slots=True)
class ImportOptions:
    title: str | None = None
    memdisk: bool | None = None  # None: [Images] Memdisk= from the configuration


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    removed_staging: tuple[str, ...] = ()
    failed_imports: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """What the daemon knows about itself: read whenever status is asked."""

    interface: str | None
    address: str | None
    state: str
    clients_answered: int


class Service:
    def __init__(self, config: Config, *, server_address: Callable[[], ipaddress.IPv4Address | None],
                 runtime: Callable[[], RuntimeStatus] | None = None, config_path: Path | None = None,
                 events: Events | None = None) -> None:
        self._config = config
        self._config_path = config_path
        self._server_address = server_address
        self._runtime = runtime or (lambda: RuntimeStatus(config.interface, str(server_address() or "") or None,
                                                          "running", 0))
        self._lock = threading.RLock()
        self._catalog = Catalog(config.state_dir)
        self._images: tuple[ImageRecord, ...] = ()
        self.events = events or Events()
        self._jobs: Jobs | None = None  # made on the event loop, when the first import comes
        self._tracker = ClientTracker()
        self._seen = SeenLimiter()
        self._announced: dict[str, Any] = {}
        self._reload_lock: asyncio.Lock | None = None

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

    def list_clients(self) -> list[ClientRecord]:
        return self._tracker.recent()

    def list_jobs(self) -> tuple[JobInfo, ...]:
        return self._jobs.list() if self._jobs is not None else ()

    def get_job(self, job_id: int) -> JobInfo:
        if self._jobs is None:
            raise NotFound(f"no import job {job_id}", hint="'pxectl jobs' lists the running imports")
        return self._jobs.get(job_id)

    def status(self) -> dict[str, Any]:
        """Everything ``pxectl status`` shows, under the API's names."""
        rt = self._runtime()
        images = self._images
        config = self._config
        return {
            "Version": __version__, "State": rt.state, "Interface": rt.interface, "Address": rt.address,
            "ClientsAnswered": rt.clients_answered, "ClientsSeen": len(self._tracker),
            "Images": len(images), "ImagesReady": sum(1 for r in images if r.state is ImageState.READY),
            "Jobs": len(self.list_jobs()), "BootRoot": os.fspath(config.boot_root),
            "StateDirectory": os.fspath(config.state_dir), "HTTPPort": config.http_port,
            "MaxImageSize": config.image_max_bytes,
            "ConfigFiles": [os.fspath(p) for p in config.sources],
        }

    def announced(self) -> dict[str, Any]:
        """The status values change events are published for (see :class:`StatusChanged`)."""
        rt = self._runtime()
        return {"Interface": rt.interface or "", "Address": rt.address or "", "State": rt.state,
                "ImageCount": len(self._images)}

    # ------------------------------------------------------------ the daemon's news (event loop)
    def runtime_changed(self) -> None:
        """Publish StatusChanged for whichever announced value changed since the last call."""
        values = self.announced()
        changed = {k: v for k, v in values.items() if self._announced.get(k) != v}
        if changed:
            self._announced.update(changed)
            self.events.publish(StatusChanged(changed))

    def client_seen(self, mac: str, arch: int, stage: str, boot_file: str) -> None:
        """A boot exchange: tracked always, published as ClientSeen within the rate limit."""
        self._tracker.record(mac, arch, stage, boot_file, time.time())
        if self._seen.allow():
            self.events.publish(ClientSeen(mac.lower(), arch & 0xFFFF, stage, boot_file))

    def address_changed(self) -> None:
        """The server address changed: rewrite the menus for it and say so."""
        try:
            written = self.render_menus()
        except PxedError as e:
            logger.error("cannot write menus: %s", e)
            return
        except Exception:
            logger.exception("cannot write menus")
            return
        if written:
            self.events.publish(MenusReloaded())

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
            self._remove_temp_files(self._config.boot_root)
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

    def _remove_temp_files(self, boot_root: Path) -> None:
        """Half-written menus and boot files (fsutil's ``.NAME.tmpPID``) of a process that died writing them."""
        for top, dirs, files in os.walk(boot_root):
            if Path(top) == boot_root and "images" in dirs:
                dirs.remove("images")  # the images' own files come from the catalog's word, below
            for name in files:
                if name.startswith(".") and ".tmp" in name:
                    (Path(top) / name).unlink(missing_ok=True)

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

    def install_boot_files(self) -> Installed:
        """Copy what the configured loaders need into the boot root (raises MissingPackage)."""
        config = self._config
        return populate(config.boot_root, loaders.needed(config.loaders))

    def try_install_boot_files(self) -> None:
        """:meth:`install_boot_files`, logging what is missing: pxed keeps answering with what is there."""
        try:
            self.install_boot_files()
        except PxedError as e:
            logger.error("boot tree incomplete: %s", e)

    # ------------------------------------------------------------ menus
    def _menu_files(self, images: tuple[ImageRecord, ...], *,
                    validate_only: bool = False) -> dict[str, str] | None:
        """The menus for ``images`` (raises InvalidArgument), or None while there is no address.

        ``validate_only``: render for a stand-in address when there is none, to refuse an
        entry the menus cannot hold even before the interface has an address.
        """
        address = self._server_address()
        if address is None:
            if not validate_only:
                logger.debug("no server address yet; menus not written")
                return None
            address = _NO_ADDRESS
        from pxed.menus import render_menus  # jinja2: imported when first needed, off pxed's cold start

        config = self._config
        host = rules.base_host(address, config.http_port)
        installed = scan(config.boot_root)
        entries = [*config.entries, *(r.boot_entry(host) for r in images if r.state is ImageState.READY)]
        return render_menus(config, entries, address, installed=installed)

    def render_menus(self) -> bool:
        """Regenerate every menu from config + ready images + the current address (atomic).

        False when there is no address yet, so nothing was written."""
        from pxed.menus import write_menus

        with self._lock:
            files = self._menu_files(self._images)
            if files is None:
                return False
            write_menus(self._config.boot_root, files)
            return True

    def reload(self, config: Config) -> None:
        """Take ``config``: boot files for its loaders, the catalog, the menus (blocking)."""
        with self._lock:
            self._config = config
            self.try_install_boot_files()
            self._catalog = Catalog(config.state_dir)
            self._images = self._catalog.load()
            self.render_menus()

    async def reload_config(self) -> Config:
        """Read pxed.conf again and take it (SIGHUP, D-Bus Reload); raises ConfigError and keeps the old one."""
        if self._config_path is None:
            raise ConfigError("this service has no configuration file to reload")
        if self._reload_lock is None:
            self._reload_lock = asyncio.Lock()
        async with self._reload_lock:
            self.events.publish(Reloading())
            try:
                config = await asyncio.to_thread(load_config, self._config_path)
                await asyncio.to_thread(self.reload, config)
            except PxedError as e:
                logger.error("reload failed, keeping the running configuration: %s", e)
                self.events.publish(ReloadFailed(e))
                raise
            logger.info("configuration reloaded from %s", ", ".join(map(str, config.sources)) or "defaults")
            self.events.publish(Reloaded(config))
            self.events.publish(MenusReloaded())
            self.runtime_changed()
            return config

    # ------------------------------------------------------------ images
    def check_new_id(self, name: str, *, queued: bool = True) -> None:
        """Refuse an id no new image may have: rules, reserved, [Entry] ids, images, and (``queued``,
        on the event loop only) the names of queued imports."""
        try:
            rules.check_entry_id(name)
        except ValueError as e:
            raise InvalidName(f"invalid image name {name[:70]!r}: {e}", hint="choose another: pxectl add --name NAME") \
                from None
        if any(e.id == name for e in self._config.entries):
            raise Exists(f"{name!r} is a menu entry of pxed.conf ([Entry {name}])",
                         hint="choose another --name, or rename the [Entry] section")
        if any(r.id == name for r in self._images) or (queued and self._jobs is not None
                                                        and name in self._jobs.names()):
            raise Exists(f"an image named {name!r} already exists",
                         hint=f"choose another --name or pxectl remove {name}")

    def import_image(self, fd: int, name: str | None, options: ImportOptions, *,
                     progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None,
                     on_detected: Callable[[Detection], None] | None = None) -> ImageRecord:
        """Import an ISO from an open file descriptor (blocking; see :mod:`pxed.images.importer`)."""
        from pxed.images.importer import Request, import_iso  # pycdlib: not needed to answer DHCP
        from pxed.images.iso import Limits

        if name is not None:
            self.check_new_id(name, queued=False)  # the job of this import has the name
        cfg = self._config
        limits = Limits(memory=cfg.image_parse_memory, cpu=cfg.image_parse_cpu, wall=float(cfg.image_parse_time))
        req = Request(name=name, title=options.title, memdisk=options.memdisk, allow_memdisk=cfg.image_memdisk,
                      max_bytes=cfg.image_max_bytes, limits=limits)
        return import_iso(fd, req, self.store(), progress=progress, cancel=cancel, on_detected=on_detected)

    def store(self) -> _Store:
        """The catalog side of an import, for :func:`pxed.images.importer.import_iso`."""
        return _Store(self)

    def submit_import(self, fd: int, name: str | None, options: ImportOptions, *, owner: str = "") -> JobInfo:
        """Accept an import as a job (event loop).  ``fd`` is the service's from here on, also on refusal."""
        from pxed.images.importer import check_fd  # pycdlib: not needed to answer DHCP

        try:
            size = check_fd(fd, self._config.image_max_bytes)
            if name is not None:
                self.check_new_id(name)
            if self._jobs is None:
                self._jobs = Jobs(self.events.publish)
        except BaseException:
            os.close(fd)
            raise

        def run(fd: int, name: str | None, progress: Callable[[int, int], None], cancel: threading.Event,
                detected: Callable[[Detection], None]) -> ImageRecord:
            return self.import_image(fd, name, options, progress=progress, cancel=cancel, on_detected=detected)

        job = self._jobs.submit(fd, name or "", size, owner, run, self._imported)
        logger.info("import job %d started by %s: %s (%d bytes)", job.id, owner or "?", name or "(name from ISO)",
                    size, extra={"IMAGE_ID": name or ""})
        return job

    def _imported(self, record: ImageRecord) -> None:
        logger.info("image %s imported (%s)", record.id, record.detection.profile, extra={"IMAGE_ID": record.id})
        self.events.publish(ImageAdded(record.id, record.title))
        self.runtime_changed()

    def cancel_import(self, job_id: int) -> JobInfo:
        job = self.get_job(job_id)
        assert self._jobs is not None
        logger.info("import job %d cancelled", job_id)
        return self._jobs.cancel(job.id)

    def _begin_import(self, record: ImageRecord) -> None:
        with self._lock:
            self.check_new_id(record.id, queued=False)  # again: a name from the ISO is first known here
            self._save((*self._images, record))

    def _commit_import(self, record: ImageRecord) -> None:
        from pxed.images.importer import crashpoint
        from pxed.menus import write_menus

        with self._lock:
            images = tuple(record if r.id == record.id else r for r in self._images)
            # refuses an entry the menus cannot hold before it is ready, with or without an address
            files = self._menu_files(images, validate_only=True)
            self._save(images)
            crashpoint("committed")
            if files is not None and self._server_address() is not None:
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
        """Remove an image: catalog first (the menu stops offering it), then its files (blocking)."""
        with self._lock:
            record = self.get_image(name)
            if record.state is ImageState.IMPORTING:
                raise Busy(f"image {name!r} is being imported", hint="wait for the import or cancel it")
            self._save(tuple(r for r in self._images if r.id != name))
            self.render_menus()
            shutil.rmtree(self.images_dir / name, ignore_errors=True)
            return record

    async def remove(self, name: str) -> ImageRecord:
        """:meth:`remove_image` from the event loop, announced."""
        if self._jobs is not None and name in self._jobs.names():
            raise Busy(f"image {name!r} is being imported", hint="wait for the import or cancel it")
        record = await asyncio.to_thread(self.remove_image, name)
        self.events.publish(ImageRemoved(record.id))
        self.runtime_changed()
        return record

    async def stop(self) -> None:
        """Cancel imports, waiting briefly for them."""
        if self._jobs is not None:
            await self._jobs.stop()


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
