"""pxed on the system bus: org.pxed.Pxed1.Manager and one org.pxed.Pxed1.Job per import.

A thin adapter over :class:`~pxed.service.Service`: each method is one service call
plus the conversion of values and errors (:mod:`pxed.dbus.interface`); signals and
PropertiesChanged come from the service's events.  Rules kept here (security.md §3.5):

- changing methods (AddImage, RemoveImage, Reload, Job.Cancel by another caller) are
  authorized per call (:mod:`pxed.dbus.polkit`) before anything else happens; a denied
  call changes nothing;
- AddImage takes a file descriptor the caller opened, never a path (the service checks
  it is a regular file open for reading, within ``[Images] MaxSize=``);
- file descriptors attached to any other call are closed at once and the call refused,
  so an unprivileged caller cannot make pxed hoard descriptors.

The daemon owns the loop; every public method here must be called from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import os
from collections.abc import Callable
from typing import Any

from dbus_fast import BusType, DBusError, Message, MessageType, NameFlag, RequestNameReply, Variant
from dbus_fast.aio import MessageBus
from dbus_fast.service import ServiceInterface

from pxed import __version__
from pxed.dbus.interface import (
    CURRENT_MESSAGE,
    Caller,
    current_caller,
    exported,
    exported_property,
    exported_signal,
    option,
    to_dbus_error,
    to_vardict,
)
from pxed.dbus.names import (
    BUS_NAME,
    ERROR_PREFIX,
    INTERNAL_ERROR,
    JOB_INTERFACE,
    JOB_PATH_PREFIX,
    MANAGER_INTERFACE,
    OBJECT_PATH,
    Action,
    error_name,
)
from pxed.dbus.polkit import Authorizer, PolkitAuthorizer
from pxed.errors import InvalidArgument, ToolError
from pxed.model import JobState
from pxed.service import ImportOptions, JobInfo, Service
from pxed.service import events as ev

logger = logging.getLogger(__name__)

IMPORT_OPTIONS = {"title": "s", "memdisk": "b"}


def job_path(job_id: int) -> str:
    return f"{JOB_PATH_PREFIX}{job_id}"


class _Authorized(ServiceInterface):
    def __init__(self, name: str, server: DBusServer) -> None:
        super().__init__(name)
        self._server = server

    async def authorize(self, caller: Caller, action: Action) -> None:
        await self._server.authorize(caller, action)


class ManagerObject(_Authorized):
    """org.pxed.Pxed1.Manager at /org/pxed/Pxed1 (see the interface XML and pxectl(1))."""

    def __init__(self, service: Service, server: DBusServer) -> None:
        super().__init__(MANAGER_INTERFACE, server)
        self._service = service

    # ---------------------------------------------------------------- changing methods (polkit)
    @exported("AddImage", action=Action.IMPORT, fd="h", name="s", options="a{sv}", returns="o")
    async def add_image(self, fd: int, name: str, options: dict[str, Variant]) -> str:
        try:
            opts = import_options(options)
        except BaseException:
            os.close(fd)
            raise
        return job_path(self._service.submit_import(fd, name or None, opts, owner=current_caller().sender).id)

    @exported("RemoveImage", action=Action.REMOVE, name="s")
    async def remove_image(self, name: str) -> None:
        await self._service.remove(name)
        logger.info("image %s removed by %s", name, current_caller().sender, extra={"IMAGE_ID": name})

    @exported("Reload", action=Action.RELOAD)
    async def reload(self) -> None:
        await self._service.reload_config()
        logger.info("configuration reloaded on request of %s", current_caller().sender)

    # ---------------------------------------------------------------- reads (snapshots)
    @exported("ListImages", returns="aa{sv}")
    async def list_images(self) -> list[dict[str, Variant]]:
        return [to_vardict({k: v for k, v in r.to_dict().items() if k != "files"})
                for r in self._service.list_images()]

    @exported("GetImage", name="s", returns="a{sv}")
    async def get_image(self, name: str) -> dict[str, Variant]:
        return to_vardict(self._service.get_image(name).to_dict())

    @exported("GetStatus", returns="a{sv}")
    async def get_status(self) -> dict[str, Variant]:
        return to_vardict(self._service.status())

    @exported("ListClients", returns="aa{sv}")
    async def list_clients(self) -> list[dict[str, Variant]]:
        return [to_vardict(c.to_dict()) for c in self._service.list_clients()]

    @exported("ListJobs", returns="aa{sv}")
    async def list_jobs(self) -> list[dict[str, Variant]]:
        return [to_vardict({"Id": j.id, "Path": job_path(j.id), "Name": j.name, "State": j.state, "Progress": j.done,
                            "Total": j.total}) for j in self._service.list_jobs()]

    # ---------------------------------------------------------------- properties
    @exported_property("Interface", "s")
    def interface(self) -> str:
        return str(self._service.announced()["Interface"])

    @exported_property("Address", "s")
    def address(self) -> str:
        return str(self._service.announced()["Address"])

    @exported_property("Version", "s")
    def version(self) -> str:
        return __version__

    @exported_property("State", "s")
    def state(self) -> str:
        return str(self._service.announced()["State"])

    @exported_property("ImageCount", "u")
    def image_count(self) -> int:
        return len(self._service.list_images())

    # ---------------------------------------------------------------- signals
    @exported_signal("ImageAdded", "ss")
    def image_added(self, name: str, title: str) -> list[str]:
        return [name, title]

    @exported_signal("ImageRemoved", "s")
    def image_removed(self, name: str) -> str:
        return name

    @exported_signal("MenusReloaded")
    def menus_reloaded(self) -> None:
        return None

    @exported_signal("ClientSeen", "sqss")
    def client_seen(self, mac: str, arch: int, stage: str, boot_file: str) -> list[Any]:
        return [mac, arch, stage, boot_file]

    @exported_signal("JobNew", "uo")
    def job_new(self, job_id: int, path: str) -> list[Any]:
        return [job_id, path]

    @exported_signal("JobRemoved", "uossss")
    def job_removed(self, job_id: int, path: str, result: str, name: str, error: str, message: str) -> list[Any]:
        return [job_id, path, result, name, error, message]


_JOB_PROPS = {"name": "Name", "state": "State", "done": "Progress", "total": "Total", "detection": "Detection"}


class JobObject(_Authorized):
    """org.pxed.Pxed1.Job at /org/pxed/Pxed1/job/N: one import, exported while it is queued or running."""

    def __init__(self, service: Service, server: DBusServer, job: JobInfo) -> None:
        super().__init__(JOB_INTERFACE, server)
        self._service = service
        self.job = job
        self.path = job_path(job.id)

    def update(self, job: JobInfo) -> None:
        """Take the job's new snapshot and tell watchers what changed (PropertiesChanged)."""
        old, self.job = self.job, job
        changed = {prop: _job_value(getattr(job, field)) for field, prop in _JOB_PROPS.items()
                   if getattr(job, field) != getattr(old, field)}
        if changed:
            self.emit_properties_changed(changed)

    @exported("Cancel")
    async def cancel(self) -> None:
        caller = current_caller()
        if caller.sender != self.job.owner:
            await self.authorize(caller, Action.IMPORT)
        self._service.cancel_import(self.job.id)
        logger.info("import job %d cancelled by %s", self.job.id, caller.sender)

    @exported_property("Id", "u")
    def id_(self) -> int:
        return self.job.id

    @exported_property("Name", "s")
    def name_(self) -> str:
        return self.job.name

    @exported_property("State", "s")
    def state_(self) -> str:
        return self.job.state.value

    @exported_property("Progress", "t")
    def progress_(self) -> int:
        return self.job.done

    @exported_property("Total", "t")
    def total_(self) -> int:
        return self.job.total

    @exported_property("Detection", "a{sv}")
    def detection_(self) -> dict[str, Variant]:
        return _job_value(self.job.detection)  # type: ignore[no-any-return]


def _job_value(value: Any) -> Any:
    if value is None:
        return {}
    if isinstance(value, enum.Enum):
        return value.value
    if hasattr(value, "to_dict"):
        return to_vardict(value.to_dict())
    return value


class DBusServer:
    """Connects, exports, owns org.pxed.Pxed1, and turns the service's events into signals."""

    def __init__(self, service: Service, *, authorizer: Authorizer | None = None) -> None:
        self._service = service
        self._authorizer: Authorizer = authorizer or PolkitAuthorizer()
        self._bus: MessageBus | None = None
        self._manager = ManagerObject(service, self)
        self._jobs: dict[int, JobObject] = {}
        self._unsubscribe: Callable[[], None] | None = None

    async def authorize(self, caller: Caller, action: Action) -> None:
        assert self._bus is not None
        await self._authorizer.check(self._bus, caller.sender, action, interactive=caller.interactive)

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
        self._service.runtime_changed()  # the baseline PropertiesChanged are measured against
        self._unsubscribe = self._service.events.subscribe(self._on_event)
        logger.info("serving %s on the system bus as %s", BUS_NAME, bus.unique_name)

    async def stop(self) -> None:
        """Release the name and disconnect."""
        bus = self._bus
        if bus is None:
            return
        if self._unsubscribe is not None:
            self._unsubscribe()
        # Bounded: when dbus-daemon stops at the same time (system shutdown) the reply never
        # comes, and an unbounded wait held pxed until systemd's stop timeout (90 s) killed it.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(bus.release_name(BUS_NAME), timeout=2)
        bus.disconnect()
        self._bus = None

    # ================================================================== events → bus
    def _on_event(self, event: ev.Event) -> None:
        m = self._manager
        if isinstance(event, ev.ClientSeen):
            m.client_seen(event.mac, event.arch, event.stage, event.boot_file)
        elif isinstance(event, ev.JobChanged):
            if (job := self._jobs.get(event.job.id)) is not None:
                job.update(event.job)
        elif isinstance(event, ev.ImageAdded):
            m.image_added(event.id, event.title)
        elif isinstance(event, ev.ImageRemoved):
            m.image_removed(event.id)
        elif isinstance(event, ev.MenusReloaded):
            m.menus_reloaded()
        elif isinstance(event, ev.StatusChanged):
            m.emit_properties_changed(dict(event.changed))
        elif isinstance(event, ev.JobAdded):
            obj = self._jobs[event.job.id] = JobObject(self._service, self, event.job)
            if self._bus is not None:
                self._bus.export(obj.path, obj)
            m.job_new(event.job.id, obj.path)
        elif isinstance(event, ev.JobRemoved):
            self._job_removed(event)

    def _job_removed(self, event: ev.JobRemoved) -> None:
        job = event.job
        obj = self._jobs.pop(job.id, None)
        if obj is not None and self._bus is not None:
            self._bus.unexport(obj.path, obj)
        if event.error is not None:
            err, text = error_name(event.error), str(event.error)
        elif job.state is JobState.DONE:
            err, text = "", ""
        else:
            err, text = INTERNAL_ERROR, "internal error"
        self._manager.job_removed(job.id, job_path(job.id), job.state.value, job.name, err, text)

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


def import_options(options: dict[str, Variant]) -> ImportOptions:
    unknown = sorted(set(options) - set(IMPORT_OPTIONS))
    if unknown:
        raise InvalidArgument(f"unknown import option(s): {', '.join(unknown)}",
                              hint=f"known options: {', '.join(sorted(IMPORT_OPTIONS))}")
    title = option(options, "title", "s")
    memdisk = option(options, "memdisk", "b")
    return ImportOptions(title=title or None, memdisk=memdisk)
