"""A Debian 12 system with systemd as PID 1, in systemd-nspawn, sitting on a lab namespace.

    tree = debian_tree(runtime_packages())          # debootstrap once, cached by package list
    with Container(tree, workdir, netns="pxlab-srv") as c:
        c.start()                                   # overlay on the tree, boots, waits for "running"
        install_pxed(c)                             # the .deb when built, else `make install`
        c.run(["systemctl", "enable", "--now", "pxed.socket"])

The tree is made by debootstrap (bookworm, minbase) with Debian's own packages of what pxed
needs, and cached under /var/cache/pxed-systest keyed by a hash of the package list (trees
of other lists unused for two weeks are removed: :func:`prune`).  Each
container runs on an overlay (tree read-only below, a scratch upper dir) that is removed at
stop, so the tree stays pristine.  The container shares a lab network namespace
(``--network-namespace-path``), never the host's; commands run inside through ``nsenter``
into all its namespaces (no machined is needed, so it also works where PID 1 is not systemd).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.lab.netns import wait_for

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
MIRROR = os.environ.get("PXED_SYSTEST_MIRROR", "http://deb.debian.org/debian")
CACHE = Path(os.environ.get("PXED_SYSTEST_CACHE", "/var/cache/pxed-systest"))
# The system pxed runs on: systemd (+ logind, which polkitd needs), the bus and polkit.
SYSTEM_PACKAGES = ("systemd", "libpam-systemd", "dbus", "polkitd")
# What pxed needs at runtime, as Debian 12 packages: used until the .deb exists, whose
# Depends: then decide (runtime_packages).
PXED_PACKAGES = ("python3", "python3-dbus-fast", "python3-systemd", "python3-pyroute2", "python3-jinja2",
                 "python3-pycdlib", "tftpd-hpa", "lighttpd", "pxelinux", "syslinux-common", "syslinux-efi",
                 "shim-signed", "grub-efi-amd64-signed")
TREE_FORMAT = "1"  # bump when the way a tree is made changes
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


# ----------------------------------------------------------------------------- the .deb
def built_deb() -> Path | None:
    """The pxed .deb to install: $PXED_DEB, else `make deb`'s dist/pxed_<version>_all.deb when it
    is newer than every source file that goes into it (a stale one is not used)."""
    if os.environ.get("PXED_DEB"):
        return Path(os.environ["PXED_DEB"])
    from pxed import __version__

    deb = REPO / "dist" / f"pxed_{__version__}_all.deb"
    if not deb.exists():
        return None
    sources = [f for d in ("pxed", "units", "packaging", "etc", "man") for f in (REPO / d).rglob("*") if f.is_file()]
    newest = max([f.stat().st_mtime for f in sources] + [(REPO / "Makefile").stat().st_mtime])
    return deb if deb.stat().st_mtime >= newest else None


def deb_depends(deb: Path, field: str = "Depends") -> list[str]:
    """Package names of a .deb's Depends: (or Recommends:): first alternative, no version, no :any."""
    text = subprocess.run(["dpkg-deb", "-f", os.fspath(deb), field], check=True, capture_output=True,
                          text=True).stdout
    names = []
    for dep in filter(None, (d.strip() for d in text.split(","))):
        first = dep.split("|")[0].strip()
        names.append(re.split(r"[\s(:]", first, maxsplit=1)[0])
    return names


def runtime_packages(deb: Path | None = None) -> tuple[str, ...]:
    """What an admin's apt-get install pxed brings: Depends and Recommends (the signed shim + GRUB)."""
    deps = deb_depends(deb) + deb_depends(deb, "Recommends") if deb is not None else list(PXED_PACKAGES)
    return tuple(sorted(set(SYSTEM_PACKAGES) | set(deps)))


# ----------------------------------------------------------------------------- the tree
def can_run_nspawn() -> str | None:
    if os.geteuid() != 0:
        return "needs root (systemd-nspawn)"
    for tool in ("systemd-nspawn", "debootstrap", "nsenter"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run: make deps)"
    return None


def debian_tree(packages: Sequence[str], cache: Path = CACHE) -> Path:
    """A bookworm tree with `packages` installed (debootstrap), built once per package list."""
    key = hashlib.sha256("\n".join([TREE_FORMAT, SUITE, MIRROR, *sorted(packages)]).encode()).hexdigest()[:16]
    tree = cache / f"{SUITE}-{key}"
    cache.mkdir(parents=True, exist_ok=True, mode=0o755)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # concurrent test runs wait for one build
        prune(cache, keep=tree)
        if (tree / ".pxed-tree-complete").exists():
            os.utime(tree / ".pxed-tree-complete")  # in use: prune() keeps it
            return tree
        tmp = cache / f".build-{key}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            for _attempt in range(2):  # one retry: a mirror hiccup should not fail the run
                shutil.rmtree(tmp, ignore_errors=True)
                r = subprocess.run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", SUITE,
                                    os.fspath(tmp), MIRROR], capture_output=True, text=True)
                if r.returncode == 0:
                    break
            if r.returncode != 0:
                log = (tmp / "debootstrap/debootstrap.log")
                detail = log.read_text(errors="replace")[-3000:] if log.exists() else r.stderr[-3000:]
                raise RuntimeError(f"debootstrap failed ({r.returncode}):\n{detail}")
            # Every package configured: debootstrap does not resolve alternatives (it leaves
            # e.g. polkitd unconfigured without libpam-systemd) and still exits 0.
            audit = subprocess.run(["chroot", os.fspath(tmp), "dpkg", "--audit"], capture_output=True, text=True)
            if audit.stdout.strip():
                raise RuntimeError(f"packages left unconfigured in the tree:\n{audit.stdout}")
            subprocess.run(["chroot", os.fspath(tmp), "apt-get", "clean"], check=True, capture_output=True)
            (tmp / "etc/machine-id").write_text("")  # empty: each boot makes its own (transient)
            (tmp / ".pxed-tree-complete").write_text("\n".join(packages) + "\n")
            tmp.rename(tree)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return tree


PRUNE_AFTER = 14 * 86400  # seconds a tree may go unused before prune() removes it


def prune(cache: Path, keep: Path, now: float | None = None) -> list[Path]:
    """Remove trees of other package lists unused for :data:`PRUNE_AFTER`, and builds a crashed
    run left behind (a day old); returns what was removed.  Called with the cache lock held."""
    now = time.time() if now is None else now
    gone = []
    for d in cache.iterdir():
        if d == keep or not d.is_dir():
            continue
        stamp = d / ".pxed-tree-complete"
        if d.name.startswith(f"{SUITE}-") and stamp.exists():
            stale = now - stamp.stat().st_mtime > PRUNE_AFTER
        elif d.name.startswith(".build-"):
            stale = now - d.stat().st_mtime > 86400
        else:
            continue
        if stale:
            shutil.rmtree(d, ignore_errors=True)
            gone.append(d)
    return gone


# ----------------------------------------------------------------------------- the container
def host_runs_systemd() -> bool:
    return Path("/run/systemd/system").is_dir()


@dataclass
class Container:
    """One booted container: an overlay on `tree`, systemd as PID 1, network namespace `netns`."""

    tree: Path
    workdir: Path
    netns: str
    name: str = field(default_factory=lambda: "pxedsys-" + os.urandom(3).hex())
    proc: subprocess.Popen[bytes] | None = None
    leader: int = 0
    _mounted: bool = False

    @property
    def root(self) -> Path:
        return self.workdir / "root"

    @property
    def console(self) -> Path:
        return self.workdir / "console.log"

    def __enter__(self) -> Container:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self, timeout: float = 90) -> None:
        for d in ("upper", "work", "root"):
            (self.workdir / d).mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                        f"lowerdir={self.tree},upperdir={self.workdir / 'upper'},workdir={self.workdir / 'work'}",
                        os.fspath(self.root)], check=True, capture_output=True)
        self._mounted = True
        self.boot(timeout)

    def boot(self, timeout: float = 90) -> None:
        """Start systemd-nspawn on the mounted root and wait until the system is running."""
        nspawn = ["systemd-nspawn", "--quiet", "--boot", f"--directory={self.root}", f"--machine={self.name}",
                  "--register=no", "--keep-unit", f"--network-namespace-path=/run/netns/{self.netns}",
                  "--console=passive", "--link-journal=no", "--resolv-conf=off", "--timezone=off"]
        if host_runs_systemd():
            # --keep-unit needs a unit of its own with a delegated cgroup subtree: a transient scope
            # (systemd-run --scope execs nspawn in place, so our PID is nspawn's).
            nspawn = ["systemd-run", "--quiet", "--scope", "-p", "Delegate=yes", f"--unit={self.name}", *nspawn]
        self.proc = subprocess.Popen(nspawn, stdin=subprocess.DEVNULL, stdout=open(self.console, "wb"),
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_for(self._find_leader, 30, what=f"container {self.name}'s systemd")
        state: list[str] = []

        def booted() -> bool:
            # "Failed to connect to bus" (no output) until PID 1 listens, and "offline" until the
            # freshly exec'd systemd has created /run/systemd/system (systemctl's sd_booted() test)
            state[:] = [self.run(["systemctl", "is-system-running", "--wait"], check=False,
                                 timeout=timeout).stdout.strip()]
            return state[0] not in ("", "offline")

        wait_for(booted, timeout, interval=0.2, what=f"container {self.name} to boot")
        if state[0] != "running":
            failed = self.run(["systemctl", "--failed", "--no-pager", "--plain"], check=False).stdout
            raise RuntimeError(f"container {self.name} is {state[0]!r}, not running:\n{failed}")

    def _find_leader(self) -> bool:
        """nspawn's child in the new PID namespace, once it has exec'd systemd."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise RuntimeError(f"systemd-nspawn exited {self.proc.returncode}: "
                               f"{self.console.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError):
            for task in Path(f"/proc/{self.proc.pid}/task").iterdir():
                for child in (task / "children").read_text().split():
                    if Path(f"/proc/{child}/comm").read_text().strip() == "systemd":
                        self.leader = int(child)
                        return True
        return False

    def argv(self, argv: Sequence[str], *, user: str | None = None) -> list[str]:
        """`argv` run inside the container (all its namespaces, its root), clean environment."""
        assert self.leader, "start() first"
        inner = ["env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "SYSTEMD_PAGER=", "SYSTEMD_COLORS=0", *argv]
        if user is not None:
            inner = ["runuser", "-u", user, "--", *inner]
        return ["nsenter", f"--target={self.leader}", "--all", *inner]

    def run(self, argv: Sequence[str], *, check: bool = True, timeout: float = 60, user: str | None = None,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(argv, user=user), capture_output=True, text=True, timeout=timeout,
                           input=input)
        if check and r.returncode != 0:
            raise AssertionError(f"in {self.name}: {' '.join(argv)} -> {r.returncode}\n"
                                 f"stdout: {r.stdout[-3000:]}\nstderr: {r.stderr[-3000:]}")
        return r

    def path(self, inside: str) -> Path:
        """A path in the container, as seen from the host (the overlay's merged view)."""
        return self.root / inside.lstrip("/")

    def unit_property(self, unit: str, prop: str) -> str:
        return self.run(["systemctl", "show", "--value", "-p", prop, unit]).stdout.strip()

    def journal(self, *args: str) -> str:
        return self.run(["journalctl", "--no-pager", "-q", *args], check=False).stdout

    def poweroff(self, timeout: float = 20) -> float | None:
        """Orderly shutdown (nspawn turns SIGTERM into a poweroff request to PID 1); the seconds
        it took, or None when it did not finish within `timeout` and the container was killed."""
        if self.proc is None or self.proc.poll() is not None:
            return 0.0
        started = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.proc.pid, signal.SIGTERM)
        took: float | None
        try:
            self.proc.wait(timeout)
            took = time.monotonic() - started
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout)
            took = None
        if host_runs_systemd():  # the transient scope, should anything be left in it
            subprocess.run(["systemctl", "stop", "--quiet", f"{self.name}.scope"], capture_output=True)
        return took

    def reboot(self, timeout: float = 90) -> float | None:
        """Power off and boot again on the same root (what was installed and enabled stays)."""
        took = self.poweroff(timeout)
        self._forget_nspawn_state()
        self.boot(timeout)
        return took

    def _forget_nspawn_state(self) -> None:
        """What nspawn leaves when /run is not a tmpfs (it refuses to rm -rf there): our
        machine's propagation dir and the lock on our root's inode."""
        self.proc = None
        self.leader = 0
        with contextlib.suppress(OSError):
            Path(f"/run/systemd/nspawn/propagate/{self.name}").rmdir()
        if self._mounted:
            with contextlib.suppress(OSError):
                st = self.root.stat()
                Path(f"/run/systemd/nspawn/locks/inode-{st.st_dev}:{st.st_ino}").unlink()

    def stop(self, timeout: float = 20) -> None:
        """Power off, then remove the overlay and what nspawn left behind."""
        self.poweroff(timeout)
        self._forget_nspawn_state()
        if self._mounted:
            try:  # busy for a moment after the container's last process exited
                wait_for(lambda: subprocess.run(["umount", os.fspath(self.root)], capture_output=True).returncode == 0,
                         5, interval=0.1, what=f"{self.root} to unmount")
            except TimeoutError:
                subprocess.run(["umount", "--lazy", os.fspath(self.root)], capture_output=True)
            self._mounted = False
        for d in ("upper", "work", "root"):
            shutil.rmtree(self.workdir / d, ignore_errors=True)


# ----------------------------------------------------------------------------- installing pxed
def install_pxed(c: Container, deb: Path | None = None) -> str:
    """Install pxed into the running container the way an admin would; returns how.

    With a .deb: ``apt-get install ./pxed_*.deb`` (offline: its Depends must already be in the
    tree, which was made from them).  Without one: ``make install DESTDIR=<container root>``
    followed by what a package's maintainer scripts do (sysusers, tmpfiles, bus reload).
    """
    if deb is not None:
        shutil.copyfile(deb, c.path(f"/root/{deb.name}"))  # (the container's /tmp is its own tmpfs)
        c.run(["apt-get", "install", "-y", "-o", "Acquire::Retries=0", f"/root/{deb.name}"], timeout=300)
        return "deb"
    subprocess.run(["make", "-s", "install", f"DESTDIR={c.root}", "PREFIX=/usr"], cwd=REPO, check=True,
                   capture_output=True, timeout=300)
    # `installer --prefix=/usr` writes /usr/lib/python3.X/site-packages, which Debian's python3
    # does not search (its scheme is dist-packages); a .pth makes it importable.
    # And the scripts' #! names the python that ran the installer (maybe a venv or pyenv here);
    # a distro build names the system's.
    for script in ("pxed", "pxectl", "pxed-generator"):
        path = c.path(f"/usr/bin/{script}")
        lines = path.read_text().split("\n", 1)
        path.write_text("#!/usr/bin/python3\n" + lines[1])
    site = next(c.root.glob("usr/lib/python3.*/site-packages"))
    (c.path("/usr/lib/python3/dist-packages") / "pxed-make-install.pth").write_text(f"/{site.relative_to(c.root)}\n")
    c.run(["systemd-sysusers"])
    c.run(["systemd-tmpfiles", "--create", "/usr/lib/tmpfiles.d/pxed.conf"])
    c.run(["busctl", "call", "org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus",
           "ReloadConfig"])
    c.run(["systemctl", "daemon-reload"])
    return "make install"
