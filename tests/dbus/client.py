"""One D-Bus call as a given user, printing the reply or the error NAME as JSON.

    python -m tests.dbus.client ADDRESS [--uid UID] [--fd SPEC] [--path P] [--interface I] MEMBER [SIG [JSON]]

The pyenv Python cannot be run by other users, so this starts as root, imports
everything, then drops to UID (setresgid/setresuid) BEFORE connecting: the bus sees
the caller's credentials (SO_PEERCRED) and any file is opened with the caller's
rights.  --fd passes a descriptor as the message's first unix fd (body value 0):
a path (opened read-only), ``pipe`` (read end of a pipe), ``wronly:PATH`` or
``path:PATH`` (O_PATH).  In JSON bodies, a two-element list ``["v", [SIG, VALUE]]``
is a Variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from pxed.dbus.values import plain


def variants(v: Any) -> Any:
    if isinstance(v, list) and len(v) == 2 and v[0] == "v":
        return Variant(v[1][0], variants(v[1][1]))
    if isinstance(v, list):
        return [variants(x) for x in v]
    if isinstance(v, dict):
        return {k: variants(x) for k, x in v.items()}
    return v


def open_fd(spec: str) -> int:
    if spec == "pipe":
        r, w = os.pipe()
        os.write(w, b"\0" * 4096)
        return r
    if spec.startswith("wronly:"):
        return os.open(spec[7:], os.O_WRONLY)
    if spec.startswith("path:"):
        return os.open(spec[5:], os.O_PATH)
    return os.open(spec, os.O_RDONLY)


async def call(args: argparse.Namespace) -> dict[str, Any]:
    fds = [open_fd(spec) for spec in args.fd]
    bus = await MessageBus(bus_address=args.address, bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
    body = variants(json.loads(args.json)) if args.json else []
    reply = await bus.call(Message(destination="org.pxed.Pxed1", path=args.path, interface=args.interface,
                                   member=args.member, signature=args.sig, body=body, unix_fds=fds))
    bus.disconnect()
    assert reply is not None
    if reply.message_type == MessageType.ERROR:
        return {"error": reply.error_name, "text": reply.body[0] if reply.body else ""}
    return {"ok": plain(reply.body)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("--uid", type=int, default=None)
    p.add_argument("--fd", action="append", default=[])
    p.add_argument("--path", default="/org/pxed/Pxed1")
    p.add_argument("--interface", default="org.pxed.Pxed1.Manager")
    p.add_argument("member")
    p.add_argument("sig", nargs="?", default="")
    p.add_argument("json", nargs="?", default="")
    args = p.parse_args()
    if args.uid is not None:
        os.setgroups([])
        os.setresgid(args.uid, args.uid, args.uid)
        os.setresuid(args.uid, args.uid, args.uid)
    json.dump(asyncio.run(call(args)), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
