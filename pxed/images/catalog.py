"""The image catalog: one JSON file in the state directory, the source of truth for images.

Written atomically (temp file, fsync, rename, fsync of the directory) and validated on
write with the same code that loads it, so state written at runtime always loads at
the next start.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from pxed import rules
from pxed.errors import CatalogError
from pxed.fsutil import atomic_write
from pxed.model import BootEntry

FORMAT_VERSION = 1


class ImageState(enum.StrEnum):
    IMPORTING = "importing"
    READY = "ready"
    FAILED = "failed"


@dataclass(frozen=True, slots=True)
class FileRecord:
    path: str  # relative to the image directory
    size: int
    sha256: str  # "" for files above pxed.images.iso.HASH_LIMIT (checked by size)


@dataclass(frozen=True, slots=True)
class Detection:
    """What an ISO was recognised as, and how it boots (reported before and after writing)."""

    profile: str
    version: str | None = None
    label: str | None = None
    files: tuple[str, ...] = ()
    kernel: str | None = None  # relative to the image directory
    initrds: tuple[str, ...] = ()
    cmdline: str = ""  # may hold {server} ("ip:port") and {base} (the image's URL path)
    memdisk: bool = False
    sysappend: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["files"] = list(self.files)
        d["initrds"] = list(self.initrds)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Detection:
        return cls(profile=str(d["profile"]), version=d.get("version"), label=d.get("label"),
                   files=tuple(d.get("files", ())), kernel=d.get("kernel"), initrds=tuple(d.get("initrds", ())),
                   cmdline=str(d.get("cmdline", "")), memdisk=bool(d.get("memdisk", False)),
                   sysappend=d.get("sysappend"))


@dataclass(frozen=True, slots=True)
class ImageRecord:
    id: str
    title: str
    state: ImageState
    detection: Detection
    reason: str | None = None
    size: int = 0
    iso_size: int = 0
    iso_sha256: str | None = None
    created: float = 0.0
    files: tuple[FileRecord, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "title": self.title, "state": self.state.value, "reason": self.reason,
            "size": self.size, "iso_size": self.iso_size, "iso_sha256": self.iso_sha256, "created": self.created,
            "detection": self.detection.to_dict(), "files": [asdict(f) for f in self.files],
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ImageRecord:
        return cls(
            id=str(d["id"]), title=str(d["title"]), state=ImageState(d["state"]), reason=d.get("reason"),
            size=int(d.get("size", 0)), iso_size=int(d.get("iso_size", 0)), iso_sha256=d.get("iso_sha256"),
            created=float(d.get("created", 0.0)), detection=Detection.from_dict(d["detection"]),
            files=tuple(FileRecord(str(f["path"]), int(f["size"]), str(f["sha256"])) for f in d.get("files", ())),
        )

    def boot_entry(self, server: str) -> BootEntry:
        """The menu entry; ``server`` ("ip" or "ip:port") resolves the command line's placeholder."""
        det = self.detection
        base = f"images/{self.id}"
        if det.memdisk or det.kernel is None:
            return BootEntry(id=self.id, title=self.title, kernel=f"{base}/{self.id}.iso", kind="memdisk")
        append = rules.expand(det.cmdline, {"server": server, "base": base})
        return BootEntry(id=self.id, title=self.title, kernel=f"{base}/{det.kernel}",
                         initrds=tuple(f"{base}/{i}" for i in det.initrds), append=append,
                         sysappend=det.sysappend)

    def with_state(self, state: ImageState, reason: str | None = None) -> ImageRecord:
        return replace(self, state=state, reason=reason)


def validate(records: Iterable[ImageRecord]) -> tuple[ImageRecord, ...]:
    out: list[ImageRecord] = []
    seen: set[str] = set()
    for r in records:
        if not rules.ID_RE.match(r.id):
            raise CatalogError(f"invalid image id {r.id!r} in catalog")
        if r.id in seen:
            raise CatalogError(f"image {r.id!r} listed twice in catalog")
        try:
            rules.check_title(r.title)
        except ValueError as e:
            raise CatalogError(f"image {r.id!r}: {e}") from None
        for f in r.files:
            if f.path.startswith("/") or ".." in f.path.split("/"):
                raise CatalogError(f"image {r.id!r}: unsafe file path {f.path!r}")
        seen.add(r.id)
        out.append(r)
    return tuple(out)


def loads(text: str) -> tuple[ImageRecord, ...]:
    try:
        data = json.loads(text)
        if data.get("version") != FORMAT_VERSION:
            raise CatalogError(f"unsupported catalog version {data.get('version')!r}")
        return validate(ImageRecord.from_dict(d) for d in data["images"])
    except CatalogError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise CatalogError(f"catalog is not valid: {e}") from None


def dumps(records: Iterable[ImageRecord]) -> str:
    recs = validate(records)
    text = json.dumps({"version": FORMAT_VERSION, "images": [r.to_dict() for r in recs]}, indent=1,
                      sort_keys=True) + "\n"
    if loads(text) != recs:  # validated on write with the code that loads it
        raise CatalogError("catalog does not round-trip")
    return text


class Catalog:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / "catalog.json"

    def load(self) -> tuple[ImageRecord, ...]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return ()
        return loads(text)

    def save(self, records: Iterable[ImageRecord]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(self.path, dumps(records).encode())
