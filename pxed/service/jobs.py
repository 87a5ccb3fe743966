"""Image import jobs: a queue run one at a time, with progress and cancellation.

A job is created when an import is accepted (its id is known at once), waits for the
import slot, runs the blocking import in a worker thread, and ends done, failed or
cancelled.  Every change is published on the event loop (:class:`JobAdded`,
:class:`JobChanged`, :class:`JobRemoved`), progress at most every
:data:`PROGRESS_INTERVAL` seconds.  The file descriptor is the job's from the start and
closed when it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pxed.errors import Cancelled, NotFound, PxedError
from pxed.images.catalog import Detection, ImageRecord
from pxed.model import JobState
from pxed.service.events import Event, JobAdded, JobChanged, JobInfo, JobRemoved

logger = logging.getLogger(__name__)

PROGRESS_INTERVAL = 0.2  # seconds between progress events of a running job

# (fd, name, progress, cancel, on_detected) → the imported record; blocking, run in a worker thread.
Importer = Callable[[int, "str | None", Callable[[int, int], None], threading.Event, Callable[[Detection], None]],
                    ImageRecord]


@dataclass(slots=True)
class _Job:
    info: JobInfo
    fd: int
    thread_cancel: threading.Event = field(default_factory=threading.Event)
    loop_cancel: asyncio.Event = field(default_factory=asyncio.Event)


class Jobs:
    """The import queue.  Every method runs on the event loop's thread."""

    def __init__(self, publish: Callable[[Event], None]) -> None:
        self._publish = publish
        self._jobs: dict[int, _Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._next = 1
        self._slot = asyncio.Semaphore(1)

    def list(self) -> tuple[JobInfo, ...]:
        return tuple(j.info for j in self._jobs.values())

    def get(self, job_id: int) -> JobInfo:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no import job {job_id}", hint="'pxectl jobs' lists the running imports")
        return job.info

    def names(self) -> set[str]:
        return {j.info.name for j in self._jobs.values() if j.info.name}

    def submit(self, fd: int, name: str, total: int, owner: str, run: Importer,
               on_done: Callable[[ImageRecord], None]) -> JobInfo:
        """Queue an import of ``fd`` (now the job's); ``on_done`` runs on the loop when it succeeded."""
        job = _Job(JobInfo(self._next, name, JobState.QUEUED, 0, total, owner), fd)
        self._next += 1
        self._jobs[job.info.id] = job
        self._publish(JobAdded(job.info))
        task = asyncio.ensure_future(self._run(job, run, on_done))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job.info

    def cancel(self, job_id: int) -> JobInfo:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no import job {job_id}", hint="it may have finished: 'pxectl list' shows the images")
        job.thread_cancel.set()
        job.loop_cancel.set()
        return job.info

    async def stop(self, timeout: float = 10) -> None:
        """Cancel every job and wait (bounded) for them to end."""
        for job in self._jobs.values():
            job.thread_cancel.set()
            job.loop_cancel.set()
        if self._tasks:
            _done, pending = await asyncio.wait(set(self._tasks), timeout=timeout)
            for t in pending:
                logger.warning("an import did not stop within %d s of cancellation", timeout)
                t.cancel()

    # ------------------------------------------------------------ running
    def _update(self, job: _Job, **changes: object) -> None:
        new = dataclasses.replace(job.info, **changes)  # type: ignore[arg-type]
        if new != job.info and job.info.id in self._jobs:
            job.info = new
            self._publish(JobChanged(new))

    async def _run(self, job: _Job, run: Importer, on_done: Callable[[ImageRecord], None]) -> None:
        error: PxedError | None = None
        result = JobState.FAILED
        jid = job.info.id
        try:
            if not await self._acquire_slot(job.loop_cancel):
                raise Cancelled("import cancelled before it started")
            try:
                self._update(job, state=JobState.RUNNING)
                record = await asyncio.to_thread(run, job.fd, job.info.name or None, self._progress(job),
                                                 job.thread_cancel, self._detected(job))
            finally:
                self._slot.release()
            self._update(job, name=record.id, done=job.info.total, state=JobState.DONE)
            result = JobState.DONE
            on_done(record)
        except Cancelled as e:
            result, error = JobState.CANCELED, e
            logger.info("import job %d cancelled", jid, extra={"IMAGE_ID": job.info.name})
        except PxedError as e:
            error = e
            logger.warning("import job %d failed: %s", jid, e, extra={"IMAGE_ID": job.info.name})
        except Exception:
            logger.exception("import job %d failed", jid)
        finally:
            os.close(job.fd)
            if result is not JobState.DONE:
                self._update(job, state=result)
            self._jobs.pop(jid, None)
            self._publish(JobRemoved(job.info, error))

    async def _acquire_slot(self, cancelled: asyncio.Event) -> bool:
        """Wait for the import slot; False (slot not held) if the job is cancelled first."""
        acquire = asyncio.ensure_future(self._slot.acquire())
        cancel = asyncio.ensure_future(cancelled.wait())
        try:
            await asyncio.wait({acquire, cancel}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
        if acquire.done() and not acquire.cancelled():
            if cancelled.is_set():
                self._slot.release()
                return False
            return True
        acquire.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await acquire
            self._slot.release()
        return False

    def _progress(self, job: _Job) -> Callable[[int, int], None]:
        loop = asyncio.get_running_loop()
        last = [0.0]

        def report(done: int, total: int) -> None:  # runs in the import thread
            now = time.monotonic()
            if done < total and now - last[0] < PROGRESS_INTERVAL:
                return
            last[0] = now
            with contextlib.suppress(RuntimeError):  # loop closed at shutdown
                loop.call_soon_threadsafe(lambda: self._update(job, done=max(0, done), total=max(0, total)))

        return report

    def _detected(self, job: _Job) -> Callable[[Detection], None]:
        loop = asyncio.get_running_loop()

        def detected(det: Detection) -> None:  # runs in the import thread
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: self._update(job, detection=det))

        return detected
