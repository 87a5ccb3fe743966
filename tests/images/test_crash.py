"""Crash safety: an import SIGKILLed at each named step, then a restart (Service.recover()).

The import runs in a child process with PXED_TEST_CRASH_AT=<step>, which makes the
importer kill itself there.  Checked after the kill, before recovery: the menu being
served names only images whose files are all there.  Checked after recovery: the
catalog loads, every ready image is complete (sizes and hashes), the menu on disk is
byte-identical to a fresh render of the catalog and offers exactly the ready images, no
staging remains, and an interrupted import is marked failed with the reason.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pxed.images.catalog import ImageRecord, ImageState
from pxed.images.importer import CRASH_ENV, STEPS
from tests.conftest import REPO
from tests.images import isos
from tests.images.conftest import Env, make_env, write_config

CHILD = """
import ipaddress, os, sys
from pathlib import Path
from pxed.config import load_config
from pxed.service import ImportOptions, Service
svc = Service(load_config(Path(sys.argv[1])), server_address=lambda: ipaddress.IPv4Address("10.77.0.1"))
svc.recover()
fd = os.open(sys.argv[2], os.O_RDONLY)
print("START", flush=True)
svc.import_image(fd, "victim", ImportOptions())
print("DONE", flush=True)
"""


def served_images(menu: str) -> set[str]:
    """The images a syslinux or GRUB menu boots."""
    return set(re.findall(r"^LINUX http://[^/]+/images/([^/]+)/", menu, re.M)) | \
        set(re.findall(r"^INITRD http://[^/]+/images/([^/]+)/[^,\n]*\.iso$", menu, re.M)) | \
        set(re.findall(r"^\tlinux \$\{pxed\}/'images/([^/]+)/", menu, re.M))


def menus_on_disk(env: Env) -> dict[str, str]:
    """Every menu file: syslinux's, and GRUB's where the signed shim + GRUB are installed."""
    menus = [*env.boot.rglob("pxelinux.cfg/*"), *env.boot.rglob("grub/grub.cfg")]
    return {os.fspath(p.relative_to(env.boot)): p.read_text() for p in menus}


def check_after_restart(env: Env, keep: ImageRecord) -> Env:
    """The invariants after a kill: first what clients could fetch, then the state after recovery."""
    for text in menus_on_disk(env).values():  # right after the crash: only images with all their files
        for image in served_images(text):
            rec = next(x for x in env.catalog() if x.id == image)
            assert rec.state is ImageState.READY
            env.assert_complete(rec)
    restarted = make_env(env.root)  # recover() + render_menus(), as the daemon does at start
    records = {x.id: x for x in restarted.catalog()}
    assert records["keep"] == keep
    assert all(x.state is not ImageState.IMPORTING for x in records.values())
    for rec in records.values():
        if rec.state is ImageState.READY:
            restarted.assert_complete(rec)
    restarted.assert_no_leftovers()
    files = restarted.service._menu_files(restarted.service.list_images())
    assert files is not None and menus_on_disk(restarted) == files
    ready = {x.id for x in records.values() if x.state is ImageState.READY}
    assert served_images(files["pxelinux.cfg/pxe.cfg"]) == ready
    return restarted


@pytest.mark.parametrize("step", STEPS)
def test_sigkill_at_each_step_then_recover(tmp_path: Path, step: str) -> None:
    env = make_env(tmp_path / "pxed")
    keep_iso, _ = isos.build("generic", tmp_path)
    keep = env.add(keep_iso, "keep")
    iso, _ = isos.build("archiso", tmp_path)
    conf = write_config(env.root)
    r = subprocess.run([sys.executable, "-c", CHILD, os.fspath(conf), os.fspath(iso)], cwd=REPO,
                       env={**os.environ, CRASH_ENV: step}, capture_output=True, text=True, timeout=120)
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)

    restarted = check_after_restart(env, keep)
    victim = next(x for x in restarted.catalog() if x.id == "victim")
    if step == "committed":  # the catalog said ready before the kill: the image is there and offered
        assert victim.state is ImageState.READY
    else:
        assert victim.state is ImageState.FAILED and "interrupted" in str(victim.reason)

    # The name of a failed import is freed by removing it; the import then succeeds.
    if victim.state is ImageState.FAILED:
        restarted.service.remove_image("victim")
        restarted.assert_complete(restarted.add(iso, "victim"))


def test_recovery_fails_a_ready_image_whose_files_are_damaged(env: Env, tmp_path: Path) -> None:
    iso, _ = isos.build("generic", tmp_path)
    env.add(iso, "cut")
    env.add(iso, "gone")
    env.add(iso, "fine")
    with open(env.boot / "images/cut/boot/core.gz", "r+b") as f:
        f.truncate(100)
    (env.boot / "images/gone/boot/vmlinuz").unlink()
    restarted = make_env(env.root)
    states = {r.id: (r.state, r.reason) for r in restarted.catalog()}
    assert states["fine"] == (ImageState.READY, None)
    for name, path in (("cut", "boot/core.gz"), ("gone", "boot/vmlinuz")):
        assert states[name][0] is ImageState.FAILED and path in str(states[name][1])
    assert served_images(restarted.menu()) == {"fine"}
    restarted.assert_no_leftovers()


@pytest.mark.slow
def test_sigkill_at_random_times(tmp_path: Path) -> None:
    """SIGKILL after a random delay into an import of a 64 MiB ISO, 12 times, then the same checks."""
    env = make_env(tmp_path / "pxed")
    keep_iso, _ = isos.build("generic", tmp_path)
    keep = env.add(keep_iso, "keep")
    label, files = isos.LAYOUTS["archiso"]
    iso, _ = isos.make_iso(tmp_path / "big.iso", {**files, "arch/x86_64/airootfs.sfs": 64 << 20}, label)
    conf = write_config(env.root)
    rng = random.Random(4)
    outcomes = []
    for _ in range(12):
        child = subprocess.Popen([sys.executable, "-c", CHILD, os.fspath(conf), os.fspath(iso)], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        assert child.stdout is not None and child.stdout.readline() == "START\n"
        time.sleep(rng.uniform(0, 0.25))
        child.kill()
        child.wait()
        env = check_after_restart(env, keep)
        victim = [x for x in env.catalog() if x.id == "victim"]
        outcomes.append(victim[0].state if victim else None)
        if victim:
            env.service.remove_image("victim")
    assert ImageState.FAILED in outcomes, outcomes  # at least some kills landed mid-import
