"""A stand-in ISO importer for the D-Bus tests while pxed's own importer is not there.

``Service.import_image`` refuses with ToolError("ISO import is not available ...") until
the importer lands.  The D-Bus layer's jobs (progress, detection, cancel, queueing,
Exists, concurrency) still need an import that runs, so tests/dbus/serve.py installs
this one **only when the service refuses**.  It keeps the service's contract: reads the
caller's fd with pread (never a path), reports Detection and progress, honours cancel,
names the image after the volume label when no name is given, refuses a taken name with
Exists, copies the ISO whole (memdisk) under BootRoot/images/NAME/ and adds a READY
record through the service's catalog and lock, then regenerates the menus.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable

from pxed.errors import Cancelled, Exists, NotAnIso, ToolError
from pxed.images.catalog import Detection, FileRecord, ImageRecord, ImageState
from pxed.service import ImportOptions, Service

CHUNK = 1 << 20


def importer_missing(service: Service) -> bool:
    try:
        service.import_image(-1, None, ImportOptions())
    except ToolError as e:
        return "not available" in str(e)
    except Exception:
        return False
    return False


def volume_label(fd: int) -> str:
    pvd = os.pread(fd, 2048, 16 * 2048)
    if pvd[1:6] != b"CD001":
        raise NotAnIso("no ISO 9660 primary volume descriptor")
    return pvd[40:72].decode("ascii", "replace").strip()


def install(service: Service) -> None:
    def import_image(fd: int, name: str | None, options: ImportOptions, *,
                     progress: Callable[[int, int], None] | None = None, cancel: threading.Event | None = None,
                     on_detected: Callable[[Detection], None] | None = None) -> ImageRecord:
        label = volume_label(fd)
        name = name or re.sub(r"[^a-z0-9._-]+", "-", label.lower()).strip("-") or "image"
        if any(r.id == name for r in service.list_images()):
            raise Exists(f"an image named {name!r} already exists",
                         hint=f"choose another --name or pxectl remove {name}")
        det = Detection(profile="memdisk", label=label, memdisk=True)
        if on_detected:
            on_detected(det)
        size = os.fstat(fd).st_size
        target = service.images_dir / name
        target.mkdir(parents=True, exist_ok=False)
        digest = hashlib.sha256()
        try:
            with open(target / f"{name}.iso", "wb") as out:
                done = 0
                while done < size:
                    if cancel is not None and cancel.is_set():
                        raise Cancelled("import cancelled")
                    data = os.pread(fd, min(CHUNK, size - done), done)
                    if not data:
                        break
                    out.write(data)
                    digest.update(data)
                    done += len(data)
                    if progress:
                        progress(done, size)
            record = ImageRecord(id=name, title=options.title or label or name, state=ImageState.READY,
                                 detection=det, size=size, iso_size=size, iso_sha256=digest.hexdigest(),
                                 created=time.time(), files=(FileRecord(f"{name}.iso", size, digest.hexdigest()),))
            with service._lock:
                if any(r.id == name for r in service._images):
                    raise Exists(f"an image named {name!r} already exists")
                images = (*service._images, record)
                service._catalog.save(images)
                service._images = images
                service.render_menus()
            return record
        except BaseException:
            import shutil

            shutil.rmtree(target, ignore_errors=True)
            raise

    service.import_image = import_image  # type: ignore[method-assign]


__all__ = ["importer_missing", "install"]
