"""org.pxed.Pxed1 on a private system bus with the shipped policy and a stand-in polkit.

Root calls go through busctl (and dbus-send where the error NAME matters: busctl prints
only the text); unprivileged calls run as nobody through busctl/dbus-send, or through
tests/dbus/client.py (drops to nobody before connecting) where a file descriptor must
be passed, which busctl 252 cannot do.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from dbus_fast import BusType, Message, MessageType, Variant
from dbus_fast.aio import MessageBus

from pxed.dbus.values import plain
from pxed.service.clients import SeenLimiter
from tests.conftest import REPO
from tests.dbus.conftest import DEST, MANAGER, NOBODY, PxedOnBus
from tests.images.isos import payload_iso
from tests.lab.netns import wait_for, wait_for_async

pytestmark = pytest.mark.integration

ERR = "org.pxed.Pxed1.Error."
INTERFACES_DIR = REPO / "packaging" / "dbus"


def iso_for(p: PxedOnBus, name: str, payload: int = 1 << 20) -> Path:
    """An ISO in the world-readable bus directory, so nobody can open it too."""
    return payload_iso(p.bus.dir / f"{name}.iso", payload=payload)


def add(p: PxedOnBus, iso: Path, name: str, uid: int | None = None, **options: Any) -> dict[str, Any]:
    opts = {k: ["v", ["s" if isinstance(v, str) else "b", v]] for k, v in options.items()}
    return p.pycall("AddImage", "hsa{sv}", [0, name, opts], fds=[str(iso)], uid=uid)


def import_ok(p: PxedOnBus, name: str, payload: int = 1 << 20) -> None:
    r = add(p, iso_for(p, name, payload), name)
    assert "ok" in r, r
    wait_for(lambda: name in p.image_ids() and not p.pycall("ListJobs")["ok"][0], what=f"import of {name}", timeout=30)


def boot_tree(p: PxedOnBus) -> dict[str, int]:
    return {os.fspath(f.relative_to(p.boot_root)): f.stat().st_size
            for f in p.boot_root.rglob("*") if f.is_file()} if p.boot_root.exists() else {}


# ------------------------------------------------------------------------------ reads


def test_reads_are_open_to_anyone(pxed: PxedOnBus) -> None:
    import_ok(pxed, "alpha")
    for user in (None, "nobody"):
        r = pxed.call("ListImages", user=user)
        assert r.returncode == 0 and r.stdout.startswith("aa{sv} 1 ") and '"alpha"' in r.stdout, r
        r = pxed.call("GetImage", "s", "alpha", user=user)
        assert r.returncode == 0 and '"id" s "alpha"' in r.stdout, r
        r = pxed.call("GetStatus", user=user)
        assert r.returncode == 0 and '"State" s "running"' in r.stdout and '"Images" x 1' in r.stdout, r
        assert pxed.call("ListClients", user=user).stdout == "aa{sv} 0\n"
        assert pxed.call("ListJobs", user=user).stdout == "aa{sv} 0\n"
        props = {"Version": 's "0.1.0"', "State": 's "running"', "Interface": 's "pxtest0"',
                 "Address": 's "10.23.0.1"', "ImageCount": "u 1"}
        for prop, want in props.items():
            r = pxed.busctl("get-property", *DEST, MANAGER, prop, user=user)
            assert r.stdout.strip() == want, (prop, r)
        r = pxed.busctl("introspect", *DEST, user=user)
        assert r.returncode == 0 and ".AddImage" in r.stdout, r
    r = pxed.dbus_send("GetImage", "string:nope", user="nobody")
    assert r.returncode != 0 and r.stderr.startswith(f"Error {ERR}NotFound: no image named 'nope'"), r


# ------------------------------------------------------------------------------ changes as root


def test_every_changing_method_as_root(pxed: PxedOnBus) -> None:
    import_ok(pxed, "alpha")
    catalog = pxed.catalog()["images"]
    assert [i["id"] for i in catalog] == ["alpha"] and catalog[0]["state"] == "ready"
    assert pxed.call("Reload").returncode == 0
    r = pxed.dbus_send("RemoveImage", "string:nope")
    assert r.stderr.startswith(f"Error {ERR}NotFound:"), r
    r = pxed.call("RemoveImage", "s", "alpha")
    assert r.returncode == 0, r
    assert pxed.image_ids() == []
    assert pxed.call("ListImages").stdout == "aa{sv} 0\n"


def test_add_image_options_names_and_duplicates(pxed: PxedOnBus) -> None:
    iso = iso_for(pxed, "opt")
    r = add(pxed, iso, "with-title", title="Rescue of the lab")
    assert r["ok"][0].startswith("/org/pxed/Pxed1/job/"), r
    wait_for(lambda: "with-title" in pxed.image_ids(), timeout=30)
    wait_for(lambda: not pxed.pycall("ListJobs")["ok"][0], timeout=30)
    got = pxed.pycall("GetImage", "s", ["with-title"])["ok"][0]
    assert got["title"] == "Rescue of the lab" and got["state"] == "ready" and got["iso_size"] == iso.stat().st_size
    assert add(pxed, iso, "with-title")["error"] == ERR + "Exists"
    assert add(pxed, iso, "Bad Name!")["error"] == ERR + "InvalidName"
    assert add(pxed, iso, "x", colour="red")["error"] == ERR + "InvalidArgument"
    r = pxed.pycall("AddImage", "hsa{sv}", [0, "y", {"memdisk": ["v", ["s", "yes"]]}], fds=[str(iso)])
    assert r["error"] == ERR + "InvalidArgument" and "memdisk" in r["text"], r
    assert pxed.image_ids() == ["with-title"]


def test_real_layout_is_detected_named_and_offered(pxed: PxedOnBus) -> None:
    """An archiso-layout ISO through the bus: named from its label, detected, in the menu with pxed's address."""
    from tests.images import isos

    iso, _ = isos.build("archiso", pxed.bus.dir)
    assert "ok" in add(pxed, iso, "")
    wait_for(lambda: "arch_202611" in pxed.image_ids() and not pxed.pycall("ListJobs")["ok"][0], timeout=30)
    got = pxed.pycall("GetImage", "s", ["arch_202611"])["ok"][0]
    det = got["detection"]
    assert (got["state"], got["title"], det["profile"], det["version"]) == \
        ("ready", "Arch Linux 2026.11.01", "archiso", "2026.11.01")
    menu = (pxed.boot_root / "pxelinux.cfg/pxe.cfg").read_text()
    assert "archiso_http_srv=http://10.23.0.1/images/arch_202611/" in menu


# ------------------------------------------------------------------------------ authorization


def test_unprivileged_changes_are_denied_and_change_nothing(pxed: PxedOnBus) -> None:
    import_ok(pxed, "alpha")
    before_catalog, before_tree = pxed.catalog(), boot_tree(pxed)
    iso = iso_for(pxed, "evil")

    r = add(pxed, iso, "evil", uid=NOBODY)
    assert r["error"] == ERR + "AccessDenied" and "pxed-admin" in r["text"], r
    r = pxed.dbus_send("RemoveImage", "string:alpha", user="nobody")
    assert r.stderr.startswith(f"Error {ERR}AccessDenied: not authorized to remove images"), r
    r = pxed.call("RemoveImage", "s", "alpha", user="nobody")
    assert r.returncode != 0 and "not authorized to remove images" in r.stderr, r
    r = pxed.dbus_send("Reload", user="nobody")
    assert r.stderr.startswith(f"Error {ERR}AccessDenied:"), r
    r = pxed.call("Reload", user="nobody")
    assert r.returncode != 0 and "not authorized to reload" in r.stderr, r

    time.sleep(0.3)
    assert pxed.catalog() == before_catalog
    assert boot_tree(pxed) == before_tree
    assert pxed.call("ListJobs").stdout == "aa{sv} 0\n"
    calls = pxed.polkit_calls()
    assert {c["action"] for c in calls} == {"org.pxed.pxed1.import", "org.pxed.pxed1.remove", "org.pxed.pxed1.reload"}
    assert all(c["kind"] == "system-bus-name" and c["name"].startswith(":1.") and c["uid"] == NOBODY
               and not c["authorized"] for c in calls), calls
    # busctl allows interactive authorization, dbus-send does not: pxed passes the flag on to polkit
    assert {c["flags"] for c in calls if c["action"] == "org.pxed.pxed1.reload"} == {0, 1}
    assert "Traceback" not in pxed.log()


def test_cancel_of_someone_elses_job_is_denied(tmp_path: Path, private_bus: Any) -> None:
    p = PxedOnBus(tmp_path, private_bus, throttle=0.2)
    try:
        job = add(p, iso_for(p, "slow", payload=8 << 20), "slow")["ok"][0]
        r = p.dbus_send("Cancel", path=job, interface="org.pxed.Pxed1.Job", user="nobody")
        assert r.stderr.startswith(f"Error {ERR}AccessDenied: not authorized to import"), r
        r = p.busctl("get-property", "org.pxed.Pxed1", job, "org.pxed.Pxed1.Job", "State", user="nobody")
        assert r.stdout.strip() in ('s "running"', 's "queued"'), r
        assert p.busctl("call", "org.pxed.Pxed1", job, "org.pxed.Pxed1.Job", "Cancel").returncode == 0
        wait_for(lambda: not p.pycall("ListJobs")["ok"][0], what="cancelled job to end", timeout=30)
        assert p.image_ids() == []
    finally:
        p.stop()


def test_polkit_grant_lets_a_user_change(pxed: PxedOnBus) -> None:
    import_ok(pxed, "alpha")
    pxed.grant(0, NOBODY)
    assert pxed.call("Reload", user="nobody").returncode == 0
    r = pxed.dbus_send("RemoveImage", "string:alpha", user="nobody")
    assert r.returncode == 0, r
    assert pxed.image_ids() == []
    r = add(pxed, iso_for(pxed, "mine"), "mine", uid=NOBODY)
    assert "ok" in r, r
    wait_for(lambda: "mine" in pxed.image_ids(), timeout=30)
    assert [c["authorized"] for c in pxed.polkit_calls()] == [True, True, True]


def test_bus_policy_as_shipped(pxed: PxedOnBus) -> None:
    # only pxed (or root) may own the name
    r = pxed.run(["dbus-send", f"--bus={pxed.address}", "--print-reply", "--dest=org.freedesktop.DBus",
                  "/org/freedesktop/DBus", "org.freedesktop.DBus.RequestName", "string:org.pxed.Pxed1", "uint32:4"],
                 user="nobody")
    assert r.stderr.startswith("Error org.freedesktop.DBus.Error.AccessDenied:"), r
    assert 'not allowed to own the service "org.pxed.Pxed1"' in r.stderr, r
    # there is nothing to Set, and members the policy does not list are refused by the bus itself
    r = pxed.dbus_send("Set", "string:org.pxed.Pxed1.Manager", "string:State", "variant:string:x",
                       interface="org.freedesktop.DBus.Properties", user="nobody")
    assert r.stderr.startswith("Error org.freedesktop.DBus.Error.AccessDenied:"), r
    r = pxed.dbus_send("Shutdown", user="nobody")
    assert r.stderr.startswith("Error org.freedesktop.DBus.Error.AccessDenied:"), r
    assert pxed.polkit_calls() == []


# ------------------------------------------------------------------------------ file descriptors


def test_fd_checks(pxed: PxedOnBus) -> None:
    iso = iso_for(pxed, "good")
    cases = {
        "pipe": ERR + "InvalidArgument",
        "/dev/zero": ERR + "InvalidArgument",
        str(pxed.bus.dir): ERR + "InvalidArgument",  # a directory
        f"wronly:{iso}": ERR + "InvalidArgument",
        f"path:{iso}": ERR + "InvalidArgument",
    }
    big = pxed.bus.dir / "big.iso"
    with big.open("wb") as f:
        f.truncate(64 * 1024 * 1024 + 1)  # sparse, one byte over MaxSize=64M
    cases[str(big)] = ERR + "TooLarge"
    tiny = pxed.bus.dir / "tiny.iso"
    tiny.write_bytes(b"CD001" * 10)
    cases[str(tiny)] = ERR + "NotAnIso"
    fds_before = pxed.open_fds()
    for spec, error in cases.items():
        r = pxed.pycall("AddImage", "hsa{sv}", [0, "x", {}], fds=[spec])
        assert r.get("error") == error, (spec, r)
    # descriptors on any other call are refused and closed at once
    for _ in range(20):
        r = pxed.pycall("ListImages", "h", [0], fds=[str(iso)])
        assert r.get("error") == ERR + "InvalidArgument", r
        r = pxed.pycall("GetImage", "s", ["x"], fds=["pipe"])
        assert r.get("error") == ERR + "InvalidArgument", r
    r = pxed.pycall("AddImage", "hsa{sv}", [0, "two", {}], fds=[str(iso), str(iso)])
    if "ok" in r:  # dbus-fast 1.84 reads one descriptor per message; the kernel closed the other
        wait_for(lambda: "two" in pxed.image_ids() and not pxed.pycall("ListJobs")["ok"][0], timeout=30)
        assert pxed.call("RemoveImage", "s", "two").returncode == 0
    else:
        assert r.get("error") == ERR + "InvalidArgument", r
    wait_for(lambda: pxed.open_fds() <= fds_before, 5, what="pxed to close the descriptors it was passed")
    assert pxed.image_ids() == []
    # nobody cannot smuggle a file it cannot read: it must open it itself
    secret = pxed.root / "secret.iso"  # in root's 0700 tmp dir
    payload_iso(secret)
    r = subprocess.run([*pxed_client(pxed), "--uid", str(NOBODY), "--fd", str(secret), "AddImage", "hsa{sv}",
                        json.dumps([0, "s", {}])], capture_output=True, text=True, cwd=REPO)
    assert r.returncode != 0 and "PermissionError" in r.stderr


def pxed_client(p: PxedOnBus) -> list[str]:
    import sys

    return [sys.executable, "-m", "tests.dbus.client", p.address]


# ------------------------------------------------------------------------------ signals, properties, jobs


class Watcher:
    def __init__(self, bus: MessageBus) -> None:
        self.bus = bus
        self.signals: list[tuple[str, str, list[Any]]] = []
        bus.add_message_handler(self.on)

    def on(self, msg: Message) -> None:
        if msg.message_type == MessageType.SIGNAL and msg.sender != "org.freedesktop.DBus":
            self.signals.append((msg.path or "", msg.member or "", list(msg.body)))

    @classmethod
    async def start(cls, address: str) -> Watcher:
        bus = await MessageBus(bus_address=address, bus_type=BusType.SYSTEM, negotiate_unix_fd=True).connect()
        await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus",
                               interface="org.freedesktop.DBus", member="AddMatch", signature="s",
                               body=["type='signal',sender='org.pxed.Pxed1'"]))
        return cls(bus)

    async def call(self, member: str, sig: str = "", body: list[Any] | None = None, *, path: str = DEST[1],
                   interface: str = MANAGER, fds: list[int] | None = None) -> Message:
        reply = await self.bus.call(Message(destination="org.pxed.Pxed1", path=path, interface=interface,
                                            member=member, signature=sig, body=body or [], unix_fds=fds or []))
        assert reply is not None
        return reply

    async def until(self, member: str, timeout: float = 30) -> tuple[str, str, list[Any]]:
        try:
            return await wait_for_async(lambda: next((s for s in self.signals if s[1] == member), None), timeout,
                                        interval=0.02, what=f"a {member} signal")
        except TimeoutError:
            raise AssertionError(f"no {member} signal; got {self.signals}") from None


def test_job_lifecycle_signals_and_properties(tmp_path: Path, private_bus: Any) -> None:
    p = PxedOnBus(tmp_path, private_bus, throttle=0.05)
    iso = iso_for(p, "watched", payload=6 << 20)

    async def scenario() -> None:
        w = await Watcher.start(p.address)
        fd = os.open(iso, os.O_RDONLY)
        reply = await w.call("AddImage", "hsa{sv}", [0, "watched", {"title": Variant("s", "Watched")}], fds=[fd])
        os.close(fd)
        assert reply.message_type == MessageType.METHOD_RETURN, reply.body
        job = reply.body[0]
        _, _, (job_id, path) = await w.until("JobNew")
        assert path == job
        props = await w.call("GetAll", "s", ["org.pxed.Pxed1.Job"], path=job,
                             interface="org.freedesktop.DBus.Properties")
        got = plain(props.body[0])
        assert got["Id"] == job_id and got["Name"] == "watched" and got["Total"] == iso.stat().st_size
        assert got["State"] in ("queued", "running")
        _, _, removed = await w.until("JobRemoved")
        assert removed == [job_id, job, "done", "watched", "", ""]
        names = [s[1] for s in w.signals]
        assert names.index("ImageAdded") < names.index("JobRemoved")
        assert ["watched", "Watched"] in [s[2] for s in w.signals if s[1] == "ImageAdded"]
        job_changes = [s[2][1] for s in w.signals if s[0] == job and s[1] == "PropertiesChanged"]
        progress = [plain(c["Progress"]) for c in job_changes if "Progress" in c]
        assert len(progress) >= 2 and progress == sorted(progress), progress
        assert any(plain(c.get("State")) == "done" for c in job_changes)
        count = [plain(s[2][1]["ImageCount"]) for s in w.signals
                 if s[0] == DEST[1] and s[1] == "PropertiesChanged" and "ImageCount" in s[2][1]]
        assert count == [1]
        # the job object is gone once JobRemoved is sent
        gone = await w.call("GetAll", "s", ["org.pxed.Pxed1.Job"], path=job,
                            interface="org.freedesktop.DBus.Properties")
        assert gone.message_type == MessageType.ERROR
        # removal, reload, runtime changes and client sightings are signalled too
        w.signals.clear()
        assert (await w.call("RemoveImage", "s", ["watched"])).message_type == MessageType.METHOD_RETURN
        assert (await w.until("ImageRemoved"))[2] == ["watched"]
        assert (await w.call("Reload")).message_type == MessageType.METHOD_RETURN
        await w.until("MenusReloaded")
        w.bus.disconnect()

    try:
        asyncio.run(scenario())
        w_signals = asyncio.run(runtime_and_clients(p))
        assert w_signals
    finally:
        p.stop()


async def runtime_and_clients(p: PxedOnBus) -> list[Any]:
    w = await Watcher.start(p.address)
    await asyncio.to_thread(p.command, "runtime pxtest0 10.23.0.9 running")
    _, _, (iface, changed, _inv) = await w.until("PropertiesChanged")
    assert iface == MANAGER and plain(changed) == {"Address": "10.23.0.9"}
    await asyncio.to_thread(p.command, "client 52:54:00:AA:BB:CC 7 offer efi64/syslinux.efi")
    await asyncio.to_thread(p.command, "client 52:54:00:aa:bb:cc 7 ack efi64/syslinux.efi")
    await asyncio.to_thread(p.command, "client 52:54:00:00:00:01 0 offer lpxelinux.0")

    def three_seen() -> list[Any]:
        seen = [s[2] for s in w.signals if s[1] == "ClientSeen"]
        return seen if len(seen) >= 3 else []

    seen = await wait_for_async(three_seen, 30, interval=0.02, what="three ClientSeen signals")
    assert seen[0] == ["52:54:00:aa:bb:cc", 7, "offer", "efi64/syslinux.efi"]
    reply = await w.call("ListClients")
    clients = plain(reply.body[0])
    assert [c["mac"] for c in clients] == ["52:54:00:00:00:01", "52:54:00:aa:bb:cc"]
    assert clients[1]["stage"] == "ack" and clients[1]["count"] == 2 and clients[1]["arch"] == 7
    # a flood: the tracker takes every exchange, the bus gets at most SeenLimiter.PER_SECOND a second
    w.signals.clear()
    await asyncio.to_thread(p.command, "clients 1000")
    reply = await w.call("ListClients")
    assert len(reply.body[0]) == 1000 + 2
    await asyncio.sleep(0.5)
    seen = [s[2] for s in w.signals if s[1] == "ClientSeen"]
    assert 0 < len(seen) <= SeenLimiter.PER_SECOND
    w.bus.disconnect()
    return w.signals


# ------------------------------------------------------------------------------ concurrency


def test_fifty_concurrent_mixed_calls(pxed: PxedOnBus) -> None:
    import_ok(pxed, "base")
    isos = [iso_for(pxed, f"c{i}", payload=256 << 10) for i in range(4)]

    async def scenario() -> list[Message]:
        w = await Watcher.start(pxed.address)
        calls: list[Any] = []
        fds: list[int] = []
        for i in range(50):
            kind = i % 10
            if kind == 0:
                fd = os.open(isos[(i // 10) % 4], os.O_RDONLY)
                fds.append(fd)
                # names repeat (c0, c1, c2, c3, c0): one of the two c0 imports must fail with Exists
                calls.append(w.call("AddImage", "hsa{sv}", [0, f"c{(i // 10) % 4}", {}], fds=[fd]))
            elif kind == 1:
                calls.append(w.call("RemoveImage", "s", ["nope"]))
            elif kind == 2:
                calls.append(w.call("Reload"))
            elif kind == 3:
                calls.append(w.call("GetImage", "s", ["base"]))
            elif kind == 4:
                calls.append(w.call("GetStatus"))
            elif kind == 5:
                calls.append(w.call("GetAll", "s", [MANAGER], interface="org.freedesktop.DBus.Properties"))
            elif kind == 6:
                calls.append(w.call("ListClients"))
            elif kind == 7:
                calls.append(w.call("ListJobs"))
            else:
                calls.append(w.call("ListImages"))
        replies = await asyncio.wait_for(asyncio.gather(*calls), 60)
        for fd in fds:
            os.close(fd)
        try:
            await wait_for_async(lambda: len([s for s in w.signals if s[1] == "JobRemoved"]) >= 4, 60,
                                 what="four JobRemoved signals")
        except TimeoutError:
            raise AssertionError(w.signals) from None
        results = sorted((s[2][3], s[2][2], s[2][4]) for s in w.signals if s[1] == "JobRemoved")
        w.bus.disconnect()
        assert sum(1 for r in replies if r.error_name == ERR + "Exists") + \
            sum(1 for r in results if r[2] == ERR + "Exists") == 1, (results, [r.error_name for r in replies])
        return replies

    replies = asyncio.run(scenario())
    assert len(replies) == 50
    for i, r in enumerate(replies):
        kind = i % 10
        if kind == 1:
            assert r.error_name == ERR + "NotFound", r.body
        elif kind != 0:
            assert r.message_type == MessageType.METHOD_RETURN, (i, r.error_name, r.body)
        if kind == 3:
            assert plain(r.body[0])["id"] == "base"
        if kind == 9:
            ids = [img["id"] for img in plain(r.body[0])]
            assert ids[0] == "base" and len(ids) == len(set(ids))
    ids = pxed.image_ids()
    assert ids == ["base", "c0", "c1", "c2", "c3"]
    listed = sorted(img["id"] for img in pxed.pycall("ListImages")["ok"][0])
    assert listed == ids
    assert all(i["state"] == "ready" for i in pxed.catalog()["images"])
    assert "Traceback" not in pxed.log()


# ------------------------------------------------------------------------------ introspection


def _structure(xml: str, interface: str) -> dict[str, Any]:
    root = ET.fromstring(xml)
    (iface,) = [i for i in root.iter("interface") if i.get("name") == interface]
    out: dict[str, Any] = {}
    for m in iface.iter("method"):
        out["method " + m.get("name", "")] = [(a.get("direction", "in"), a.get("type")) for a in m.iter("arg")]
    for s in iface.iter("signal"):
        out["signal " + s.get("name", "")] = [a.get("type") for a in s.iter("arg")]
    for p in iface.iter("property"):
        out["property " + p.get("name", "")] = (p.get("type"), p.get("access"))
    return out


def _arg_names(xml: str, interface: str) -> dict[str, list[str | None]]:
    root = ET.fromstring(xml)
    (iface,) = [i for i in root.iter("interface") if i.get("name") == interface]
    return {m.get("name", ""): [a.get("name") for a in m.iter("arg") if a.get("direction", "in") == "in"]
            for m in iface.iter("method")}


def test_introspection_matches_installed_xml(tmp_path: Path, private_bus: Any) -> None:
    p = PxedOnBus(tmp_path, private_bus, throttle=0.2)
    try:
        live = p.busctl("--xml-interface", "introspect", *DEST).stdout
        shipped = (INTERFACES_DIR / "org.pxed.Pxed1.Manager.xml").read_text()
        assert _structure(live, MANAGER) == _structure(shipped, MANAGER)
        assert _arg_names(live, MANAGER) == _arg_names(shipped, MANAGER)
        job = add(p, iso_for(p, "j", payload=8 << 20), "j")["ok"][0]
        live_job = p.busctl("--xml-interface", "introspect", "org.pxed.Pxed1", job).stdout
        shipped_job = (INTERFACES_DIR / "org.pxed.Pxed1.Job.xml").read_text()
        assert _structure(live_job, "org.pxed.Pxed1.Job") == _structure(shipped_job, "org.pxed.Pxed1.Job")
        p.busctl("call", "org.pxed.Pxed1", job, "org.pxed.Pxed1.Job", "Cancel")
    finally:
        p.stop()


# ------------------------------------------------------------------------------ the error boundary


class BrokenService:
    def list_images(self) -> Any:
        raise RuntimeError("secret detail from /root/x.py")


def test_unexpected_exception_becomes_internal_error(private_bus: Any) -> None:
    from pxed.dbus.server import ManagerObject

    async def scenario() -> list[subprocess.CompletedProcess[str]]:
        bus = await MessageBus(bus_address=private_bus.address, bus_type=BusType.SYSTEM).connect()
        bus.export(DEST[1], ManagerObject(BrokenService(), None))  # type: ignore[arg-type]
        await bus.request_name("org.pxed.Pxed1")
        argv = ["dbus-send", f"--bus={private_bus.address}", "--print-reply", "--dest=org.pxed.Pxed1", DEST[1],
                f"{MANAGER}.ListImages"]
        out = [await asyncio.to_thread(subprocess.run, argv, capture_output=True, text=True, timeout=30),
               await asyncio.to_thread(subprocess.run, ["runuser", "-u", "nobody", "--", *argv],
                                       capture_output=True, text=True, timeout=30)]
        bus.disconnect()
        return out

    for r in asyncio.run(scenario()):
        assert r.stderr == f"Error {ERR}Internal: internal error\n", r
