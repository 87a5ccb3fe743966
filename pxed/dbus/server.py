"""pxed on the system bus: exports org.pxed.Pxed1 and runs image imports as job objects.

Rules kept here (security.md §3.5):

- changing methods (AddImage, RemoveImage, Reload, Job.Cancel) are authorized per call
  (:mod:`pxed.dbus.polkit`) before anything else happens; a denied call changes nothing;
- AddImage takes a file descriptor the caller opened, never a path, and only a regular
  file open for reading and within ``[Images] MaxSize=``;
- imports run one at a time as jobs (``/org/pxed/Pxed1/job/N``, like import1's
  transfers); RemoveImage and Reload are serialised; reads answer from the service's
  immutable snapshots and never wait for a mutation;
- file descriptors attached to any other call are closed at once and the call refused,
  so an unprivileged caller cannot make pxed hoard descriptors.

The daemon owns the loop; every public method here must be called from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dbus_fast import BusType, DBusError, Message, MessageType, NameFlag, RequestNameReply, Variant
from dbus_fast.aio import MessageBus

from pxed.config import ID_RE
from pxed.dbus.interface import (
    CURRENT_MESSAGE,
    Caller,
    JobObject,
    ManagerObject,
    option,
    to_dbus_error,
    to_vardict,
)
from pxed.dbus.names import (
    BUS_NAME,
    ERROR_PREFIX,
    INTERNAL_ERROR,
    JOB_PATH_PREFIX,
    MANAGER_INTERFACE,
    OBJECT_PATH,
    Action,
    JobState,
    error_name,
)
from pxed.dbus.polkit import Authorizer, PolkitAuthorizer
from pxed.errors import (
    Busy,
    Cancelled,
    Exists,
    InvalidArgument,
    InvalidName,
    PxedError,
    ToolError,
)
from pxed.images.catalog import Detection, ImageRecord
from pxed.images.importer import check_fd as check_image_fd
from pxed.service import ImportOptions, Service
from pxed.tracker import ClientTracker

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.2  # seconds between Progress updates of a running job
IMPORT_OPTIONS = {"title": "s", "memdisk": "b"}


@dataclass(frozen=True, slots=True)
class RuntimeStatus:
    """What the daemon knows about itself; read whenever a property or GetStatus is asked."""

    interface: str | None
    address: str | None
    state: str
    clients_answered: int


class DBusServer:
    """Serves :class:`~pxed.service.Service` as org.pxed.Pxed1 (see the interface XML and pxectl(1))."""

    CLIENT_SEEN_PER_SECOND = 200

    def __init__(
        self,
        service: Service,
        *,
        runtime: Callable[[], RuntimeStatus],
        tracker: ClientTracker,
        reload: Callable[[], Awaitable[None]],
        authorizer: Authorizer | None = None,
    ) -> None:
        self._service = service
        self._runtime = runtime
        self._tracker = tracker
        self._reload = reload
        self._authorizer: Authorizer = authorizer or PolkitAuthorizer()
        self._bus: MessageBus | None = None
        self._manager = ManagerObject(self)
        self._jobs: dict[int, JobObject] = {}
        self._cancel: dict[int, tuple[threading.Event, asyncio.Event]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next_job = 1
        self._import_slot = asyncio.Semaphore(1)
        self._mutate = asyncio.Lock()
        self._announced: dict[str, Any] = {}
        self._seen_window = (float("-inf"), 0)  # (monotonic start of the current second, ClientSeen sent in it)
        self._seen_unsent = 0

    # ================================================================== lifecycle
    async def start(self, bus_address: str | None = None) -> None:
        """Connect (system bus, honouring DBUS_SYSTEM_BUS_ADDRESS, or ``bus_address``), export, take the name."""
        try:
            bus = await MessageBus(bus_address=bus_address, bus_type=BusType.SYSTEM,
                                   negotiate_unix_fd=True).connect()
        except (OSError, ValueError) as e:
            raise ToolError(f"cannot connect to the system bus: {e}",
                            hint="is dbus running? (systemctl status dbus)") from None
        bus.add_message_handler(self._on_message)
        bus.export(OBJECT_PATH, self._manager)
        self._bus = bus
        try:
            reply = await bus.request_name(BUS_NAME, NameFlag.DO_NOT_QUEUE)
        except DBusError as e:
            bus.disconnect()
            self._bus = None
            raise ToolError(f"may not own {BUS_NAME} on the system bus: {e.text}",
                            hint="install /usr/share/dbus-1/system.d/org.pxed.Pxed1.conf and run pxed "
                                 "as user pxed or root") from None
        if reply not in (RequestNameReply.PRIMARY_OWNER, RequestNameReply.ALREADY_OWNER):
            bus.disconnect()
            self._bus = None
            raise ToolError(f"{BUS_NAME} is already owned by another process",
                            hint="is another pxed running? (systemctl status pxed)")
        self._snapshot_properties()
        logger.info("serving %s on the system bus as %s", BUS_NAME, bus.unique_name)

    async def stop(self) -> None:
        """Release the name, cancel imports (waiting briefly for them), disconnect."""
        bus = self._bus
        if bus is None:
            return
        # Bounded: when dbus-daemon stops at the same time (system shutdown) the reply never
        # comes, and an unbounded wait held pxed until systemd's stop timeout (90 s) killed it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bus.release_name(BUS_NAME), timeout=2)
        for thread_event, loop_event in self._cancel.values():
            thread_event.set()
            loop_event.set()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=10)
            for t in pending:
                logger.warning("an import did not stop within 10 s of cancellation")
                t.cancel()
        bus.disconnect()
        self._bus = None

    # ================================================================== daemon → bus
    def client_seen(self, mac: str, arch: int, stage: str, boot_file: str) -> None:
        """Record a boot exchange in the tracker and emit ClientSeen.  The daemon calls only this.

        At most :attr:`CLIENT_SEEN_PER_SECOND` signals go out a second: a flood of DHCP
        requests must not become a flood on the system bus (each signal costs pxed more
        than answering the request did, and every subscriber as much again).  The tracker
        still records every exchange, so ListClients misses nothing; one log line a second
        says how many signals were left out.
        """
        self._tracker.record(mac, arch, stage, boot_file, time.time())
        now = time.monotonic()
        start, sent = self._seen_window
        if now - start >= 1.0:
            if self._seen_unsent:
                logger.info("%d ClientSeen signals left out in the last second (at most %d a second are sent); "
                            "ListClients (pxectl clients) has every client", self._seen_unsent,
                            self.CLIENT_SEEN_PER_SECOND)
                self._seen_unsent = 0
            start, sent = now, 0
        if sent >= self.CLIENT_SEEN_PER_SECOND:
            self._seen_unsent += 1
            return
        self._seen_window = (start, sent + 1)
        self._manager.client_seen(mac.lower(), arch & 0xFFFF, stage, boot_file)

    def runtime_changed(self) -> None:
        """Emit PropertiesChanged for whichever of Interface, Address and State changed."""
        self._announce({"Interface": self.prop_interface(), "Address": self.prop_address(),
                        "State": self.prop_state()})

    def menus_reloaded(self) -> None:
        """Emit MenusReloaded (and ImageCount if the reload changed it)."""
        self._manager.menus_reloaded()
        self._announce({"ImageCount": self.prop_image_count()})

    # ================================================================== properties
    def prop_interface(self) -> str:
        return self._runtime().interface or ""

    def prop_address(self) -> str:
        return self._runtime().address or ""

    def prop_state(self) -> str:
        return self._runtime().state

    def prop_image_count(self) -> int:
        return len(self._service.list_images())

    def _snapshot_properties(self) -> None:
        self._announced = {"Interface": self.prop_interface(), "Address": self.prop_address(),
                           "State": self.prop_state(), "ImageCount": self.prop_image_count()}

    def _announce(self, values: dict[str, Any]) -> None:
        changed = {k: v for k, v in values.items() if self._announced.get(k) != v}
        if changed:
            self._announced.update(changed)
            self._manager.emit_properties_changed(changed)

    # ================================================================== reads
    def list_images(self) -> list[dict[str, Variant]]:
        return [image_summary(r) for r in self._service.list_images()]

    def get_image(self, name: str) -> dict[str, Variant]:
        return to_vardict(self._service.get_image(name).to_dict())

    def status(self) -> dict[str, Variant]:
        from pxed import __version__

        rt = self._runtime()
        images = self._service.list_images()
        config = self._service.config
        return to_vardict({
            "Version": __version__, "State": rt.state, "Interface": rt.interface, "Address": rt.address,
            "ClientsAnswered": rt.clients_answered, "ClientsSeen": len(self._tracker),
            "Images": len(images), "ImagesReady": sum(1 for r in images if r.state.value == "ready"),
            "Jobs": len(self._jobs), "BootRoot": os.fspath(config.boot_root),
            "StateDirectory": os.fspath(config.state_dir), "HTTPPort": config.http_port,
            "MaxImageSize": config.image_max_bytes,
            "ConfigFiles": [os.fspath(p) for p in config.sources],
        })

    def list_clients(self) -> list[dict[str, Variant]]:
        return [to_vardict(c.to_dict()) for c in self._tracker.recent()]

    def list_jobs(self) -> list[dict[str, Variant]]:
        return [to_vardict({"Id": j.job_id, "Path": j.path, "Name": j.image_name, "State": j.job_state,
                            "Progress": j.done, "Total": j.total}) for j in self._jobs.values()]

    # ================================================================== changes
    async def _authorize(self, caller: Caller, action: Action) -> None:
        assert self._bus is not None
        await self._authorizer.check(self._bus, caller.sender, action, interactive=caller.interactive)

    async def add_image(self, caller: Caller, fd: int, name: str, options: dict[str, Variant]) -> str:
        try:
            await self._authorize(caller, Action.IMPORT)
            opts = import_options(options)
            size = check_image_fd(fd, self._service.config.image_max_bytes)
            if name:
                if not ID_RE.match(name):
                    raise InvalidName(f"invalid image name {name!r}",
                                      hint="1 to 63 characters of a-z, 0-9, '.', '_' and '-', "
                                           "starting with a letter or digit")
                self._check_free(name)
            job = self._new_job(name, size, caller.sender)
        except BaseException:
            os.close(fd)
            raise
        logger.info("import job %d started by %s: %s (%d bytes)", job.job_id, caller.sender, name or "(name from ISO)",
                    size, extra={"IMAGE_ID": name})
        self._spawn(self._run_import(job, fd, name or None, opts))
        return job.path

    def _check_free(self, name: str) -> None:
        if any(r.id == name for r in self._service.list_images()) or \
                any(j.image_name == name for j in self._jobs.values()):
            raise Exists(f"an image named {name!r} already exists",
                         hint=f"choose another --name or pxectl remove {name}")

    def _new_job(self, name: str, total: int, owner: str) -> JobObject:
        assert self._bus is not None
        job_id = self._next_job
        self._next_job += 1
        job = JobObject(self, job_id, f"{JOB_PATH_PREFIX}{job_id}", name, total, owner)
        self._jobs[job_id] = job
        self._cancel[job_id] = (threading.Event(), asyncio.Event())
        self._bus.export(job.path, job)
        self._manager.job_new(job_id, job.path)
        return job

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_import(self, job: JobObject, fd: int, name: str | None, opts: ImportOptions) -> None:
        thread_cancel, loop_cancel = self._cancel[job.job_id]
        result, err, text = JobState.FAILED, INTERNAL_ERROR, "internal error"
        try:
            if not await self._acquire_slot(loop_cancel):
                raise Cancelled("import cancelled before it started")
            try:
                job.update(job_state=JobState.RUNNING)
                record = await asyncio.to_thread(
                    self._service.import_image, fd, name, opts,
                    progress=self._progress_reporter(job), cancel=thread_cancel,
                    on_detected=self._detection_reporter(job))
            finally:
                self._import_slot.release()
            job.update(image_name=record.id, done=job.total, job_state=JobState.DONE)
            self._manager.image_added(record.id, record.title)
            self._announce({"ImageCount": self.prop_image_count()})
            logger.info("image %s imported (%s)", record.id, record.detection.profile,
                        extra={"IMAGE_ID": record.id})
            result, err, text = JobState.DONE, "", ""
        except Cancelled as e:
            result, err, text = JobState.CANCELED, error_name(e), str(e)
            logger.info("import job %d cancelled", job.job_id, extra={"IMAGE_ID": job.image_name})
        except PxedError as e:
            err, text = error_name(e), str(e)
            logger.warning("import job %d failed: %s", job.job_id, e, extra={"IMAGE_ID": job.image_name})
        except Exception:
            logger.exception("import job %d failed", job.job_id)
        finally:
            os.close(fd)
            if result is not JobState.DONE:
                job.update(job_state=result)
            self._finish_job(job, result, err, text)

    async def _acquire_slot(self, cancelled: asyncio.Event) -> bool:
        """Wait for the import slot; False (slot not held) if the job is cancelled first."""
        acquire = asyncio.ensure_future(self._import_slot.acquire())
        cancel = asyncio.ensure_future(cancelled.wait())
        try:
            await asyncio.wait({acquire, cancel}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
        if acquire.done() and not acquire.cancelled():
            if cancelled.is_set():
                self._import_slot.release()
                return False
            return True
        acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquire
            self._import_slot.release()
        return False

    def _finish_job(self, job: JobObject, result: JobState, err: str, text: str) -> None:
        self._jobs.pop(job.job_id, None)
        self._cancel.pop(job.job_id, None)
        if self._bus is not None:
            self._bus.unexport(job.path, job)
        self._manager.job_removed(job.job_id, job.path, result.value, job.image_name, err, text)

    def _progress_reporter(self, job: JobObject) -> Callable[[int, int], None]:
        loop = asyncio.get_running_loop()
        last = [0.0]

        def report(done: int, total: int) -> None:  # runs in the import thread
            now = time.monotonic()
            if done < total and now - last[0] < PROGRESS_INTERVAL:
                return
            last[0] = now
            with contextlib.suppress(RuntimeError):  # loop closed at shutdown
                loop.call_soon_threadsafe(functools.partial(job.update, done=max(0, done), total=max(0, total)))

        return report

    def _detection_reporter(self, job: JobObject) -> Callable[[Detection], None]:
        loop = asyncio.get_running_loop()

        def detected(det: Detection) -> None:  # runs in the import thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(functools.partial(job.update, detection=to_vardict(det.to_dict())))

        return detected

    async def cancel_job(self, caller: Caller, job: JobObject) -> None:
        if caller.sender != job.owner:
            await self._authorize(caller, Action.IMPORT)
        events = self._cancel.get(job.job_id)
        if events is None:
            return
        logger.info("import job %d cancelled by %s", job.job_id, caller.sender)
        for ev in events:
            ev.set()

    async def remove_image(self, caller: Caller, name: str) -> None:
        await self._authorize(caller, Action.REMOVE)
        if any(j.image_name == name for j in self._jobs.values()):
            raise Busy(f"image {name!r} is being imported", hint="wait for the import or cancel it")
        async with self._mutate:
            record = await asyncio.to_thread(self._service.remove_image, name)
        logger.info("image %s removed by %s", record.id, caller.sender, extra={"IMAGE_ID": record.id})
        self._manager.image_removed(record.id)
        self._announce({"ImageCount": self.prop_image_count()})

    async def reload(self, caller: Caller) -> None:
        await self._authorize(caller, Action.RELOAD)
        async with self._mutate:
            await self._reload()
        logger.info("configuration reloaded on request of %s", caller.sender)
        self.menus_reloaded()
        self.runtime_changed()

    # ================================================================== message hygiene
    def _on_message(self, msg: Message) -> Message | bool | None:
        """Runs before dispatch: remember the call for its method (sender), refuse stray fds."""
        try:
            if msg.message_type != MessageType.METHOD_CALL:
                for fd in msg.unix_fds:
                    os.close(fd)
                return None
            CURRENT_MESSAGE.set(msg)
            if msg.unix_fds and not _fd_call_ok(msg):
                for fd in msg.unix_fds:
                    os.close(fd)
                return Message.new_error(msg, ERROR_PREFIX + InvalidArgument.dbus_name,
                                         "file descriptors are accepted only as AddImage's first argument")
            return None
        except Exception as e:  # never let a handler error reach the caller as a traceback
            err = to_dbus_error(e, "message handler")
            return Message.new_error(msg, err.type, err.text) if msg.message_type == MessageType.METHOD_CALL else None


def _fd_call_ok(msg: Message) -> bool:
    return (msg.path == OBJECT_PATH and msg.member == "AddImage" and msg.interface in (MANAGER_INTERFACE, None)
            and msg.signature == "hsa{sv}" and len(msg.unix_fds) == 1 and msg.body[:1] == [0])


# ====================================================================== helpers


def image_summary(record: ImageRecord) -> dict[str, Variant]:
    """ListImages' entry: the record without its file list."""
    d = record.to_dict()
    d.pop("files", None)
    return to_vardict(d)


def import_options(options: dict[str, Variant]) -> ImportOptions:
    unknown = sorted(set(options) - set(IMPORT_OPTIONS))
    if unknown:
        raise InvalidArgument(f"unknown import option(s): {', '.join(unknown)}",
                              hint=f"known options: {', '.join(sorted(IMPORT_OPTIONS))}")
    title = option(options, "title", "s")
    memdisk = option(options, "memdisk", "b")
    return ImportOptions(title=title or None, memdisk=memdisk)
