"""Run the generator's units in a lab namespace as systemd would run them.

:func:`generate` runs pxed's generator on a configuration; :func:`start_unit` parses a
generated service's ``ExecStart=``, ``User=`` and ``AmbientCapabilities=`` and starts
that exact command line with ``setpriv`` (the unit's user, only those capabilities),
substituting only the user, which does not exist on a test machine.
"""

from __future__ import annotations

import os
import pwd
import shlex
import subprocess
import sys
from pathlib import Path

from tests.lab.netns import Lab, Netns

REPO = Path(__file__).resolve().parents[2]
TEST_USER = "nobody"


def generate(config_path: Path, outdir: Path) -> dict[str, str]:
    outdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PXED_CONFIG": os.fspath(config_path), "PYTHONPATH": os.fspath(REPO)}
    r = subprocess.run([sys.executable, "-m", "pxed.generator", os.fspath(outdir)], env=env, capture_output=True,
                       text=True, check=True)
    if r.stderr:
        raise RuntimeError(f"generator complained: {r.stderr}")
    return {p.relative_to(outdir).as_posix(): p.read_text() for p in outdir.rglob("*")
            if p.is_file() and not p.is_symlink()}


def unit_settings(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            k, _, v = line.partition("=")
            out.setdefault(k.strip(), []).append(v.strip())
    return out


def command_of(unit_text: str, user: str = TEST_USER, syslog: Path | None = None) -> list[str]:
    """The setpriv + ExecStart argv that reproduces the unit's user, capabilities and read-only paths.

    With `syslog`, the process gets a private /dev (as PrivateDevices= gives) whose /dev/log is
    that datagram socket, standing in for journald's syslog socket.
    """
    s = unit_settings(unit_text)
    (exec_start,) = s["ExecStart"]
    unit_user = s.get("User", ["root"])[0]
    argv = [user if a == unit_user else a for a in shlex.split(exec_start)]
    caps = " ".join(s.get("AmbientCapabilities", [])).split()
    ro = " ".join(s.get("ReadOnlyPaths", [])).split()
    if ro or syslog:  # as systemd does: a private mount namespace where these paths are read-only binds
        mounts = "; ".join(f"mount --bind {shlex.quote(p)} {shlex.quote(p)} && "
                           f"mount -o remount,bind,ro {shlex.quote(p)}" for p in ro) or "true"
        if syslog is not None:
            olddev = "/run/pxed-lab-olddev"
            mounts += (f"; mkdir -p {olddev}; mount --bind /dev {olddev}; mount -t tmpfs -o mode=755 tmpfs /dev; "
                       f"for d in null zero full random urandom; do : > /dev/$d; mount --bind {olddev}/$d /dev/$d; "
                       f"done; : > /dev/log; mount --bind {shlex.quote(os.fspath(syslog))} /dev/log; "
                       f"umount {olddev}")
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", f"set -e; {mounts}; exec \"$@\"",
                "sh", *command_of_user(argv, unit_user, user, caps)]
        return argv
    return command_of_user(argv, unit_user, user, caps)


def command_of_user(argv: list[str], unit_user: str, user: str, caps: list[str]) -> list[str]:
    if unit_user == "root":
        return argv
    pw = pwd.getpwnam(user)
    capspec = ",".join("+" + c.lower().removeprefix("cap_") for c in caps)
    pre = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--clear-groups"]
    if caps:
        pre += [f"--inh-caps={capspec}", f"--ambient-caps={capspec}"]
    return [*pre, "--", *argv]


def start_unit(lab: Lab, ns: Netns, unit_text: str, log: Path, user: str = TEST_USER,
               syslog: Path | None = None) -> subprocess.Popen[bytes]:
    return lab.spawn(ns, command_of(unit_text, user, syslog), stdout=open(log, "wb"), stderr=subprocess.STDOUT)


def world_readable_dir(prefix: str = "pxedlab.") -> Path:
    """A work dir the unprivileged servers can traverse (pytest's tmp_path is 0700)."""
    import tempfile

    d = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    d.chmod(0o755)
    return d
