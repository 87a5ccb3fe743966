"""A stand-in polkit authority on a private bus: owns org.freedesktop.PolicyKit1 and
answers CheckAuthorization by the caller's uid (``GetConnectionUnixUser`` of the
subject's bus name), granting the uids listed in GRANT_FILE (re-read on every call, so
a test can change it) and denying everyone else.  Every call is appended to LOG_FILE
as one JSON line: subject kind and name, action id, flags, uid and the answer.

    python -m tests.dbus.fake_polkit ADDRESS GRANT_FILE LOG_FILE
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from dbus_fast import BusType, Message, MessageType
from dbus_fast.aio import MessageBus


async def main(address: str, grant_file: Path, log_file: Path) -> None:
    bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM).connect()
    tasks: set[asyncio.Task[None]] = set()

    async def answer(msg: Message) -> None:
        (kind, subject), action, _details, flags, _cancel = msg.body
        name = subject["name"].value if "name" in subject else ""
        reply = await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                                       interface="org.freedesktop.DBus", member="GetConnectionUnixUser",
                                       signature="s", body=[name]))
        uid = int(reply.body[0]) if reply.message_type == MessageType.METHOD_RETURN else -1
        granted = {int(x) for x in grant_file.read_text().split()} if grant_file.exists() else set()
        ok = kind == "system-bus-name" and uid in granted
        with log_file.open("a") as f:
            f.write(json.dumps({"kind": kind, "name": name, "action": action, "flags": flags, "uid": uid,
                                "authorized": ok}) + "\n")
        bus.send(Message.new_method_return(msg, "(bba{ss})", [[ok, False, {}]]))

    def handler(msg: Message) -> Any:
        if msg.message_type == MessageType.METHOD_CALL and msg.member == "CheckAuthorization":
            t = asyncio.ensure_future(answer(msg))
            tasks.add(t)
            t.add_done_callback(tasks.discard)
            return True
        return None

    bus.add_message_handler(handler)
    await bus.request_name("org.freedesktop.PolicyKit1")
    print("READY", flush=True)
    await bus.wait_for_disconnect()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])))
