"""pxed's composition root: the only module that wires every part together.

config → application (:func:`build_service`: boot tree, catalog recovery) → sockets
(socket activation, or bound by hand) → protocol engine → netlink monitor → menus →
D-Bus → sd_notify READY.  SIGHUP reloads (configuration, policy, menus), SIGTERM/SIGINT
stop.  The daemon follows the application through its events (reload → boot policy and
sd_notify); the D-Bus adapter subscribes to the same events.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import ipaddress
import json
import logging
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from pxed import __version__
from pxed.config import Config, default_config_path, load_config
from pxed.dhcp.proxy import Answered, Decision, Listener, Peer, ProxyEngine
from pxed.errors import EX_CONFIG, EX_OK, EX_SOFTWARE, EX_UNAVAILABLE, ConfigError, PxedError, SocketError
from pxed.io import udp
from pxed.io.netlink import InterfaceMonitor, first_look
from pxed.io.systemd import Notifier, Watchdog, listen_fds
from pxed.log import InfoLine, setup_logging
from pxed.model import InterfaceInfo, PxeStage
from pxed.policy import boot_policy

if TYPE_CHECKING:
    from collections.abc import Callable

    from pxed.dbus.polkit import Authorizer
    from pxed.dbus.server import DBusServer
    from pxed.service import RuntimeStatus, Service
    from pxed.service.events import Event

logger = logging.getLogger("pxed.daemon")


class State:
    STARTING = "starting"
    WAITING = "waiting-for-interface"
    RUNNING = "running"
    RELOADING = "reloading"
    STOPPING = "stopping"


@dataclass
class Sockets:
    listeners: dict[Listener, udp.DatagramListener]
    activated: bool
    # listeners[DHCP] and listeners[PXE]: a dict lookup hashes the enum, a Python call, per reply
    _by_port: tuple[udp.DatagramListener | None, udp.DatagramListener | None] = field(init=False)

    def __post_init__(self) -> None:
        self._by_port = (self.listeners.get(Listener.DHCP), self.listeners.get(Listener.PXE))

    def to(self, listener: Listener) -> udp.DatagramListener:
        """The socket a reply for `listener` leaves from."""
        got = self._by_port[listener is Listener.PXE]
        if got is None:
            raise KeyError(listener)
        return got


def build_service(config: Config, config_path: Path | None, *,
                  server_address: Callable[[], ipaddress.IPv4Address | None],
                  runtime: Callable[[], RuntimeStatus] | None = None) -> Service:
    """The application as pxed runs it: the one factory, for the daemon and for the tests."""
    from pxed.service import Service

    return Service(config, server_address=server_address, runtime=runtime, config_path=config_path)


async def serve_on_bus(service: Service, bus_address: str | None = None,
                       authorizer: Authorizer | None = None) -> DBusServer:
    """The D-Bus adapter of ``service``, exported and owning org.pxed.Pxed1 (raises ToolError)."""
    from pxed.dbus.server import DBusServer

    server = DBusServer(service, authorizer=authorizer)
    await server.start(bus_address)
    return server


class Daemon:
    def __init__(self, config: Config, config_path: Path) -> None:
        assert config.interface is not None
        self.config = config
        self.config_path = config_path
        self.interface_name: str = config.interface
        self.state = State.STARTING
        self.iface: InterfaceInfo | None = None
        # (snapshot, its address), replaced as one
        self._address_of: tuple[InterfaceInfo | None, ipaddress.IPv4Address | None] = (None, None)
        self.notifier = Notifier()
        self.engine = ProxyEngine(boot_policy(config))
        self.service = build_service(config, config_path, server_address=self.server_address, runtime=self.runtime)
        self.service.events.subscribe(self._on_event)
        self._state_before_reload = self.state
        self.dbus: DBusServer | None = None
        self._dbus_task: asyncio.Task[None] | None = None
        self.sockets: Sockets | None = None
        self.monitor: InterfaceMonitor | None = None
        self._stop = asyncio.Event()
        self._peer_text: list[tuple[Peer | None, str]] = [(None, ""), (None, "")]  # [port 67, port 4011]
        self._exchange_lines: dict[tuple[object, ...], InfoLine] = {}

    # ------------------------------------------------------------------ state
    def server_address(self) -> ipaddress.IPv4Address | None:
        iface = self.iface
        cached = self._address_of
        if iface is not cached[0]:  # once per interface snapshot, not per reply
            cached = self._address_of = (iface, iface.address if iface is not None and iface.up else None)
        return cached[1]

    def status_line(self) -> str:
        if self.state == State.WAITING or self.iface is None:
            return f"Waiting for interface {self.interface_name}"
        addr = self.server_address()
        if addr is None:
            return f"Waiting for an IPv4 address on {self.interface_name}"
        return f"Serving {self.interface_name} ({addr}); {self.engine.answered} clients answered"

    def runtime(self) -> RuntimeStatus:
        from pxed.service import RuntimeStatus

        addr = self.server_address()
        return RuntimeStatus(interface=self.interface_name, address=str(addr) if addr else None,
                             state=self.state, clients_answered=self.engine.answered)

    def _set_state(self, state: str) -> None:
        self.state = state
        self.notifier.status(self.status_line())
        self.service.runtime_changed()

    # ------------------------------------------------------------------ packets
    def on_datagram(self, data: bytes, peer: Peer) -> None:
        iface = self.iface
        if iface is None or self.server_address() is None:
            logger.debug("datagram from %s before %s has an address; ignored", peer.address, self.interface_name)
            return
        decision = self.engine.receive(data, peer, iface, time.monotonic())
        self._act(decision, peer)

    def _act(self, decision: Decision, peer: Peer) -> None:
        assert self.sockets is not None
        ev = decision.event
        if decision.outgoing is not None:
            out = decision.outgoing
            sent = self.sockets.to(out.listener).send(out, self.server_address())
            if not sent:
                return
        if isinstance(ev, Answered):
            # the key holds no enum: an Enum member's hash is a Python call
            key = (ev.boot_file, ev.arch, ev.ipxe, ev.stage is PxeStage.ACK, peer.listener is Listener.PXE)
            line = self._exchange_lines.get(key)
            if line is None:
                line = self._exchange_line(key, ev, peer.listener)
            # one journal line per answered exchange
            line.info((ev.mac, ev.uuid or "", self._address_text(peer)))
            self.service.client_seen(ev.mac, ev.arch, str(ev.stage), ev.boot_file)
        else:
            level = logging.INFO if ev.notable else logging.DEBUG
            if logger.isEnabledFor(level):
                logger.log(level, "Ignored request from %s: %s", ev.mac or peer.address, ev.reason,
                           extra={"CLIENT_MAC": ev.mac or "", "REASON": ev.reason, "CLIENT_IP": str(peer.address)})

    def _exchange_line(self, key: tuple[object, ...], ev: Answered, listener: Listener) -> InfoLine:
        """The log line for exchanges like `ev` (kept under `key`); values: the client's MAC, UUID and address."""
        if len(self._exchange_lines) >= 256:
            self._exchange_lines.clear()
        line = self._exchange_lines[key] = InfoLine(
            logger,
            (f"{'Proxy offer' if ev.stage == 'offer' else 'PXE ack'} sent to ", 0,
             f" (arch {ev.arch}{', iPXE' if ev.ipxe else ''}): boot file {ev.boot_file}"),
            {"CLIENT_MAC": 0, "CLIENT_ARCH": str(ev.arch), "CLIENT_UUID": 1, "PXE_STAGE": str(ev.stage),
             "BOOT_FILE": ev.boot_file, "CLIENT_IP": 2, "LISTENER": str(listener)})
        return line

    def _address_text(self, peer: Peer) -> str:
        # The UDP adapter hands on one Peer object per client address and listener; DISCOVERs
        # (port 67) and REQUESTs (port 4011) alternate, so each listener has its own entry.
        texts = self._peer_text
        i = 1 if peer.listener is Listener.PXE else 0
        last = texts[i]
        if last[0] is not peer:
            last = texts[i] = (peer, str(peer.address))
        return last[1]

    # ------------------------------------------------------------------ interface
    def on_interface(self, info: InterfaceInfo | None) -> None:
        old = self.server_address()
        self.iface = info
        new = self.server_address()
        if info is None:
            logger.warning("interface %s disappeared; waiting for it", self.interface_name,
                           extra={"INTERFACE": self.interface_name})
            self._set_state(State.WAITING)
            return
        if old != new:
            logger.info("%s address is now %s", self.interface_name, new or "none",
                        extra={"INTERFACE": self.interface_name, "SERVER_ADDRESS": str(new or "")})
            self._render_menus()
        if self.state in (State.WAITING, State.STARTING) and new is not None:
            self._set_state(State.RUNNING)
        else:
            self._set_state(self.state)

    def _render_menus(self) -> None:
        if self.server_address() is not None:
            self.service.address_changed()

    # ------------------------------------------------------------------ reload
    async def reload(self) -> None:
        """Reload pxed.conf (SIGHUP); the events below do the daemon's part, as for D-Bus Reload."""
        await self.service.reload_config()

    def _on_event(self, event: Event) -> None:
        from pxed.service import events as ev

        if isinstance(event, ev.Reloading):
            self.notifier.reloading()
            self._state_before_reload, self.state = self.state, State.RELOADING
        elif isinstance(event, ev.Reloaded):
            config = event.config
            if config.interface != self.interface_name:
                logger.warning("Interface= changed to %s; restart pxed.socket to serve it "
                               "(systemctl daemon-reload && systemctl restart pxed.socket)", config.interface)
            self.config = config
            self.engine.policy = boot_policy(config)
            self.state = self._state_before_reload
            self.notifier.ready(self.status_line())
        elif isinstance(event, ev.ReloadFailed):
            self.state = self._state_before_reload
            self.notifier.ready(self.status_line())

    # ------------------------------------------------------------------ setup
    def open_sockets(self) -> Sockets:
        fds = listen_fds()
        activated = bool(fds)
        socks: dict[Listener, socket.socket] = {}
        if activated:
            socks = self._classify(fds)
        else:
            for listener in Listener:
                socks[listener] = udp.bind_own(listener, self.interface_name)
        listeners = {}
        for listener, s in socks.items():
            bound = udp.prepare(s, self.interface_name)
            listeners[listener] = udp.DatagramListener(
                s, listener, self.on_datagram, device_bound=bound,
                ifindex=lambda: self.iface.index if self.iface else None)
        return Sockets(listeners, activated)

    @staticmethod
    def _classify(fds: dict[str, list[int]]) -> dict[Listener, socket.socket]:
        """Match passed sockets to listeners: by FileDescriptorName= (dhcp, pxe), else by port."""
        socks: dict[Listener, socket.socket] = {}
        by_port = {port: listener for listener, port in udp.PORTS.items()}
        for name, group in fds.items():
            for fd in group:
                s = socket.socket(fileno=fd)
                try:
                    port = int(s.getsockname()[1])
                except (OSError, IndexError, TypeError):
                    port = -1
                listener = Listener(name) if name in {x.value for x in Listener} else by_port.get(port)
                if listener is None or listener in socks:
                    s.detach()
                    raise SocketError(
                        f"cannot tell what passed socket fd {fd} (name {name!r}, port {port}) is for",
                        hint="pxed.socket passes UDP 67 and 4011, named dhcp and pxe; see pxed(8)")
                socks[listener] = s
        missing = [x.value for x in Listener if x not in socks]
        if missing:
            raise SocketError(f"socket activation passed no {' or '.join(missing)} socket",
                                  hint="pxed.socket must listen on UDP 67 (dhcp) and 4011 (pxe)")
        return socks

    async def start_dbus(self) -> None:
        """Offer org.pxed.Pxed1; without a system bus pxed keeps serving DHCP and says so."""
        # Yield once first: datagrams queued before we started (the one that socket-activated
        # us) are answered in this loop iteration, before ~20 ms of dbus_fast import and connect.
        await asyncio.sleep(0)
        try:
            server = await serve_on_bus(self.service)
        except PxedError as e:
            logger.warning("D-Bus API unavailable, pxectl cannot reach this daemon: %s", e)
            return
        except Exception:  # an adapter failure must never take DHCP down with it
            logger.exception("D-Bus API unavailable, pxectl cannot reach this daemon")
            return
        finally:
            # Start-up is over: what exists now lives as long as the daemon.  Keep it out of
            # the cyclic collector, whose full pass over it (~10 ms) stalls the packet path.
            gc.freeze()
        self.dbus = server

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(self._reload_quietly()))

        self.notifier.status("Preparing boot tree and catalog")
        await asyncio.to_thread(self.service.try_install_boot_files)
        report = await asyncio.to_thread(self.service.recover)
        for name in getattr(report, "failed_imports", ()):
            logger.warning("import of %s was interrupted; marked failed", name, extra={"IMAGE_ID": name})

        self.sockets = self.open_sockets()
        # Answer first (the datagram that socket-activated us is waiting), from the kernel's
        # quick look at the interface: importing pyroute2 takes longer than that answer.
        # One loop pass schedules the readers, the next runs them.  The menus, written on
        # every start for the current address, are fetched only after a boot file.
        self.iface = first_look(self.interface_name, self.sockets.to(Listener.DHCP).sock)
        for lst in self.sockets.listeners.values():
            lst.start(loop)
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        self.monitor = InterfaceMonitor(self.interface_name, self.on_interface)
        info = await self.monitor.start()  # netlink's snapshot from now on, followed as it changes
        self.iface = info
        if info is None:
            logger.warning("interface %s does not exist yet; waiting for it", self.interface_name)
            self.state = State.WAITING
        else:
            self.state = State.RUNNING if self.server_address() else State.WAITING
            self._render_menus()

        logger.info("pxed %s started on %s (%s sockets)", __version__, self.interface_name,
                    "socket-activated" if self.sockets.activated else "own",
                    extra={"INTERFACE": self.interface_name, "SERVER_ADDRESS": str(self.server_address() or "")})
        self.notifier.ready(self.status_line())
        self._dbus_task = asyncio.create_task(self.start_dbus())  # after READY: DHCP never waits for it
        watchdog = asyncio.create_task(self._watchdog(Watchdog.from_env()))
        status = asyncio.create_task(self._status_ticker())
        await self._stop.wait()

        self.state = State.STOPPING
        self.notifier.stopping()
        logger.info("stopping")
        watchdog.cancel()
        status.cancel()
        for lst in self.sockets.listeners.values():
            lst.stop()
        await self.monitor.stop()
        if self._dbus_task is not None:
            self._dbus_task.cancel()
        with contextlib.suppress(Exception):
            await self.service.stop()
        if self.dbus is not None:
            with contextlib.suppress(Exception):
                await self.dbus.stop()
        return EX_OK

    async def _reload_quietly(self) -> None:
        with contextlib.suppress(ConfigError):
            await self.reload()

    async def _watchdog(self, wd: Watchdog) -> None:
        if wd.ping_every is None:
            return
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(wd.ping_every)

    async def _status_ticker(self) -> None:
        last = -1
        while True:
            await asyncio.sleep(5)
            if self.engine.answered != last:
                last = self.engine.answered
                self.notifier.status(self.status_line())


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="pxed",
        description="Proxy-DHCP network-boot server. Normally started by systemd through pxed.socket; "
                    "run by hand it binds UDP 67 and 4011 on the configured interface itself.",
        epilog="Examples:\n"
               "  pxed --check-config           validate /etc/pxed/pxed.conf and its drop-ins\n"
               "  pxed --dump-config --json     show the effective configuration\n"
               "  pxed --config ./lab.conf -d   run in the foreground with debug logging\n\n"
               "See pxed(8) and pxed.conf(5).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-c", "--config", type=Path, default=None,
                   help="configuration file (default: $PXED_CONFIG or /etc/pxed/pxed.conf; "
                        "drop-ins are read from FILE.d/*.conf)")
    p.add_argument("-d", "--debug", action="store_true", help="log at debug level")
    p.add_argument("--log-target", choices=("auto", "journal", "stderr"), default="auto",
                   help="where to log (default: the journal under systemd, else stderr)")
    p.add_argument("--check-config", action="store_true", help="validate the configuration and exit")
    p.add_argument("--dump-config", action="store_true", help="print the effective configuration and exit")
    p.add_argument("--json", action="store_true", help="with --dump-config: print JSON")
    p.add_argument("--version", action="version", version=f"pxed {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(debug=args.debug, target=args.log_target)
    path: Path = args.config or default_config_path()
    try:
        config = load_config(path)
    except ConfigError as e:
        print(f"pxed: {e}", file=sys.stderr)
        logger.error("invalid configuration: %s", e)
        return EX_CONFIG
    if args.dump_config:
        data = config.to_dict()
        if args.json:
            print(json.dumps(data, indent=2))
        else:
            for k, v in data.items():
                print(f"{k} = {v}")
        return EX_OK
    if args.check_config:
        if not config.configured:
            print(f"pxed: {path}: no [Network] Interface= set; pxed would not serve anything", file=sys.stderr)
            return EX_CONFIG
        print(f"{path}: OK ({len(config.sources)} file(s), interface {config.interface})")
        return EX_OK
    if not config.configured:
        msg = (f"no interface configured: set [Network] Interface= in {path}, "
               "then run 'systemctl daemon-reload && systemctl restart pxed.socket'")
        print(f"pxed: {msg}", file=sys.stderr)
        logger.error("%s", msg)
        return EX_CONFIG
    try:
        daemon = Daemon(config, path)
        return asyncio.run(daemon.run())
    except PxedError as e:
        print(f"pxed: {e}", file=sys.stderr)
        logger.error("%s", e)
        return e.exit_code if e.exit_code != EX_SOFTWARE else EX_UNAVAILABLE
    except KeyboardInterrupt:
        return EX_OK


if __name__ == "__main__":
    raise SystemExit(main())
