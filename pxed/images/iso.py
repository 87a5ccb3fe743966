"""Read an ISO 9660 image from an open file descriptor with pycdlib, refusing hostile content.

Names come from Rock Ridge, else Joliet, else ISO 9660 (lower-cased and without ``;1``, as
Linux shows them).  Every name component is checked (:func:`check_component`): empty, ``.``,
``..``, ``/``, control characters, invalid UTF-8 or more than 255 bytes drop the entry;
device nodes, FIFOs and sockets are dropped too, and so are symlinks unless they are
relative and name a regular file inside the ISO (then they become a copy of it).  Paths deeper than
:data:`MAX_DEPTH` or longer than :data:`MAX_PATH` are dropped.  An ISO with more entries
than ``max_files`` or whose files claim bytes beyond its end is refused.

Each file's bytes are located once, from the very directory record that was listed and
checked (its extent and length, and those of its continuation records), and copied with
``os.sendfile`` over those ranges: a name is never looked up again, so when an ISO names two
files alike (pycdlib's lookup by name finds the last one; the listing keeps the first and
drops the other), what is copied is what was checked.  The caller's fd is only ever read
with ``pread``/``sendfile`` at explicit offsets, so its file offset, which the caller
shares, never moves.
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import logging
import os
import posixpath
import re
import resource
import selectors
import signal
import stat
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import pycdlib

from pxed.errors import Cancelled, ImageIOError, InvalidImage, NoSpace, NotAnIso, PxedError

logger = logging.getLogger(__name__)

SECTOR = 2048
MAX_FILES = 200_000
MAX_DEPTH = 64
MAX_PATH = 4095
MAX_COMPONENT = 255
MAX_TEXT = 64 * 1024
HASH_LIMIT = 64 << 20  # files up to this size get a sha256 in the catalog
CHUNK = 1 << 20  # sendfile per call: the granularity of progress and cancel
_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029/\\]")

Progress = Callable[[int], None]  # bytes just copied


@dataclass(frozen=True, slots=True)
class Entry:
    """A regular file of the ISO under a checked relative path."""

    path: str  # relative, "/"-separated, every component checked
    size: int
    source: str  # the path as pycdlib knows it in ``namespace`` (for messages only: never looked up)
    runs: tuple[tuple[int, int], ...] = ()  # (byte offset in the ISO, length) of its data, in order


def check_component(raw: bytes) -> str | None:
    """The name of one path component, or None when it must be dropped."""
    if not raw or len(raw) > MAX_COMPONENT:
        return None
    try:
        name = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if name in (".", "..") or _BAD_CHARS.search(name) or not name.isprintable():
        return None
    return name


class _PreadFile(io.RawIOBase):
    """A read-only file object over an fd with its own position (pread), for pycdlib."""

    def __init__(self, fd: int, size: int) -> None:
        super().__init__()
        self._fd, self._size, self._pos = fd, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        n = os.preadv(self._fd, [view], self._pos) if len(view) else 0
        self._pos += n
        return n


@dataclass(frozen=True, slots=True)
class Limits:
    """What the child process reading an ISO's metadata may use before it is killed."""

    memory: int = 1 << 30  # bytes of address space (RLIMIT_AS; resident size is watched too)
    cpu: int = 120  # seconds of CPU time (RLIMIT_CPU)
    wall: float = 300.0  # seconds from start to answer


LIMITS = Limits()
MAX_LISTING_BYTES = 256 << 20  # the child's answer, at most
_CHILD = ("import json, sys; sys.path[:] = json.loads(sys.argv[1]); from pxed.images.iso import child_main; "
          "child_main(sys.argv[2:])")


class IsoReader:
    """An opened ISO: its label and checked listing; reads and copies its files.

    The metadata (volume descriptors, directory records, Rock Ridge and its continuation
    areas) is parsed by pycdlib in a child process within ``limits`` (:func:`parse_isolated`);
    that child is killed at once when ``cancel`` is set.  ``limits=None`` parses here (what the
    child itself does).  Only plain data comes back: names, sizes and byte ranges, which this
    process then reads with ``pread``/``sendfile``.
    """

    def __init__(self, fd: int, size: int, *, max_files: int = MAX_FILES, limits: Limits | None = LIMITS,
                 cancel: threading.Event | None = None) -> None:
        self.fd, self.size, self.max_files = fd, size, max_files
        try:
            pvd = os.pread(fd, SECTOR, 16 * SECTOR)
        except OSError as e:
            raise read_error(e) from None
        if pvd[1:6] != b"CD001" or len(pvd) < SECTOR:
            raise NotAnIso("no ISO 9660 volume descriptor at sector 16",
                           hint="pass an ISO 9660 image (.iso), not a disk image or archive")
        declared = struct.unpack_from("<I", pvd, 80)[0] * struct.unpack_from("<H", pvd, 128)[0]
        if declared > size:
            raise InvalidImage(f"the ISO declares {declared} bytes but holds only {size}",
                               hint="the ISO is truncated; download it again")
        self.namespace = "iso_path"
        self.label: str | None = None
        self.dropped: list[str] = []
        self.files: dict[str, Entry] = {}
        if limits is None:
            self._parse()
        else:
            self._load(parse_isolated(fd, size, max_files=max_files, limits=limits, cancel=cancel))

    def _parse(self) -> None:
        self._dirs: dict[int, dict[tuple[int, bytes], int]] = {}
        self._iso = pycdlib.PyCdlib()
        try:
            try:
                self._iso.open_fp(io.BufferedReader(_PreadFile(self.fd, self.size), 1 << 16))
            except MemoryError:  # a limit of the metadata reader's process (child_main)
                raise
            except Exception as e:  # pycdlib raises many kinds on broken metadata
                raise InvalidImage(f"the ISO's metadata cannot be read: {e}",
                                   hint="check the download (sha256sum) and try again") from None
            if self._iso.has_rock_ridge():
                self.namespace = "rr_path"
            elif self._iso.has_joliet():
                self.namespace = "joliet_path"
            self.label = self._label()
            try:
                self._walk()
            except (InvalidImage, NotAnIso, MemoryError):
                raise
            except OSError as e:
                raise read_error(e) from None
            except Exception as e:
                raise InvalidImage(f"the ISO's directory tree cannot be read: {e}",
                                   hint="check the download (sha256sum) and try again") from None
        finally:
            try:
                self._iso.close()
            except Exception:  # noqa: BLE001 - closing a half-parsed ISO must not mask the real error
                pass

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "namespace": self.namespace, "dropped": self.dropped,
                "files": [[e.path, e.source, [list(r) for r in e.runs]] for e in self.files.values()]}

    def _load(self, data: dict[str, Any]) -> None:
        """The listing the child sent, checked again: only what a listing may hold is taken."""
        try:
            label = data["label"]
            self.label = label if isinstance(label, str) and label.isprintable() else None
            self.namespace = {"rr_path": "rr_path", "joliet_path": "joliet_path"}.get(data["namespace"], "iso_path")
            self.dropped = [str(d) for d in data["dropped"]]
            for path, source, runs in data["files"]:
                parts = str(path).split("/")
                if any(check_component(c.encode()) != c for c in parts) or len(self.files) >= self.max_files:
                    raise ValueError(f"bad path {path!r}")
                ranges = tuple((int(o), int(n)) for o, n in runs)
                if any(o < 0 or n <= 0 or o + n > self.size for o, n in ranges):
                    raise ValueError(f"bad extent of {path!r}")
                self.files[str(path)] = Entry(str(path), sum(n for _, n in ranges), str(source), ranges)
        except (KeyError, TypeError, ValueError) as e:
            raise InvalidImage(f"the ISO metadata reader gave a listing pxed cannot use: {e}",
                               hint="report this as a bug, with the ISO if you can") from None
        for d in self.dropped[:20]:
            logger.info("ISO entry dropped: %s", d)

    # ------------------------------------------------------------------ context
    def __enter__(self) -> IsoReader:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def close(self) -> None:
        """Nothing to release: pycdlib is closed once the listing is made (the fd is the caller's)."""

    # ------------------------------------------------------------------ listing
    def _label(self) -> str | None:
        try:
            raw = self._iso.pvd.volume_identifier
        except AttributeError:
            return None
        text = raw.decode("ascii", "replace").strip()
        return text if text and text.isprintable() else None

    def _name(self, rec: Any) -> bytes:
        if self.namespace == "rr_path" and rec.rock_ridge is not None:
            return bytes(rec.rock_ridge.name())
        ident = bytes(rec.file_identifier())
        if self.namespace == "joliet_path":
            try:
                return ident.decode("utf-16-be").encode("utf-8")
            except UnicodeDecodeError:
                return b""
        return ident

    def _iso_name(self, ident: bytes) -> bytes:
        """ISO 9660 name as Linux shows it: lower case, no ';1', no trailing dot."""
        name = ident.split(b";", 1)[0]
        if name.endswith(b".") and len(name) > 1:
            name = name[:-1]
        return name.lower()

    def _kind(self, rec: Any) -> str:
        if rec.is_dir():
            return "dir"
        rr = rec.rock_ridge if self.namespace == "rr_path" else None
        if rr is not None:
            if rr.is_symlink():
                return "symlink"
            mode = rr.get_file_mode() if rr.dr_entries.px_record is not None else stat.S_IFREG
            if rr.dr_entries.pn_record is not None or (mode and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode)):
                return "special"
        return "file"

    def _children(self, source: str) -> Iterator[Any]:
        for rec in self._iso.list_children(**{self.namespace: source or "/"}):
            if rec is None or rec.is_dot() or rec.is_dotdot():
                continue
            yield rec

    def _walk(self) -> None:
        count = 0
        links: dict[str, bytes] = {}  # our path → Rock Ridge symlink target
        seen_dirs: set[int] = set()
        todo: list[tuple[str, str, int]] = [("", "", 0)]  # (our path, pycdlib path, depth)
        while todo:
            path, source, depth = todo.pop()
            parts: set[int] = set()  # records that continue a multi-extent file listed before
            for rec in self._children(source):
                if id(rec) in parts:
                    continue
                more = getattr(rec, "data_continuation", None)
                while more is not None:
                    parts.add(id(more))
                    more = getattr(more, "data_continuation", None)
                count += 1
                if count > self.max_files:
                    raise InvalidImage(f"the ISO holds more than {self.max_files} entries",
                                       hint="pxed refuses ISOs with that many files")
                raw = self._name(rec)
                src_name = raw.decode("utf-8", "surrogateescape")
                if self.namespace == "iso_path":
                    src_name = bytes(rec.file_identifier()).decode("ascii", "surrogateescape")
                    raw = self._iso_name(raw)
                name = check_component(raw)
                shown = f"{path}/{raw!r}" if path else repr(raw)
                if name is None:
                    self.dropped.append(f"{shown}: unsafe name")
                    continue
                rel = f"{path}/{name}" if path else name
                kind = self._kind(rec)
                if len(rel.encode()) > MAX_PATH or depth + 1 > MAX_DEPTH:
                    self.dropped.append(f"{rel[:80]}...: path too long or too deep")
                    continue
                if kind == "symlink":
                    links[rel] = bytes(rec.rock_ridge.symlink_path())
                    continue
                if kind == "special":
                    self.dropped.append(f"{rel}: {kind}")
                    continue
                child_source = f"{source}/{src_name}"
                if kind == "dir":
                    extent = rec.extent_location()
                    if extent in seen_dirs:
                        self.dropped.append(f"{rel}: directory seen twice (loop)")
                        continue
                    seen_dirs.add(extent)
                    todo.append((rel, child_source, depth + 1))
                    continue
                runs = self._runs(rec)
                if rel in self.files:  # the first one listed is kept, and copied from its own extents
                    self.dropped.append(f"{rel}: duplicate name")
                    continue
                self.files[rel] = Entry(rel, sum(n for _, n in runs), child_source, runs)
        for rel, target in sorted(links.items()):
            self._materialise(rel, target)
        for d in self.dropped[:20]:
            logger.info("ISO entry dropped: %s", d)

    def _claimed(self, rec: Any) -> int:
        """The length the directory record on disk claims (pycdlib clamps it to the end of the ISO)."""
        parent = rec.parent
        if parent is None:
            return int(rec.get_data_length())
        where = parent.extent_location()
        table = self._dirs.get(where)
        if table is None:
            table = {}
            raw = os.pread(self.fd, min(int(parent.get_data_length()), 16 << 20), where * SECTOR)
            pos = 0
            while pos + 33 <= len(raw):
                n = raw[pos]
                if n == 0:  # records do not cross sectors: the rest of this one is padding
                    pos = (pos // SECTOR + 1) * SECTOR
                    continue
                if n < 34 or pos + n > len(raw):
                    break
                ident = bytes(raw[pos + 33:pos + 33 + raw[pos + 32]])
                table[(struct.unpack_from("<I", raw, pos + 2)[0], ident)] = struct.unpack_from("<I", raw, pos + 10)[0]
                pos += n
            self._dirs[where] = table
        return table.get((rec.extent_location(), bytes(rec.file_identifier())), int(rec.get_data_length()))

    def _materialise(self, rel: str, target: bytes) -> None:
        """Keep a symlink as a copy of its target when that is a regular file inside the ISO."""
        try:
            text = target.decode("utf-8")
        except UnicodeDecodeError:
            text = ""
        resolved = posixpath.normpath(posixpath.join(posixpath.dirname(rel), text)) if text else ""
        entry = self.files.get(resolved)
        if not text or text.startswith("/") or resolved.startswith("../") or entry is None or rel in self.files:
            self.dropped.append(f"{rel}: symlink to {target!r} (not a file inside the ISO)")
            return
        self.files[rel] = Entry(rel, entry.size, entry.source, entry.runs)

    def _runs(self, rec: Any) -> tuple[tuple[int, int], ...]:
        """Where the file of this very record lies: its extent, then its continuation records' ones."""
        runs: list[tuple[int, int]] = []
        r = rec
        while r is not None:
            length = int(r.get_data_length())
            claimed = max(length, self._claimed(r))
            start = int(r.extent_location()) * SECTOR
            if length < 0 or (claimed and start + claimed > self.size):
                raise InvalidImage(f"a file claims {claimed} bytes beyond the end of the ISO ({self.size} bytes)",
                                   hint="the ISO is truncated or forged; download it again")
            if getattr(r, "interleave_gap_size", 0) or getattr(r, "file_unit_size", 0):
                raise InvalidImage("the ISO has an interleaved file, which pxed does not read",
                                   hint="pxed reads ISO 9660 files stored in whole extents; use another ISO")
            if length:
                runs.append((start, length))
            r = getattr(r, "data_continuation", None)
            if len(runs) > MAX_FILES:
                raise InvalidImage("a file of the ISO has too many extents", hint="the ISO is forged or damaged")
        return tuple(runs)

    # ------------------------------------------------------------------ data
    def extents(self, entry: Entry) -> list[tuple[int, int]]:
        """Byte ranges of the file in the ISO (of the record that was listed: never looked up by name)."""
        return list(entry.runs)

    def read_head(self, entry: Entry, n: int) -> bytes:
        """The first ``n`` bytes of a file (fewer if it is shorter): what a header check needs."""
        out = bytearray()
        try:
            for off, length in entry.runs:
                if len(out) >= n:
                    break
                out += os.pread(self.fd, min(length, n - len(out)), off)
        except OSError as e:
            raise read_error(e) from None
        return bytes(out)

    def read_text(self, path: str, limit: int = MAX_TEXT) -> bytes | None:
        """A small file's bytes (configuration, version files); None if absent or too large."""
        entry = self.files.get(path)
        if entry is None or entry.size > limit:
            return None
        return self.read_head(entry, entry.size)

    def copy(self, entry: Entry, out_fd: int, *, progress: Progress, cancel: threading.Event | None) -> str:
        """Copy one file into ``out_fd``; returns its sha256 (hex)."""
        return copy_ranges(self.fd, list(entry.runs), out_fd, progress=progress, cancel=cancel)


def read_error(e: OSError) -> PxedError:
    return ImageIOError(f"cannot read the ISO: {e.strerror}",
                        hint="check the disk or medium holding the ISO (dmesg) and import again")


def write_error(e: OSError) -> PxedError:
    """The typed error for a failed write into the staging directory."""
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NoSpace("the file system of the boot root filled up during the import",
                       hint="free space there (pxectl remove an old image) and import again")
    return ImageIOError(f"copy failed: {e.strerror}",
                        hint="check the disk holding the boot root (dmesg) and import again")


def copy_ranges(in_fd: int, runs: list[tuple[int, int]], out_fd: int, *, progress: Progress,
                cancel: threading.Event | None) -> str:
    """sendfile ``runs`` of ``in_fd`` to ``out_fd``; sha256 them in a second thread meanwhile.

    Files above :data:`HASH_LIMIT` are not hashed ("" is returned): hashing a 1 GiB root
    image costs more than copying it, and those images carry their own checksums or are
    checked by size.
    """
    digest = hashlib.sha256()
    failure: list[BaseException] = []
    stop = threading.Event()
    hashed = sum(n for _, n in runs) <= HASH_LIMIT

    def hash_runs() -> None:
        try:
            for off, n in runs:
                end = off + n
                while off < end and not stop.is_set():
                    data = os.pread(in_fd, min(4 << 20, end - off), off)
                    if not data:
                        raise InvalidImage("the ISO ends before the file does",
                                           hint="the ISO is truncated or forged; download it again")
                    digest.update(data)
                    off += len(data)
        except BaseException as e:  # re-raised in the copying thread
            failure.append(e)

    hasher = threading.Thread(target=hash_runs, name="pxed-sha256", daemon=True)
    if hashed:
        hasher.start()
    try:
        for off, n in runs:
            end = off + n
            while off < end:
                if cancel is not None and cancel.is_set():
                    raise Cancelled("import cancelled")
                try:
                    sent = os.sendfile(out_fd, in_fd, off, min(CHUNK, end - off))
                except OSError as e:
                    raise write_error(e) from None
                if sent == 0:
                    raise InvalidImage("the ISO ends before one of its files does",
                                       hint="the ISO is truncated or forged; download it again")
                off += sent
                progress(sent)
    except BaseException:
        stop.set()
        raise
    finally:
        if hashed:
            hasher.join()
    if failure:
        raise failure[0]
    return digest.hexdigest() if hashed else ""


# ---------------------------------------------------------------------- the metadata reader's process

_CHILD_ERRORS: dict[str, type[PxedError]] = {"InvalidImage": InvalidImage, "NotAnIso": NotAnIso,
                                             "ImageIOError": ImageIOError}
_LIMIT_HINT = ("the ISO is forged or damaged (pxed refuses it); if it is genuine and very large, "
               "raise [Images] ParseMemory=, ParseCPU= or ParseTime= in pxed.conf")


def parse_isolated(fd: int, size: int, *, max_files: int, limits: Limits,
                   cancel: threading.Event | None) -> dict[str, Any]:
    """The ISO's listing, made by pycdlib in a child process bounded by ``limits``.

    The child (the same Python with this one's module path, ignoring PYTHON* variables,
    running :func:`child_main`) gets ``fd`` and nothing else, sets
    its own RLIMIT_AS and RLIMIT_CPU, and writes the listing as JSON.  This side watches its
    resident size and CPU time too (in case the limits could not be set), the wall clock, and
    ``cancel``: any of them kills the child at once.  Raises Cancelled, or an ImageError with a
    hint saying which limit was hit.
    """
    path = json.dumps([os.path.abspath(p) for p in sys.path])  # the child imports what this process does
    argv = [sys.executable, "-E", "-s", "-c", _CHILD, path, str(fd), str(size), str(max_files), str(limits.memory),
            str(limits.cpu)]
    try:
        proc = subprocess.Popen(argv, pass_fds=(fd,), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, close_fds=True)
    except OSError as e:
        raise ImageIOError(f"cannot start the ISO metadata reader ({sys.executable}): {e.strerror}",
                           hint="check pxed's installation and its unit's restrictions") from None
    assert proc.stdout is not None and proc.stderr is not None
    out, err = bytearray(), bytearray()
    deadline = time.monotonic() + limits.wall
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    try:
        while sel.get_map():
            _check_child(proc.pid, limits, deadline, cancel)
            for key, _ in sel.select(0.05):
                chunk = os.read(key.fd, 1 << 20)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                key.data.extend(chunk)
                if len(out) > MAX_LISTING_BYTES:
                    raise InvalidImage(f"the ISO's listing is larger than {MAX_LISTING_BYTES} bytes", hint=_FORGED)
                del err[:-65536]
        while proc.poll() is None:
            _check_child(proc.pid, limits, deadline, cancel)
            time.sleep(0.01)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    finally:
        sel.close()
        proc.stdout.close()
        proc.stderr.close()
    return _answer(proc.returncode, bytes(out), bytes(err), limits)


_FORGED = "the ISO is forged or damaged; pxed refuses it (check the download, or use another ISO)"


def _check_child(pid: int, limits: Limits, deadline: float, cancel: threading.Event | None) -> None:
    if cancel is not None and cancel.is_set():
        raise Cancelled("import cancelled")
    if time.monotonic() > deadline:
        raise InvalidImage(f"reading the ISO's metadata took more than {limits.wall:g} s", hint=_LIMIT_HINT)
    rss, cpu = _usage(pid)
    if rss > limits.memory:
        raise InvalidImage(f"reading the ISO's metadata needed more than {limits.memory} bytes of memory",
                           hint=_LIMIT_HINT)
    if cpu > limits.cpu:
        raise InvalidImage(f"reading the ISO's metadata took more than {limits.cpu} s of CPU time",
                           hint=_LIMIT_HINT)


def _usage(pid: int) -> tuple[int, float]:
    """Resident bytes and CPU seconds of a child (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            rss = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0, 0.0
    return rss, cpu


def _answer(rc: int, out: bytes, err: bytes, limits: Limits) -> dict[str, Any]:
    if rc in (-signal.SIGXCPU, -signal.SIGKILL):
        raise InvalidImage(f"reading the ISO's metadata took more than {limits.cpu} s of CPU time", hint=_LIMIT_HINT)
    try:
        data = json.loads(out) if out else None
    except ValueError:
        data = None
    if isinstance(data, dict) and "error" in data:
        if data["error"] == "memory":
            raise InvalidImage(f"reading the ISO's metadata needed more than {limits.memory} bytes of memory",
                               hint=_LIMIT_HINT)
        cls = _CHILD_ERRORS.get(str(data["error"]), InvalidImage)
        raise cls(str(data.get("message", "the ISO cannot be read"))[:500], hint=str(data.get("hint") or _FORGED))
    if rc != 0 or not isinstance(data, dict):
        if b"MemoryError" in err:
            raise InvalidImage(f"reading the ISO's metadata needed more than {limits.memory} bytes of memory",
                               hint=_LIMIT_HINT)
        last = err.decode("utf-8", "replace").strip().splitlines()[-1:] or [f"exit status {rc}"]
        logger.warning("the ISO metadata reader failed (status %s): %s", rc, err[-2000:].decode("utf-8", "replace"))
        raise InvalidImage(f"the ISO metadata reader failed: {last[0][:200]}", hint=_FORGED)
    return data


def child_main(argv: list[str]) -> None:
    """The metadata reader's process: limit itself, list the ISO on ``fd``, write JSON to stdout, exit."""
    fd, size, max_files, memory, cpu = (int(a) for a in argv)
    for what, value in ((resource.RLIMIT_AS, memory), (resource.RLIMIT_CPU, cpu)):
        try:
            resource.setrlimit(what, (value, value + 1 if what == resource.RLIMIT_CPU else value))
        except (OSError, ValueError) as e:  # a seccomp filter may refuse: the parent watches too
            print(f"pxed: cannot set a resource limit: {e}", file=sys.stderr)
    try:
        try:
            reader = IsoReader(fd, size, max_files=max_files, limits=None)
            answer: dict[str, Any] = reader.to_json()
        except PxedError as e:
            answer = {"error": type(e).__name__, "message": e.message, "hint": e.hint}
        data = json.dumps(answer).encode()
    except MemoryError:
        data = b'{"error": "memory"}'
    view = memoryview(data)
    while view:
        view = view[os.write(1, view):]
    os._exit(0)
