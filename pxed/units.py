"""Render the units pxed's generator writes: a pure function of the configuration.

Output (paths relative to the generator's output directory):

- ``pxed.socket.d/50-interface.conf`` and ``pxed-pxe.socket.d/50-interface.conf``:
  ``BindToDevice=`` with the literal interface name (``%i`` does not work there);
- ``pxed-tftp.service``: tftp-hpa on the boot root, secure mode, read-only, unprivileged;
- ``pxed-http.service`` (+ ``pxed-http.conf`` for lighttpd): darkhttpd or lighttpd,
  chrooted into the boot root, no listings;
- ``pxed.service.wants/`` symlinks, so starting pxed starts both servers.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import jinja2

from pxed.config import Config, HttpBackend
from pxed.errors import MissingPackage
from pxed.fsutil import atomic_write

_UNITWORD = re.compile(r"[A-Za-z0-9._/:@+-]+\Z")
SYMLINK = "symlink:"  # values starting with this are symlink targets, not file text


@dataclass(frozen=True, slots=True)
class ToolPaths:
    tftpd: str = "/usr/sbin/in.tftpd"
    lighttpd: str = "/usr/sbin/lighttpd"
    darkhttpd: str = "/usr/bin/darkhttpd"

    @classmethod
    def find(cls) -> ToolPaths:
        def which(name: str, default: str) -> str:
            found = shutil.which(name, path=os.pathsep.join(
                [os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin", "/usr/local/sbin", "/usr/local/bin"]))
            return found or default

        d = cls()
        return cls(which("in.tftpd", d.tftpd), which("lighttpd", d.lighttpd), which("darkhttpd", d.darkhttpd))


def resolve_backend(config: Config, paths: ToolPaths) -> HttpBackend:
    """AUTO means darkhttpd when installed, else lighttpd."""
    if config.http_backend is not HttpBackend.AUTO:
        return config.http_backend
    return HttpBackend.DARKHTTPD if Path(paths.darkhttpd).exists() else HttpBackend.LIGHTTPD


def unitword(value: object) -> str:
    text = str(value)
    if not _UNITWORD.match(text):
        raise ValueError(f"unsafe value for a unit file: {text!r}")
    return text


def confstr(value: object) -> str:
    text = unitword(value)
    return text.replace("\\", "\\\\").replace('"', '\\"')


def blocksize(config: Config, mtu: int) -> int:
    """Largest TFTP block that fits the MTU without fragmentation (IP 20 + UDP 8 + TFTP 4)."""
    limit = max(512, mtu - 32)
    return min(limit, config.tftp_block_size) if config.tftp_block_size else limit


def render_units(config: Config, *, mtu: int, paths: ToolPaths, output_dir: Path,
                 tftp_user: str = "pxed-tftp", http_user: str = "pxed-http") -> dict[str, str]:
    """Relative path → file text (or ``symlink:<target>``).  Empty when pxed is unconfigured."""
    if config.interface is None:
        return {}
    env = jinja2.Environment(loader=jinja2.PackageLoader("pxed", "templates"), undefined=jinja2.StrictUndefined,
                             autoescape=False, trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters.update(unitword=unitword, confstr=confstr)
    backend = resolve_backend(config, paths)
    if backend is HttpBackend.DARKHTTPD and not Path(paths.darkhttpd).exists():
        raise MissingPackage(f"darkhttpd not found at {paths.darkhttpd}",
                             hint="install darkhttpd, or set [HTTP] Backend=lighttpd")
    ctx = {
        "interface": config.interface, "boot_root": os.fspath(config.boot_root), "port": config.http_port,
        "blocksize": blocksize(config, mtu), "tftpd": paths.tftpd, "lighttpd": paths.lighttpd,
        "darkhttpd": paths.darkhttpd, "tftp_user": tftp_user, "http_user": http_user,
        "lighttpd_conf": os.fspath(output_dir / "pxed-http.conf"),
        "sources": ", ".join(os.fspath(s) for s in config.sources) or "defaults",
    }
    out: dict[str, str] = {}
    dropin = env.get_template("units/socket-dropin.conf.j2").render(ctx)
    out["pxed.socket.d/50-interface.conf"] = dropin
    out["pxed-pxe.socket.d/50-interface.conf"] = dropin
    out["pxed-tftp.service"] = env.get_template("units/pxed-tftp.service.j2").render(ctx)
    out["pxed-http.service"] = env.get_template(f"units/pxed-http-{backend.value}.service.j2").render(ctx)
    if backend is HttpBackend.LIGHTTPD:
        out["pxed-http.conf"] = env.get_template("units/lighttpd.conf.j2").render(ctx)
    for unit in ("pxed-tftp.service", "pxed-http.service"):
        out[f"pxed.service.wants/{unit}"] = f"{SYMLINK}../{unit}"
    return out


def write_units(output_dir: Path, files: Mapping[str, str]) -> None:
    for rel, text in files.items():
        dest = output_dir / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if text.startswith(SYMLINK):
            if dest.is_symlink() or dest.exists():
                dest.unlink()
            dest.symlink_to(text[len(SYMLINK):])
            continue
        atomic_write(dest, text.encode())
