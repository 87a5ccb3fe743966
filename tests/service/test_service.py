"""The application layer: domain rules checked when a request is accepted, before any byte is
copied; imports without an address; the events adapters subscribe to, in order."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from pxed.config import load_config
from pxed.errors import Exists, InvalidName, NotAnIso
from pxed.model import JobState
from pxed.service import ImportOptions, Service
from pxed.service import events as ev
from pxed.service.clients import SeenLimiter
from tests.images import isos
from tests.images.conftest import SERVER, Env, make_env, write_config
from tests.lab.netns import wait_for_async

ENTRY = "[Entry site]\nTitle=Site tools\nKernel=site/vmlinuz\n"


def open_ro(path: Path) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC)


def untouched(env: Env) -> None:
    """Nothing was copied: no image files, nothing staged, an empty catalog."""
    assert env.catalog() == ()
    env.assert_no_leftovers()
    staging = env.state / "staging"
    assert not staging.exists() or not any(staging.iterdir())


@pytest.mark.parametrize("name,error", [("memtest", InvalidName), ("local", InvalidName), ("pxe", InvalidName),
                                        ("site", Exists), ("Bad Name", InvalidName), ("", InvalidName)])
def test_names_no_image_may_have_are_refused_before_any_byte_is_copied(tmp_path: Path, name: str,
                                                                       error: type[Exception]) -> None:
    env = make_env(tmp_path / "pxed", ENTRY)
    iso, _ = isos.build("archiso", tmp_path)
    with pytest.raises(error, match="reserved|menu entry of pxed.conf|invalid image name"):
        env.add(iso, name)
    untouched(env)


def test_a_name_from_the_iso_that_is_reserved_is_refused_before_the_copy(tmp_path: Path) -> None:
    env = make_env(tmp_path / "pxed", ENTRY)
    tree = tmp_path / "tree"
    isos.write_tree(tree, {"README": b"no layout pxed knows\n", "data.bin": 64 * 1024})
    for label in ("MEMTEST", "SITE"):
        iso = isos.xorriso(tree, tmp_path / f"{label}.iso", label)
        with pytest.raises((InvalidName, Exists), match="reserved|menu entry"):
            env.add(iso, memdisk=True)
        untouched(env)
    assert env.add(isos.xorriso(tree, tmp_path / "ok.iso", "OK_DISC"), memdisk=True).id == "ok_disc"


def test_an_import_without_an_address_commits_and_the_menus_follow_the_address(tmp_path: Path) -> None:
    address: list[object] = [None]
    config = load_config(write_config(tmp_path / "pxed"))
    service = Service(config, server_address=lambda: address[0])  # type: ignore[arg-type, return-value]
    service.recover()
    assert service.render_menus() is False  # no address: nothing written
    env = Env(tmp_path / "pxed", service)
    iso, _ = isos.build("archiso", tmp_path)
    rec = env.add(iso)
    assert [r.id for r in env.catalog()] == [rec.id]
    assert not (env.boot / "pxelinux.cfg").exists()
    address[0] = SERVER
    assert service.render_menus() is True
    assert f"LABEL {rec.id}\n" in env.menu() and f"http://{SERVER}:8080/images/{rec.id}/" in env.menu()


def test_events_of_an_import_a_removal_and_a_flood_of_clients(tmp_path: Path) -> None:
    env = make_env(tmp_path / "pxed")
    seen: list[ev.Event] = []
    env.service.events.subscribe(seen.append)
    iso, _ = isos.build("archiso", tmp_path)
    bad = tmp_path / "bad.iso"
    bad.write_bytes(b"not an iso" * 100)

    async def scenario() -> None:
        env.service.runtime_changed()
        seen.clear()
        with pytest.raises(NotAnIso):
            env.service.submit_import(open_ro(bad), None, ImportOptions(), owner=":1.5")
        assert seen == [] and env.service.list_jobs() == ()  # refused on acceptance: no job at all
        job = env.service.submit_import(open_ro(iso), None, ImportOptions(), owner=":1.5")
        assert job.state is JobState.QUEUED and job.owner == ":1.5" and job.total == iso.stat().st_size
        env.service.submit_import(open_ro(iso), "arch", ImportOptions())
        with pytest.raises(Exists):  # the queued job's name is taken, before its import even begins
            env.service.submit_import(open_ro(iso), "arch", ImportOptions())
        await wait_for_async(lambda: not env.service.list_jobs(), 60, interval=0.02, what="both imports to end")
        await env.service.remove("arch_202611")
        await env.service.remove("arch")

    asyncio.run(scenario())
    kinds = [type(e).__name__ for e in seen]
    first = kinds.index("JobAdded")
    assert kinds[first + 1:first + 2] == ["JobAdded"]  # the second ("arch") job, queued behind the first
    removed = [e for e in seen if isinstance(e, ev.JobRemoved)]
    assert [(e.job.name, e.job.state, e.error) for e in removed] == [
        ("arch_202611", JobState.DONE, None), ("arch", JobState.DONE, None)]
    added = [e.id for e in seen if isinstance(e, ev.ImageAdded)]
    assert added == ["arch_202611", "arch"]
    assert kinds.index("ImageAdded") < kinds.index("JobRemoved")  # the image exists when its job ends
    changes = [e.job for e in seen if isinstance(e, ev.JobChanged) and e.job.id == removed[0].job.id]
    assert changes[0].state is JobState.RUNNING and changes[-1].state is JobState.DONE
    assert changes[-1].done == changes[-1].total and changes[-1].detection is not None
    assert [e.id for e in seen if isinstance(e, ev.ImageRemoved)] == ["arch_202611", "arch"]
    counts = [e.changed["ImageCount"] for e in seen if isinstance(e, ev.StatusChanged) and "ImageCount" in e.changed]
    assert counts == [1, 2, 1, 0]
    assert not any(isinstance(e, ev.MenusReloaded) for e in seen)  # that is for reloads and new addresses

    seen.clear()
    for i in range(SeenLimiter.PER_SECOND + 50):
        env.service.client_seen(f"52:54:00:00:{i >> 8:02x}:{i & 255:02x}", 7, "offer", "efi64/syslinux.efi")
    assert len(seen) == SeenLimiter.PER_SECOND  # the bus gets at most this many a second ...
    assert len(env.service.list_clients()) == SeenLimiter.PER_SECOND + 50  # ... the tracker every client


def test_a_reload_is_announced_once_and_a_bad_one_keeps_the_old_configuration(tmp_path: Path) -> None:
    conf = write_config(tmp_path / "pxed")
    service = Service(load_config(conf), server_address=lambda: SERVER, config_path=conf)
    service.recover()
    seen: list[ev.Event] = []
    service.events.subscribe(seen.append)
    conf.write_text(conf.read_text() + "[Menu]\nTitle=Reloaded\n")
    asyncio.run(service.reload_config())
    assert [type(e).__name__ for e in seen][:3] == ["Reloading", "Reloaded", "MenusReloaded"]
    assert sum(isinstance(e, ev.MenusReloaded) for e in seen) == 1
    assert "MENU TITLE Reloaded" in (tmp_path / "pxed/boot/pxelinux.cfg/pxe.cfg").read_text()
    seen.clear()
    conf.write_text(conf.read_text() + "[Menu]\nTimeout=forever\n")
    with pytest.raises(Exception, match="Timeout"):
        asyncio.run(service.reload_config())
    assert [type(e).__name__ for e in seen] == ["Reloading", "ReloadFailed"]
    assert service.config.menu.title == "Reloaded"


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    hub = ev.Events()
    got: list[ev.Event] = []

    def broken(_: ev.Event) -> None:
        raise RuntimeError("adapter bug")

    hub.subscribe(broken)
    unsubscribe = hub.subscribe(got.append)
    hub.publish(ev.MenusReloaded())
    unsubscribe()
    hub.publish(ev.MenusReloaded())
    assert got == [ev.MenusReloaded()]
