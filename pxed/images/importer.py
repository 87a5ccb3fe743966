"""Import an ISO from an open file descriptor into the boot root, crash-safely.

Steps (each a crash point for the tests, see :func:`crashpoint`):

1. check the fd (regular, readable, within ``[Images] MaxSize``), open it with pycdlib,
   detect the layout (:mod:`pxed.images.profiles`), name and title it, report the
   detection; check free space (``statvfs``, with a reserve);
2. ``importing``: the catalog gets the record in state *importing*;
3. ``extracting``/``extracted``: the files are copied into ``StateDirectory/staging/<id>.*``
   (outside the served tree) through directory fds, created ``O_EXCL|O_NOFOLLOW``, fsynced;
4. ``published``: the staging directory is renamed to ``BootRoot/images/<id>``;
5. ``committed``: the catalog says *ready* (then the menus are regenerated).

Any failure removes what was written and drops the record; a crash leaves at most an
*importing* record and staging files, which :meth:`pxed.service.Service.recover` cleans.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import stat
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from pxed import rules
from pxed.errors import (
    Cancelled,
    InvalidArgument,
    InvalidImage,
    InvalidName,
    NoSpace,
    NotAnIso,
    TooLarge,
    UnknownLayout,
)
from pxed.fsutil import fsync_dir
from pxed.images import profiles
from pxed.images.catalog import Detection, FileRecord, ImageRecord, ImageState
from pxed.images.iso import LIMITS, MAX_FILES, Entry, IsoReader, Limits, copy_ranges, write_error

logger = logging.getLogger(__name__)

MIN_ISO_SIZE = 17 * 2048  # system area + primary volume descriptor + terminator
CRASH_ENV = "PXED_TEST_CRASH_AT"
_FORGED = "the ISO is forged or damaged; pxed refuses it (check the download, or use another ISO)"
STEPS = ("importing", "extracting", "extracted", "published", "committed")


def crashpoint(step: str) -> None:
    """Tests only: PXED_TEST_CRASH_AT=<step> makes the process SIGKILL itself at that step."""
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class Request:
    name: str | None = None
    title: str | None = None
    memdisk: bool | None = None  # True: always whole; False: never; None: when the layout is unknown
    allow_memdisk: bool = True  # [Images] Memdisk=
    max_bytes: int = 16 << 30  # [Images] MaxSize=
    max_files: int = MAX_FILES
    limits: Limits = LIMITS  # of the process reading the ISO's metadata


class Store(Protocol):
    """The catalog side of an import (the service implements it, under its lock)."""

    @property
    def staging_dir(self) -> Path: ...

    @property
    def images_dir(self) -> Path: ...

    def begin(self, record: ImageRecord) -> None: ...  # raises Exists

    def commit(self, record: ImageRecord) -> None: ...

    def abort(self, image_id: str) -> None: ...


def check_fd(fd: int, max_bytes: int) -> int:
    """The size of the ISO behind ``fd``; refuse anything but a readable regular file within the limit."""
    try:
        st = os.fstat(fd)
        flags = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as e:
        raise InvalidArgument(f"unusable file descriptor: {e.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a pipe" if stat.S_ISFIFO(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
                else "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file")
        raise InvalidArgument(f"the file descriptor is {kind}, not a regular file",
                              hint="pass an ISO image file opened for reading")
    if flags & getattr(os, "O_PATH", 0) or flags & os.O_ACCMODE == os.O_WRONLY:
        raise InvalidArgument("the file descriptor is not open for reading",
                              hint="pass an ISO image file opened for reading")
    if st.st_size > max_bytes:
        raise TooLarge(f"the ISO has {st.st_size} bytes, more than the limit of {max_bytes}",
                       hint="raise [Images] MaxSize= in pxed.conf if this is intended")
    if st.st_size < MIN_ISO_SIZE:
        raise NotAnIso(f"the file has {st.st_size} bytes, too small for an ISO 9660 image",
                       hint="pass an ISO 9660 image (.iso); check that the download is complete")
    return st.st_size


def reserve_bytes(fs_size: int) -> int:
    """Space left free after an import: 5% of the file system, at most 1 GiB."""
    return min(1 << 30, fs_size // 20)


def check_space(directory: Path, needed: int) -> None:
    """Refuse unless ``needed`` bytes and the reserve are free on ``directory``'s file system."""
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    st = os.statvfs(directory)
    free, reserve = st.f_bavail * st.f_frsize, reserve_bytes(st.f_blocks * st.f_frsize)
    if free < needed + reserve:
        raise NoSpace(f"the import needs {needed} bytes plus a reserve of {reserve}; {free} are free in {directory}",
                      hint="free space there (pxectl remove an old image) or move BootRoot/StateDirectory")


def choose(req: Request, listing: dict[str, int], texts: dict[str, bytes], label: str | None) -> Detection:
    """The detection to use (pure): forced memdisk, a known layout, or the memdisk fallback."""
    det = None if req.memdisk else profiles.detect(listing, texts, label)
    if det is not None:
        return det
    if req.memdisk or (req.memdisk is None and req.allow_memdisk):
        return profiles.memdisk(label)
    raise UnknownLayout("the ISO's layout is not one pxed knows how to boot over the network",
                        hint="pxectl add --memdisk boots it whole (BIOS only), or set [Images] Memdisk=yes")


# What a kernel starts with: an x86 bzImage's setup header ("HdrS" at 0x202), a PE/EFI image
# ("MZ": EFI-stub and zboot kernels, GRUB's targets on UEFI), an arm64 Image ("ARM\x64" at 0x38).
KERNEL_MAGICS: tuple[tuple[int, bytes], ...] = ((0x202, b"HdrS"), (0, b"MZ"), (0x38, b"ARM\x64"))
_HEAD = 0x240


def check_offered(iso: IsoReader, det: Detection) -> None:
    """Refuse to offer what cannot boot: an empty kernel or initrd, a kernel with no kernel header."""
    if det.memdisk or det.kernel is None:
        return
    for path in (det.kernel, *det.initrds):
        if iso.files[path].size == 0:
            what = "kernel" if path == det.kernel else "initrd"
            raise InvalidImage(f"the {what} {path} is an empty file",
                               hint="the ISO is damaged or forged; pxed offers no empty kernel or initrd")
    head = iso.read_head(iso.files[det.kernel], _HEAD)
    if not any(head[at:at + len(magic)] == magic for at, magic in KERNEL_MAGICS):
        raise InvalidImage(f"{det.kernel} is not a kernel pxed can offer: it has no bzImage, PE/EFI or arm64 "
                           "Image header", hint="the ISO is damaged or forged, or its layout was misread; "
                           "pxectl add --memdisk boots it whole (BIOS only)")


def name_and_title(req: Request, det: Detection) -> tuple[str, str]:
    if req.name is not None:
        name = req.name  # the service checks it (pxed.rules) when it accepts the import, and again at begin()
    else:
        found = profiles.name_from_label(det.label)
        if found is None:
            raise InvalidName("the ISO's volume label gives no usable image name",
                              hint="give one: pxectl add --name NAME")
        name = found
    if req.title is not None:
        try:
            title = rules.check_title(req.title)
        except ValueError as e:
            raise InvalidArgument(f"title refused: {e}", hint="give a title of 1 to 60 printable characters") from None
    else:
        title = profiles.title_of(det) or name
    return name, title


def import_iso(fd: int, req: Request, store: Store, *,
               progress: Callable[[int, int], None] | None = None,
               cancel: threading.Event | None = None,
               on_detected: Callable[[Detection], None] | None = None) -> ImageRecord:
    size = check_fd(fd, req.max_bytes)
    with IsoReader(fd, size, max_files=req.max_files, limits=req.limits, cancel=cancel) as iso:
        listing = {p: e.size for p, e in iso.files.items()}
        texts = {p: t for p in profiles.texts_wanted(listing) if (t := iso.read_text(p)) is not None}
        det = choose(req, listing, texts, iso.label)
        check_offered(iso, det)
        name, title = name_and_title(req, det)
        entries = [iso.files[p] for p in det.files]
        whole = profiles.whole_iso(det)
        if whole:
            cmdline = rules.expand(det.cmdline, {"iso": f"{name}.iso", "iso_kib": str(size * 11 // 10240 + 1)})
            det = replace(det, files=(*det.files, f"{name}.iso"), cmdline=cmdline)
        logger.info("ISO detected as %s (version %s, label %s): %d file(s)%s", det.profile, det.version, det.label,
                    len(det.files), ", served whole through memdisk" if det.memdisk else "")
        if on_detected is not None:
            on_detected(det)
        from_iso = sum(e.size for e in entries)
        if from_iso > size:  # many names on one extent: refuse rather than multiply the bytes
            raise InvalidImage(f"the files to extract add up to {from_iso} bytes, more than the ISO's {size}",
                               hint=_FORGED)
        needed = from_iso + (size if whole else 0)
        check_space(store.staging_dir, needed)
        try:
            store.staging_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            if not store.images_dir.is_dir():
                store.images_dir.mkdir(parents=True, mode=0o755)
                os.chmod(store.images_dir, 0o755)  # served: readable by the TFTP and HTTP users whatever the umask
        except OSError as e:
            raise write_error(e) from None
        if cancel is not None and cancel.is_set():
            raise Cancelled("import cancelled")
        record = ImageRecord(id=name, title=title, state=ImageState.IMPORTING, detection=det, size=needed,
                             iso_size=size, created=time.time())
        store.begin(record)
        crashpoint("importing")
        staging: Path | None = None
        dest = store.images_dir / name
        published = False
        try:
            staging = Path(tempfile.mkdtemp(prefix=f"{name}.", dir=store.staging_dir))
            os.chmod(staging, 0o755)
            files, iso_sha = _extract(iso, entries, name if whole else None, staging, needed,
                                      progress=progress, cancel=cancel)
            crashpoint("extracted")
            if dest.exists() or dest.is_symlink():  # not in the catalog (begin checked): a leftover
                shutil.rmtree(dest) if dest.is_dir() and not dest.is_symlink() else dest.unlink()
            os.rename(staging, dest)
            published = True
            fsync_dir(store.images_dir)
            fsync_dir(store.staging_dir)
            crashpoint("published")
            final = replace(record, state=ImageState.READY, files=files, iso_sha256=iso_sha)
            store.commit(final)
        except BaseException as e:
            if staging is not None:
                shutil.rmtree(staging, ignore_errors=True)
            if published:
                shutil.rmtree(dest, ignore_errors=True)
            store.abort(name)
            if isinstance(e, OSError):
                raise write_error(e) from None
            raise
    logger.info("image %s imported: %s, %d file(s), %d bytes", name, det.profile, len(files), needed)
    return final


def _extract(iso: IsoReader, entries: list[Entry], whole_name: str | None, staging: Path, total: int, *,
             progress: Callable[[int, int], None] | None,
             cancel: threading.Event | None) -> tuple[tuple[FileRecord, ...], str | None]:
    done = 0

    def step(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(done, total)

    step(0)
    records: list[FileRecord] = []
    iso_sha: str | None = None
    dirs: set[str] = set()
    root = os.open(staging, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        jobs: list[tuple[str, Entry | None]] = [(e.path, e) for e in entries]
        if whole_name is not None:
            jobs.append((f"{whole_name}.iso", None))
        for i, (rel, entry) in enumerate(jobs):
            parent = _make_parents(root, rel, dirs)
            try:
                out = os.open(rel.rsplit("/", 1)[-1], os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                              | os.O_CLOEXEC, 0o644, dir_fd=parent)
            finally:
                os.close(parent)
            try:
                os.fchmod(out, 0o644)
                if entry is None:
                    sha = copy_ranges(iso.fd, [(0, iso.size)], out, progress=step, cancel=cancel)
                    iso_sha, size = sha, iso.size
                else:
                    sha, size = iso.copy(entry, out, progress=step, cancel=cancel), entry.size
                os.fsync(out)
            finally:
                os.close(out)
            records.append(FileRecord(rel, size, sha))
            if i == 0:
                crashpoint("extracting")
        for d in sorted(dirs, key=len, reverse=True):
            fsync_dir(staging / d)
        os.fsync(root)
    finally:
        os.close(root)
    return tuple(records), iso_sha


def _make_parents(root: int, rel: str, made: set[str]) -> int:
    """A new fd of ``rel``'s parent directory under ``root``, creating it; never follows a symlink."""
    parts = rel.split("/")
    fd = os.dup(root)
    try:
        for i, comp in enumerate(parts[:-1]):
            if comp in ("", ".", "..") or "/" in comp:
                raise InvalidImage(f"unsafe path {rel!r}", hint=_FORGED)
            try:
                os.mkdir(comp, 0o755, dir_fd=fd)
                made.add("/".join(parts[:i + 1]))
            except FileExistsError:
                pass
            nfd = os.open(comp, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            os.close(fd)
            fd = nfd
            os.fchmod(fd, 0o755)
        if parts[-1] in ("", ".", ".."):
            raise InvalidImage(f"unsafe path {rel!r}", hint=_FORGED)
        return fd
    except BaseException:
        os.close(fd)
        raise
