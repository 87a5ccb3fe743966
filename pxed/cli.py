"""pxectl: manage pxed's images and watch boots over D-Bus (org.pxed.Pxed1).

Every verb is one or two D-Bus calls; nothing here touches pxed's files.  Errors come
back as ``org.pxed.Pxed1.Error.*`` names and are mapped onto :mod:`pxed.errors`, whose
exit codes pxectl returns (sysexits.h; 130 after Ctrl-C).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import enum
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from dbus_fast import BusType, Message, MessageFlag, MessageType, Variant
from dbus_fast.aio import MessageBus

from pxed import __version__
from pxed.dbus.names import (
    BUS_NAME,
    DBUS_ACCESS_DENIED,
    DBUS_UNAVAILABLE,
    INTERNAL_ERROR,
    JOB_INTERFACE,
    MANAGER_INTERFACE,
    OBJECT_PATH,
    error_class,
)
from pxed.dbus.values import plain
from pxed.errors import EX_OK, AccessDenied, Cancelled, InvalidArgument, NotFound, PxedError, ToolError
from pxed.model import ClientArch

EX_INTERRUPTED = 130
CALL_TIMEOUT = 30.0  # seconds; D-Bus's own default is 25
AUTH_TIMEOUT = 300.0  # changing calls may wait for a polkit agent's password prompt
POLL_INTERVAL = 0.2
NOT_RUNNING_HINT = "is pxed.socket enabled? systemctl enable --now pxed.socket"
DENIED_HINT = "run as root or a member of pxed-admin"


class Verb(enum.StrEnum):
    STATUS = "status"
    LIST = "list"
    SHOW = "show"
    ADD = "add"
    REMOVE = "remove"
    RELOAD = "reload"
    CLIENTS = "clients"


# =========================================================================== D-Bus client


def remote_error(name: str | None, text: str) -> PxedError:
    """A D-Bus error reply as the PxedError it stands for."""
    name = name or ""
    if name in DBUS_UNAVAILABLE:
        return ToolError(f"pxed is not running and could not be started ({text or name})", hint=NOT_RUNNING_HINT)
    if name == DBUS_ACCESS_DENIED:
        return AccessDenied(f"access denied by the D-Bus policy: {text}", hint=DENIED_HINT)
    if name == INTERNAL_ERROR:
        return PxedError("internal error in pxed", hint="see journalctl -u pxed")
    cls = error_class(name)
    if cls is None:
        return PxedError(f"{name}: {text}" if text else name)
    return cls(text)


class Client:
    def __init__(self, bus: MessageBus, *, interactive: bool) -> None:
        self.bus = bus
        self.interactive = interactive

    @classmethod
    async def connect(cls, address: str | None, *, interactive: bool) -> Client:
        try:
            bus = await asyncio.wait_for(
                MessageBus(bus_address=address, bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect(),
                CALL_TIMEOUT)
        except (OSError, ValueError, TimeoutError) as e:
            where = address or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS") or "the system bus"
            raise ToolError(f"cannot connect to {where}: {e}", hint="is dbus running? systemctl status dbus") from None
        return cls(bus, interactive=interactive)

    async def call(self, member: str, signature: str = "", body: Sequence[Any] = (), *,
                   path: str = OBJECT_PATH, interface: str = MANAGER_INTERFACE, fds: Sequence[int] = (),
                   changing: bool = False) -> list[Any]:
        flags = MessageFlag.ALLOW_INTERACTIVE_AUTHORIZATION if changing and self.interactive else MessageFlag.NONE
        msg = Message(destination=BUS_NAME, path=path, interface=interface, member=member, signature=signature,
                      body=list(body), unix_fds=list(fds), flags=flags)
        timeout = AUTH_TIMEOUT if changing and self.interactive else CALL_TIMEOUT
        try:
            reply = await asyncio.wait_for(self.bus.call(msg), timeout)
        except TimeoutError:
            raise ToolError(f"pxed did not answer {member} within {timeout:.0f} s",
                            hint="see systemctl status pxed") from None
        except (OSError, EOFError) as e:
            raise ToolError(f"lost the connection to the bus: {e}", hint=NOT_RUNNING_HINT) from None
        assert reply is not None
        if reply.message_type == MessageType.ERROR:
            text = reply.body[0] if reply.body and isinstance(reply.body[0], str) else ""
            raise remote_error(reply.error_name, text)
        return list(reply.body)

    async def get_all(self, path: str, interface: str) -> dict[str, Any]:
        (props,) = await self.call("GetAll", "s", [interface], path=path, interface="org.freedesktop.DBus.Properties")
        return plain(props)  # type: ignore[no-any-return]

    async def add_match(self, rule: str) -> None:
        reply = await self.bus.call(Message(
            destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus",
            member="AddMatch", signature="s", body=[rule]))
        if reply is not None and reply.message_type == MessageType.ERROR:
            raise ToolError(f"cannot watch pxed's signals: {reply.error_name}")


# =========================================================================== formatting


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def arch_name(arch: int) -> str:
    try:
        return f"{arch} ({ClientArch(arch).name.lower().replace('_', '-')})"
    except ValueError:
        return str(arch)


def when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def table(rows: list[list[str]], header: list[str], out: TextIO) -> None:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for r in [header, *rows]:
        out.write("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() + "\n")


def detection_summary(det: dict[str, Any]) -> str:
    if not det:
        return "not detected"
    what = det.get("profile", "?")
    if det.get("version"):
        what += f" {det['version']}"
    if det.get("label"):
        what += f" (label {det['label']})"
    if det.get("memdisk") or not det.get("kernel"):
        return f"{what}: boots whole through memdisk"
    initrds = det.get("initrds") or []
    return f"{what}: kernel {det['kernel']}" + (f", initrd {' '.join(initrds)}" if initrds else "")


def boots_on(det: dict[str, Any]) -> str | None:
    """Which firmware's menus offer the image: whole ISOs boot through memdisk, a BIOS program."""
    if not det:
        return None
    if det.get("memdisk") or not det.get("kernel"):
        return "BIOS only (whole ISO through memdisk; UEFI menus leave it out)"
    return "BIOS and UEFI"


def dump_json(data: Any, out: TextIO) -> None:
    out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")


# =========================================================================== progress


class ProgressView:
    """A bar with bytes and rate on a terminal; a plain line every 10 % otherwise."""

    def __init__(self, out: TextIO, *, tty: bool, quiet: bool) -> None:
        self.out = out
        self.tty = tty
        self.quiet = quiet
        self.start = time.monotonic()
        self.samples: list[tuple[float, int]] = []
        self.last_step = -1
        self.drawn = False

    def rate(self, done: int) -> float:
        now = time.monotonic()
        self.samples.append((now, done))
        self.samples = [s for s in self.samples if now - s[0] <= 3.0] or [(now, done)]
        t0, d0 = self.samples[0]
        return (done - d0) / (now - t0) if now - t0 > 0.05 else 0.0

    def update(self, done: int, total: int) -> None:
        if self.quiet:
            return
        rate = self.rate(done)
        pct = 100.0 * done / total if total else 0.0
        figures = f"{human_size(done)} / {human_size(total)}  {human_size(rate)}/s"
        if self.tty:
            width = 30
            fill = int(width * pct / 100)
            eta = ""
            if rate > 0 and done < total:
                secs = int((total - done) / rate)
                eta = f"  ETA {secs // 60}:{secs % 60:02d}"
            self.out.write(f"\r\x1b[K[{'#' * fill}{'-' * (width - fill)}] {pct:3.0f}%  {figures}{eta}")
            self.drawn = True
        else:
            step = int(pct // 10)
            if step <= self.last_step:
                return
            self.last_step = step
            self.out.write(f"importing: {pct:3.0f}%  {figures}\n")
        self.out.flush()

    def message(self, text: str) -> None:
        if self.quiet:
            return
        self.clear()
        self.out.write(text + "\n")
        self.out.flush()

    def finish(self, total: int) -> None:
        """The last word on a finished copy: a full bar left on screen, or the 100 % line."""
        if self.quiet:
            return
        elapsed = max(time.monotonic() - self.start, 1e-3)
        figures = f"{human_size(total)} in {elapsed:.1f} s, {human_size(total / elapsed)}/s"
        if self.tty:
            self.out.write(f"\r\x1b[K[{'#' * 30}] 100%  {figures}\n")
            self.drawn = False
        elif self.last_step < 10:
            self.out.write(f"importing: 100%  {figures}\n")
        self.out.flush()

    def clear(self) -> None:
        if self.tty and self.drawn:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.drawn = False


# =========================================================================== verbs


class Pxectl:
    def __init__(self, client: Client, args: argparse.Namespace, out: TextIO, err: TextIO) -> None:
        self.c = client
        self.args = args
        self.out = out
        self.err = err

    async def do_status(self) -> int:
        (st,) = await self.c.call("GetStatus")
        data = plain(st)
        if self.args.json:
            dump_json(data, self.out)
            return EX_OK
        iface = data.get("Interface") or "(none)"
        addr = data.get("Address") or "no IPv4 address"
        rows = [
            ("State", data.get("State", "?")),
            ("Interface", f"{iface} ({addr})"),
            ("Version", data.get("Version", "?")),
            ("Images", f"{data.get('Images', 0)} ({data.get('ImagesReady', 0)} ready, "
                       f"{data.get('Jobs', 0)} importing)"),
            ("Clients", f"{data.get('ClientsAnswered', 0)} answered, {data.get('ClientsSeen', 0)} machines seen"),
            ("Boot root", data.get("BootRoot", "?")),
            ("Config", ", ".join(data.get("ConfigFiles", [])) or "(defaults)"),
        ]
        for k, v in rows:
            self.out.write(f"{k + ':':<11}{v}\n")
        return EX_OK

    async def do_list(self) -> int:
        (images,) = await self.c.call("ListImages")
        data = plain(images)
        if self.args.json:
            dump_json(data, self.out)
        elif self.args.quiet:
            for img in data:
                self.out.write(img["id"] + "\n")
        elif not data:
            self.err.write("No images. Import one with: pxectl add ISO\n")
        else:
            table([[i["id"], i.get("state", "?"), human_size(i.get("size", 0)),
                    i.get("detection", {}).get("profile", "?"), i.get("title", "")] for i in data],
                  ["NAME", "STATE", "SIZE", "PROFILE", "TITLE"], self.out)
        return EX_OK

    async def do_show(self) -> int:
        (img,) = await self.c.call("GetImage", "s", [self.args.name])
        data = plain(img)
        if self.args.json:
            dump_json(data, self.out)
            return EX_OK
        self.write_image(data)
        return EX_OK

    def write_image(self, data: dict[str, Any]) -> None:
        det = data.get("detection", {})
        rows = [
            ("Name", data.get("id")), ("Title", data.get("title")), ("State", data.get("state")),
            ("Reason", data.get("reason")), ("Detected", detection_summary(det)),
            ("Boots on", boots_on(det)),
            ("Command line", det.get("cmdline") or None),
            ("Size", human_size(data.get("size", 0)) + f" on disk, ISO {human_size(data.get('iso_size', 0))}"),
            ("ISO sha256", data.get("iso_sha256")),
            ("Imported", when(data["created"]) if data.get("created") else None),
            ("Files", str(len(data.get("files", []))) if data.get("files") else None),
        ]
        for k, v in rows:
            if v not in (None, ""):
                self.out.write(f"{k + ':':<14}{v}\n")

    async def do_remove(self) -> int:
        await self.c.call("RemoveImage", "s", [self.args.name], changing=True)
        if self.args.json:
            dump_json({"removed": self.args.name}, self.out)
        else:
            self.out.write(f"Removed image {self.args.name}.\n")
        return EX_OK

    async def do_reload(self) -> int:
        await self.c.call("Reload", changing=True)
        if self.args.json:
            dump_json({"reloaded": True}, self.out)
        else:
            self.out.write("Reloaded the configuration and regenerated the menus.\n")
        return EX_OK

    async def do_clients(self) -> int:
        (clients,) = await self.c.call("ListClients")
        data = plain(clients)
        if self.args.json:
            dump_json(data, self.out)
        elif not data:
            self.err.write("No clients seen since pxed started.\n")
        else:
            table([[c["mac"], arch_name(c["arch"]), c["stage"], c["boot_file"], when(c["when"]), str(c["count"])]
                   for c in data], ["MAC", "ARCH", "STAGE", "BOOT FILE", "LAST SEEN", "COUNT"], self.out)
        return EX_OK

    # ------------------------------------------------------------------ add
    async def do_add(self) -> int:
        path: str = self.args.iso
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound(f"{path}: no such file") from None
        except PermissionError:
            raise AccessDenied(f"{path}: permission denied", hint="pxectl passes the ISO as an open file, "
                               "so you must be able to read it") from None
        except OSError as e:
            raise InvalidArgument(f"{path}: {e.strerror}") from None
        options: dict[str, Variant] = {}
        if self.args.title:
            options["title"] = Variant("s", self.args.title)
        if self.args.memdisk is not None:
            options["memdisk"] = Variant("b", self.args.memdisk)

        removed: dict[str, list[Any]] = {}

        def on_signal(msg: Message) -> None:
            if (msg.message_type == MessageType.SIGNAL and msg.member == "JobRemoved"
                    and msg.interface == MANAGER_INTERFACE and msg.path == OBJECT_PATH):
                removed[msg.body[1]] = list(msg.body)

        self.c.bus.add_message_handler(on_signal)
        await self.c.add_match(f"type='signal',sender='{BUS_NAME}',path='{OBJECT_PATH}',"
                               f"interface='{MANAGER_INTERFACE}',member='JobRemoved'")
        try:
            (job,) = await self.c.call("AddImage", "hsa{sv}", [0, self.args.name or "", options], fds=[fd],
                                       changing=True)
        finally:
            os.close(fd)
        return await self.follow(job, removed)

    async def follow(self, job: str, removed: dict[str, list[Any]]) -> int:
        tty = self.err.isatty()
        view = ProgressView(self.err, tty=tty, quiet=self.args.json)
        interrupted = asyncio.Event()
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(signal.SIGINT, interrupted.set)
        cancel_sent_at: float | None = None
        shown_detection = shown_queued = False
        queued_since = 0.0
        try:
            while job not in removed:
                if interrupted.is_set() and cancel_sent_at is None:
                    view.message("Cancelling the import...")
                    cancel_sent_at = time.monotonic()
                    with contextlib.suppress(PxedError):
                        await self.c.call("Cancel", path=job, interface=JOB_INTERFACE, changing=True)
                if cancel_sent_at is not None and time.monotonic() - cancel_sent_at > 60:
                    raise ToolError("the import did not stop within 60 s of cancelling", hint="see journalctl -u pxed")
                try:
                    props = await self.c.get_all(job, JOB_INTERFACE)
                except PxedError:
                    if job in removed:
                        break
                    await asyncio.sleep(POLL_INTERVAL)
                    if job not in removed:  # the job is gone without saying how it ended
                        raise ToolError("the import job vanished (pxed stopped?)", hint="see journalctl -u pxed") \
                            from None
                    break
                det = props.get("Detection") or {}
                if det and not shown_detection:
                    shown_detection = True
                    view.message(f"Detected {detection_summary(det)}")
                if props.get("State") == "queued":
                    queued_since = queued_since or time.monotonic()
                    if not shown_queued and time.monotonic() - queued_since > 1.0:
                        shown_queued = True
                        view.message("Waiting for another import to finish...")
                elif props.get("Total"):
                    view.update(int(props.get("Progress", 0)), int(props["Total"]))
                await asyncio.sleep(POLL_INTERVAL)
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(signal.SIGINT)
            view.clear()
        _id, _path, result, name, error, message = removed[job]
        if result == "done":
            (img,) = await self.c.call("GetImage", "s", [name])
            data = plain(img)
            view.finish(int(data.get("iso_size") or 0))
            if self.args.json:
                dump_json(data, self.out)
            else:
                self.out.write(f"Imported {name}: {detection_summary(data.get('detection', {}))}\n")
            return EX_OK
        if result == "canceled" and cancel_sent_at is not None:
            self.err.write("Import cancelled.\n")
            return EX_INTERRUPTED
        if result == "canceled":
            raise Cancelled(message or "the import was cancelled")
        raise remote_error(error, message)


# =========================================================================== argument parsing

EPILOG = """\
examples:
  pxectl status                     is pxed serving, on which interface and address?
  pxectl add debian-12.iso          import an ISO; its name comes from the ISO (e.g. debian-12.5)
  pxectl add ~/x.iso --name lab-x --title "Lab X rescue"
                                    import under a chosen name and menu title
  pxectl add old.iso --memdisk      boot the whole ISO through memdisk
  pxectl list                       images and their state (-q: names only, for scripts)
  pxectl show debian-12.5           what was detected: kernel, initrds, command line
  pxectl remove debian-12.5         remove an image and its menu entry
  pxectl reload                     re-read /etc/pxed/pxed.conf and regenerate the menus
  pxectl clients                    recent boots per MAC: arch, stage, boot file, time
  pxectl list --json | jq -r '.[].id'

Changing verbs (add, remove, reload) need root, membership of pxed-admin or polkit
authorization.  Exit status: 0 on success, sysexits.h codes on errors (e.g. 66 no such
image, 69 pxed not running, 73 image exists, 77 access denied), 130 after Ctrl-C.
See pxectl(1), pxed(8) and pxed.conf(5).
"""


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print machine-readable JSON on stdout")
    p = argparse.ArgumentParser(
        prog="pxectl", description="Manage pxed's boot images and watch network boots (talks to pxed over D-Bus).",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", default=False, help="print machine-readable JSON on stdout")
    p.add_argument("--bus-address", metavar="ADDRESS", default=None,
                   help="D-Bus address to use instead of the system bus (default: $DBUS_SYSTEM_BUS_ADDRESS "
                        "or the system bus)")
    p.add_argument("--no-ask-password", action="store_true",
                   help="do not let polkit ask for a password (default: ask when on a terminal)")
    p.add_argument("--version", action="version", version=f"pxectl {__version__}")
    sub = p.add_subparsers(dest="verb", metavar="COMMAND", required=True)

    def verb(v: Verb, help_: str, example: str) -> argparse.ArgumentParser:
        return sub.add_parser(v.value, parents=[common], help=help_, description=help_,
                              epilog=f"example:\n  {example}", formatter_class=argparse.RawDescriptionHelpFormatter)

    verb(Verb.STATUS, "show whether pxed serves, where, and counts of images and clients", "pxectl status")
    lst = verb(Verb.LIST, "list the images", "pxectl list -q | xargs -n1 pxectl show")
    lst.add_argument("-q", "--quiet", action="store_true", help="print only the image names")
    show = verb(Verb.SHOW, "show one image: state, detection, kernel command line", "pxectl show debian-12.5")
    show.add_argument("name", metavar="NAME")
    add = verb(Verb.ADD, "import an ISO image (opened by pxectl and passed to pxed as a file descriptor)",
               'pxectl add debian-12.5.0-amd64-netinst.iso --name debian --title "Debian 12 installer"')
    add.add_argument("iso", metavar="ISO", help="the ISO image file")
    add.add_argument("--name", help="image name (a-z, 0-9, '.', '_', '-'; default: derived from the ISO)")
    add.add_argument("--title", help="menu title (default: derived from the ISO)")
    md = add.add_mutually_exclusive_group()
    md.add_argument("--memdisk", dest="memdisk", action="store_const", const=True, default=None,
                    help="boot the whole ISO through memdisk even if its layout is known")
    md.add_argument("--no-memdisk", dest="memdisk", action="store_const", const=False,
                    help="refuse the ISO rather than fall back to memdisk when its layout is unknown")
    rm = verb(Verb.REMOVE, "remove an image and its menu entry", "pxectl remove debian-12.5")
    rm.add_argument("name", metavar="NAME")
    verb(Verb.RELOAD, "re-read pxed.conf and regenerate the menus", "pxectl reload")
    verb(Verb.CLIENTS, "list recent boots per MAC address", "pxectl clients --json")
    return p


async def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    interactive = sys.stdin.isatty() and not args.no_ask_password
    client = await Client.connect(args.bus_address, interactive=interactive)
    try:
        app = Pxectl(client, args, out, err)
        handler: Callable[[], Any] = getattr(app, "do_" + Verb(args.verb).value)
        return int(await handler())
    finally:
        client.bus.disconnect()


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args, sys.stdout, sys.stderr))
    except PxedError as e:
        sys.stderr.write(f"pxectl: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("pxectl: interrupted\n")
        return EX_INTERRUPTED
    except BrokenPipeError:
        return EX_OK


if __name__ == "__main__":
    raise SystemExit(main())
