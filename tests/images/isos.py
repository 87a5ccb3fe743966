"""The tests' one ISO builder (image, D-Bus, service, e2e and system tests, and the benchmarks).

:data:`LAYOUTS` are the real layouts of the distributions pxed imports: small random files
under each distribution's real paths (sizes chosen so that copies are checked byte for
byte), plus the real version and boot config files the detector reads.

    iso, contents = build("archiso", tmp)            # a layout, and the bytes of each file
    iso, contents = make_iso(tmp / "x.iso", files, label)   # any files (bytes, or a size of random)
    iso = payload_iso(tmp / "x.iso", payload=24 << 20)      # no known layout, just data
    write_tree(tree, files); ...; xorriso(tree, iso, label)  # symlinks, nodes, links added in between

xorriso writes them all, except trees it will not write (:func:`pycdlib_iso`).  Hostile
images are made by :func:`patch`ing bytes of a built one (names in directory records,
sizes, the :func:`extent` of a directory).
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

import pycdlib

KIB = 1024
CHUNK = 64 << 20  # random file contents are written this much at a time

# layout name → (volume label, {path: bytes or a size of random bytes})
LAYOUTS: dict[str, tuple[str, dict[str, bytes | int]]] = {
    "archiso": ("ARCH_202611", {
        "arch/boot/x86_64/vmlinuz-linux": 300 * KIB,
        "arch/boot/x86_64/initramfs-linux.img": 700 * KIB,
        "arch/boot/intel-ucode.img": 20 * KIB,
        "arch/boot/amd-ucode.img": 10 * KIB,
        "arch/boot/memtest86+/memtest": 10 * KIB,
        "arch/x86_64/airootfs.sfs": 2048 * KIB,
        "arch/x86_64/airootfs.sha512": b"0" * 128 + b"  airootfs.sfs\n",
        "arch/x86_64/airootfs.sfs.cms.sig": 2 * KIB,
        "arch/version": b"2026.11.01\n",
        "arch/pkglist.x86_64.txt": b"linux 6.12\n",
        "boot/syslinux/syslinux.cfg": b"DEFAULT arch\nLABEL arch\n  LINUX /arch/boot/x86_64/vmlinuz-linux\n"
                                      b"  INITRD /arch/boot/x86_64/initramfs-linux.img\n"
                                      b"  APPEND archisobasedir=arch archisosearchuuid=2026-11-01-00-00-00-00\n",
        "EFI/BOOT/BOOTx64.EFI": 4 * KIB,
        "loader/entries/01-archiso-x86_64-linux.conf": b"title Arch\nlinux /arch/boot/x86_64/vmlinuz-linux\n",
    }),
    "clonezilla": ("3-1-2-22-AMD64", {
        "Clonezilla-Live-Version": b"clonezilla-live-3.1.2-22-amd64\n",
        "live/vmlinuz": 300 * KIB,
        "live/initrd.img": 600 * KIB,
        "live/filesystem.squashfs": 1024 * KIB,
        "live/filesystem.packages": b"drbl\npartclone\n",
        "syslinux/syslinux.cfg": b"default vesamenu.c32\nlabel Clonezilla live\n  kernel /live/vmlinuz\n"
                                 b"  append initrd=/live/initrd.img boot=live union=overlay\n",
        "GPL": b"GNU GENERAL PUBLIC LICENSE\n",
    }),
    "debian-live": ("d-live 12.5.0 xf amd64", {
        "live/vmlinuz-6.1.0-18-amd64": 300 * KIB,
        "live/initrd.img-6.1.0-18-amd64": 600 * KIB,
        "live/filesystem.squashfs": 1024 * KIB,
        ".disk/info": b"Debian GNU/Linux 12.5.0 \"Bookworm\" - Official amd64 LIVE\n",
        "isolinux/isolinux.cfg": b"include menu.cfg\ndefault vesamenu.c32\n",
        "isolinux/menu.cfg": b"label live\n  kernel /live/vmlinuz-6.1.0-18-amd64\n"
                             b"  append initrd=/live/initrd.img-6.1.0-18-amd64 boot=live components quiet splash\n",
    }),
    "ubuntu-casper": ("Ubuntu 22.04.4 LTS amd64", {
        "casper/vmlinuz": 300 * KIB,
        "casper/initrd": 600 * KIB,
        "casper/filesystem.squashfs": 1024 * KIB,
        "casper/filesystem.manifest": b"bash 5.1\n",
        ".disk/info": b"Ubuntu 22.04.4 LTS \"Jammy Jellyfish\" - Release amd64 (20240220)\n",
        "boot/grub/grub.cfg": b"menuentry \"Try Ubuntu\" {\n  linux /casper/vmlinuz file=/cdrom/preseed/ubuntu.seed"
                              b" maybe-ubiquity quiet splash ---\n  initrd /casper/initrd\n}\n",
    }),
    "ubuntu-casper-iso": ("Ubuntu-Server 24.04.1 LTS amd64", {
        "casper/vmlinuz": 300 * KIB,
        "casper/initrd": 600 * KIB,
        "casper/ubuntu-server-minimal.squashfs": 512 * KIB,
        "casper/ubuntu-server-minimal.ubuntu-server.squashfs": 256 * KIB,
        "boot/grub/grub.cfg": b"menuentry \"Try or Install Ubuntu Server\" {\n  set gfxpayload=keep\n"
                              b"  linux /casper/vmlinuz  ---\n  initrd /casper/initrd\n}\n",
    }),
    "fedora-live": ("Fedora-WS-Live-39-1-5", {
        "images/pxeboot/vmlinuz": 300 * KIB,
        "images/pxeboot/initrd.img": 800 * KIB,
        "LiveOS/squashfs.img": 1024 * KIB,
        "isolinux/isolinux.cfg": b"label linux\n  kernel vmlinuz\n  append initrd=initrd.img "
                                 b"root=live:CDLABEL=Fedora-WS-Live-39-1-5 rd.live.image quiet rhgb\n",
        "isolinux/vmlinuz": 300 * KIB,
        "isolinux/initrd.img": 800 * KIB,
    }),
    "memtest86+": ("MT86PLUS_64", {
        "boot/memtest.bin": Path("/boot/memtest86+x64.bin").read_bytes()
        if Path("/boot/memtest86+x64.bin").exists() else 140 * KIB,
        "EFI/BOOT/BOOTX64.EFI": 4 * KIB,
    }),
    "generic": ("TINYCORE", {
        "boot/vmlinuz": 300 * KIB,
        "boot/core.gz": 500 * KIB,
        "boot/isolinux/isolinux.cfg": b"DEFAULT tc\nLABEL tc\n  KERNEL /boot/vmlinuz\n"
                                      b"  INITRD /boot/core.gz\n  APPEND quiet loglevel=3 vga=791\n",
        "cde/onboot.lst": b"\n",
    }),
    "generic-grub": ("SOMELINUX_1_0", {
        "kernels/linux": 200 * KIB,
        "kernels/initramfs.cpio.gz": 300 * KIB,
        "boot/grub/grub.cfg": b"set default=0\nmenuentry 'Some Linux' {\n  linux /kernels/linux console=ttyS0 "
                              b"rdinit=/init $extra\n  initrd /kernels/initramfs.cpio.gz\n}\n",
    }),
    "unknown": ("DATA_DISC", {
        "README.TXT": b"just data\n",
        "data/blob.bin": 256 * KIB,
    }),
}


# pxed offers only kernels with a kernel header: every file of random bytes carries one, so that
# any of them can stand in for a kernel (what pxed checks: "MZ" at 0, "HdrS" at 0x202).
HEADER = ((0, b"MZ"), (0x202, b"HdrS"))


def stamp(data: bytes) -> bytes:
    """``data`` with a bzImage/PE kernel header written over its start (when it is long enough)."""
    out = bytearray(data)
    for at, magic in HEADER:
        if len(out) >= at + len(magic):
            out[at:at + len(magic)] = magic
    return bytes(out)


def kernel(size: int = 3000, fill: bytes = b"k") -> bytes:
    """Text-like bytes (``fill`` repeated, patchable) that pass pxed's kernel header check."""
    return stamp(fill * size)


def write_tree(root: Path, files: Mapping[str, bytes | int], *, remember: bool = True) -> dict[str, bytes]:
    """Write the files under ``root``; returns the bytes of each (the random ones only if ``remember``).

    Random files start with a kernel header (:func:`stamp`)."""
    out: dict[str, bytes] = {}
    for rel, content in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            p.write_bytes(content)
            out[rel] = content
            continue
        with open(p, "wb") as f:  # random bytes, in chunks: benchmark ISOs have files of a GiB
            chunks = []
            for at in range(0, content, CHUNK):
                chunk = os.urandom(min(CHUNK, content - at))
                if at == 0:
                    chunk = stamp(chunk)
                f.write(chunk)
                if remember:
                    chunks.append(chunk)
        if remember:
            out[rel] = b"".join(chunks)
    return out


def xorriso(tree: Path, iso: Path, label: str, *extra: str, rock: bool = True, joliet: bool = True) -> Path:
    """The tests' ISO writer: ``tree`` as an ISO 9660 image (Rock Ridge and Joliet names unless not)."""
    names = [*(["-R"] if rock else ["--norock"]), *(["-J", "-joliet-long"] if joliet else [])]
    subprocess.run(["xorriso", "-as", "mkisofs", "-quiet", *names, "-V", label, *extra, "-o", os.fspath(iso),
                    os.fspath(tree)], check=True, capture_output=True)
    os.chmod(iso, 0o644)
    return iso


def make_iso(iso: Path, files: Mapping[str, bytes | int], label: str, *, rock: bool = True, joliet: bool = True,
             remember: bool = True) -> tuple[Path, dict[str, bytes]]:
    """The ISO of ``files`` (the tree is written beside it, ``<iso>.tree``) and the bytes of every file.

    ``remember=False`` is for benchmark-sized images: the random bytes are neither returned nor
    kept on disk (the tree is removed once the ISO is written).  To put symlinks, device nodes or
    hard links in the image, :func:`write_tree`, add them, then :func:`xorriso`.
    """
    tree = iso.with_name(iso.name + ".tree")
    contents = write_tree(tree, files, remember=remember)
    xorriso(tree, iso, label, rock=rock, joliet=joliet)
    if not remember:
        shutil.rmtree(tree)
    return iso, contents


def payload_iso(path: Path, *, label: str = "PXEDTEST", payload: int = 1 << 20) -> Path:
    """An ISO of no known layout: a README and a ``payload``-byte random data file (sizes are real)."""
    return make_iso(path, {"README.txt": b"pxed test image\n", "data.bin": payload}, label)[0]


def build(layout: str, workdir: Path) -> tuple[Path, dict[str, bytes]]:
    """The ISO of ``layout`` and the bytes of every file in it."""
    label, files = LAYOUTS[layout]
    return make_iso(workdir / f"{layout}.iso", files, label)


class CannotBuild(Exception):
    """This pycdlib (Debian 12 has 1.12) cannot write the tree asked for."""


def pycdlib_iso(iso: Path, label: str, entries: Sequence[tuple[str, str, bytes | None]]) -> Path:
    """Trees xorriso will not write (deeper than ISO 9660 allows, Rock Ridge names of 240 bytes), with pycdlib.

    ``entries`` are (ISO 9660 path, Rock Ridge name, bytes or None for a directory), parents first;
    file paths carry their version (``/BOOT/VMLINUZ.;1``).
    """
    out = pycdlib.PyCdlib()
    out.new(interchange_level=4, rock_ridge="1.09", vol_ident=label)
    for path, rr_name, data in entries:
        if data is None:
            out.add_directory(path, rr_name=rr_name)
        else:
            out.add_fp(io.BytesIO(data), len(data), path, rr_name=rr_name)
    try:
        out.write(os.fspath(iso))
    except pycdlib.pycdlibexception.PyCdlibException as e:
        raise CannotBuild(str(e)) from e
    finally:
        out.close()
    os.chmod(iso, 0o644)
    return iso


def extent(iso: Path, path: str) -> int:
    """The first logical block of ``path`` (an ISO 9660 path) in the image: where :func:`patch` can aim."""
    reader = pycdlib.PyCdlib()
    reader.open(os.fspath(iso))
    try:
        return int(reader.get_record(iso_path=path).extent_location())
    finally:
        reader.close()


def patch(iso: Path, old: bytes, new: bytes, *, count: int | None = None) -> int:
    """Replace same-length byte strings in an ISO (names in directory records); returns how many."""
    assert len(old) == len(new)
    data = iso.read_bytes()
    n = data.count(old)
    assert n, f"{old!r} not found in {iso}"
    iso.write_bytes(data.replace(old, new, count if count is not None else -1))
    return n if count is None else min(n, count)
