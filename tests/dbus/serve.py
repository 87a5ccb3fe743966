"""Test harness: pxed's application and D-Bus adapter on a given bus, without sockets or netlink.

    python -m tests.dbus.serve --bus-address ADDR --config PXED_CONF

Builds the application with the daemon's own factory (:func:`pxed.daemon.build_service`,
:func:`pxed.daemon.serve_on_bus`) on the configuration's state directory and boot root,
prints ``READY`` once the name is owned, then reads commands on
stdin, one per line, to play the daemon's part:

    client MAC ARCH STAGE BOOT_FILE     a boot exchange (ClientSeen + ListClients)
    clients N                           N exchanges at once, from N clients
    runtime INTERFACE ADDRESS STATE     new runtime status (PropertiesChanged), "-" for none
    quit                                stop (also on EOF)

PXED_TEST_THROTTLE=SECONDS makes every progress report of an import sleep that long.
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from pxed.config import load_config
from pxed.daemon import build_service, serve_on_bus
from pxed.service import RuntimeStatus


async def serve(address: str, config_path: Path) -> None:
    config = load_config(config_path)
    runtime = {"interface": config.interface, "address": "10.23.0.1", "state": "running"}

    def server_address() -> ipaddress.IPv4Address | None:
        return ipaddress.IPv4Address(runtime["address"]) if runtime["address"] else None

    def status() -> RuntimeStatus:
        return RuntimeStatus(runtime["interface"], runtime["address"], runtime["state"] or "", 7)

    service = build_service(config, config_path, server_address=server_address, runtime=status)
    await asyncio.to_thread(service.recover)
    throttle = float(os.environ.get("PXED_TEST_THROTTLE", "0"))
    if throttle:  # slow imports down so that tests can watch and cancel them
        real_import = service.import_image

        def slow_import(fd: int, name: str | None, options: Any, *, progress: Any = None, **kw: Any) -> Any:
            def slow_progress(done: int, total: int) -> None:
                time.sleep(throttle)
                if progress is not None:
                    progress(done, total)

            return real_import(fd, name, options, progress=slow_progress, **kw)

        service.import_image = slow_import  # type: ignore[method-assign]

    server = await serve_on_bus(service, address)
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := (await reader.readline()).decode():
        words = line.split()
        if not words:
            continue
        if words[0] == "client":
            service.client_seen(words[1], int(words[2]), words[3], words[4])
        elif words[0] == "clients":
            for i in range(int(words[1])):
                service.client_seen(f"52:54:01:00:{i >> 8:02x}:{i & 255:02x}", 7, "offer", "efi64/syslinux.efi")
        elif words[0] == "runtime":
            runtime.update(zip(("interface", "address", "state"),
                               (None if w == "-" else w for w in words[1:4]), strict=True))
            service.runtime_changed()
        elif words[0] == "quit":
            break
        print("OK", flush=True)
    await service.stop()
    await server.stop()


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--bus-address", required=True)
    p.add_argument("--config", type=Path, required=True)
    args = p.parse_args()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(serve(args.bus_address, args.config))


if __name__ == "__main__":
    main()
