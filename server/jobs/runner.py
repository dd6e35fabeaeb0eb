"""Runs the jobs of one data directory: a bounded number at once, each with a bounded number of
items in flight, every item committed on its own so nothing done is ever lost or done twice.

- **Persistence**: every state change goes through the `JobStore` (SQLite) on one database
  thread, never on the event loop. An item is claimed (`running`), worked on, then committed
  (`done`/`failed`) in one transaction; after a crash the claimed-but-uncommitted items go back to
  `pending` (`JobStore.recover_after_restart`) and the job resumes, or waits as `interrupted` when
  auto-resume is off.
- **Items** (listing, priority, retries, per-item failures) are `execution.JobExecution`'s.
- **Control**: cancel and pause cancel the job's task; in-flight items stop (their decoders and
  Triton calls are cancelled) and go back to `pending`, so cancel keeps what was committed and
  resume re-runs only what was not.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

from stash_vision.server import metrics
from stash_vision.server.errors import (
    InvalidInput,
    JobConflict,
    JobsUnavailable,
    StashVisionError,
    StorageUnavailable,
    unwrap_group,
)

from .api import JobPage, JobUpdate, ResultPage
from .execution import JobExecution, RateWindow, RunnerTools
from .kinds.base import JobKind
from .lock import RunnerLock
from .model import Job, JobState
from .store import JobStore

log = logging.getLogger("stash_vision.server.jobs")

T = TypeVar("T")

_LIST_BATCH = 500
_RATE_WINDOW_S = 60.0
_WATCH_INTERVAL_S = 0.25  # at most four progress updates a second per watcher
_RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
_STOPPING = {JobState.PAUSED, JobState.CANCELLED}


@dataclass
class _Active:
    """A job this process is running now."""

    task: asyncio.Task[None]
    stop_as: JobState | None = None  # set by cancel/pause before the task is cancelled
    rate: RateWindow = field(default_factory=RateWindow)


class JobRunner:
    def __init__(
        self,
        store: JobStore,
        kinds: Sequence[JobKind[Any]],
        lock_path: Path,
        *,
        max_running_jobs: int = 1,
        items_in_flight: int = 4,
        auto_resume: bool = True,
    ) -> None:
        self.store = store
        self._kinds: dict[str, JobKind[Any]] = {kind.name: kind for kind in kinds}
        self._lock = RunnerLock(lock_path)
        self.max_running_jobs = max_running_jobs
        self.items_in_flight = items_in_flight
        self.auto_resume = auto_resume
        # SQLite off the event loop, one statement at a time.
        self._db = ThreadPoolExecutor(1, thread_name_prefix="jobs-db")
        self._listing = ThreadPoolExecutor(2, thread_name_prefix="jobs-list")
        self._active: dict[str, _Active] = {}
        self._wake = asyncio.Event()
        self._changed: dict[str, asyncio.Event] = {}
        self._scheduler: asyncio.Task[None] | None = None
        self._tools = RunnerTools(self.store, self._call, self._event, self._notify, self._listing)
        self.unavailable: str = ""  # why this process runs no jobs, if it does not
        # Jobs a full or locked jobs.db stopped, whose `interrupted` state could not be written
        # either: shown as interrupted (with the reason) instead of a `running` that never moves.
        self._stalled: dict[str, str] = {}

    # -- life cycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            self._lock.acquire()
        except JobsUnavailable as error:
            self.unavailable = str(error)
            log.warning("%s", error)
            return
        recovered = await self._call(self.store.recover_after_restart, auto_resume=self.auto_resume)
        for job_id in recovered:
            state = (
                "resumes"
                if self.auto_resume
                else "waits as interrupted (STASH_VISION_JOBS_AUTO_RESUME is off)"
            )
            await self._event(job_id, "warning", f"the server stopped while this job ran; it {state}")
        self._scheduler = asyncio.create_task(self._schedule(), name="jobs-scheduler")
        await self._publish_metrics()

    async def stop(self) -> None:
        """Stops running jobs without a state change: they are `running` in the database, so the next
        start resumes them (or marks them interrupted) exactly as after a crash."""
        if self._scheduler is not None:
            self._scheduler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scheduler
        active = list(self._active.values())
        for job in active:
            job.task.cancel()
        await asyncio.gather(*(job.task for job in active), return_exceptions=True)
        self._lock.release()
        self._db.shutdown(wait=True)
        self._listing.shutdown(wait=False, cancel_futures=True)

    # -- the Jobs protocol -------------------------------------------------------------------------

    def kinds(self) -> builtins.list[str]:
        return sorted(self._kinds)

    async def submit(self, kind: str, params: dict[str, Any]) -> Job:
        if self.unavailable:
            raise JobsUnavailable(self.unavailable)
        job_kind = self._kinds.get(kind)
        if job_kind is None:
            raise InvalidInput(f"unknown job kind {kind!r}; this server runs: {', '.join(self.kinds())}")
        if not isinstance(params, Mapping):
            raise InvalidInput(f"params must be an object, got {type(params).__name__}")
        await asyncio.to_thread(job_kind.parse, params)  # may stat roots: off the event loop
        job = await self._call(self.store.create_job, kind, dict(params), unit=job_kind.unit)
        await self._event(job.id, "info", f"queued {kind}")
        self._wake.set()
        await self._publish_metrics()
        return job

    async def get(self, job_id: str) -> Job:
        return self._live(await self._call(self.store.get_job, job_id))

    async def list(
        self,
        *,
        states: Sequence[JobState] = (),
        kinds: Sequence[str] = (),
        page_size: int = 50,
        page_token: str = "",
    ) -> JobPage:
        page = await self._call(
            self.store.list_jobs, states=states, kinds=kinds, page_size=page_size, page_token=page_token
        )
        return JobPage([self._live(job) for job in page.jobs], page.next_page_token)

    async def cancel(self, job_id: str) -> Job:
        return await self._stop(job_id, JobState.CANCELLED)

    async def pause(self, job_id: str) -> Job:
        return await self._stop(job_id, JobState.PAUSED)

    async def resume(self, job_id: str) -> Job:
        if self.unavailable:
            raise JobsUnavailable(self.unavailable)
        job = self._live(await self._call(self.store.get_job, job_id))
        if job.state not in (JobState.PAUSED, JobState.INTERRUPTED):
            raise JobConflict(f"job {job_id} is {job.state}; only a paused or interrupted job can be resumed")
        if job_id in self._stalled:  # its items may still be marked running in jobs.db
            await self._call(self.store.release_running_items, job_id)
        job = await self._call(
            self.store.update_job, job_id, state=JobState.QUEUED, message="queued to resume"
        )
        self._stalled.pop(job_id, None)
        await self._event(job_id, "info", "resumed")
        self._wake.set()
        return job

    async def watch(self, job_id: str) -> AsyncIterator[JobUpdate]:
        seen = 0
        changed = self._changed.setdefault(job_id, asyncio.Event())
        while True:
            changed.clear()
            job = await self.get(job_id)
            events = await self._call(self.store.events, job_id, after_seq=seen)
            if events:
                seen = events[-1].seq
            yield JobUpdate(job, events)
            if job.state.finished or job.state in (JobState.PAUSED, JobState.INTERRUPTED):
                return
            await asyncio.sleep(_WATCH_INTERVAL_S)
            with contextlib.suppress(TimeoutError):
                # A running job's progress moves on its own; a queued one may wait long.
                await asyncio.wait_for(changed.wait(), timeout=5.0)

    async def results(self, job_id: str, *, page_size: int = 100, page_token: str = "") -> ResultPage:
        return await self._call(self.store.results, job_id, page_size=page_size, page_token=page_token)

    # -- internals ---------------------------------------------------------------------------------

    async def _call(self, function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._db, lambda: function(*args, **kwargs))

    async def _event(self, job_id: str, level: str, message: str) -> None:
        await self._call(self.store.append_event, job_id, level, message)
        self._notify(job_id)

    def _notify(self, job_id: str) -> None:
        changed = self._changed.get(job_id)
        if changed is not None:
            changed.set()

    def _live(self, job: Job) -> Job:
        """The stored job with the rate and ETA only this process knows."""
        if job.id in self._stalled and job.state is JobState.RUNNING:
            reason = self._stalled[job.id]
            return replace(job, state=JobState.INTERRUPTED, message=f"interrupted: {reason}", error=reason)
        active = self._active.get(job.id)
        rate = active.rate.rate() if active is not None else None
        if rate is None:
            return job
        progress = job.progress
        remaining = progress.total - progress.done
        eta = remaining / rate if rate > 0 and progress.listing_complete else None
        return replace(job, progress=replace(progress, rate=rate, eta_seconds=eta))

    async def _stop(self, job_id: str, target: JobState) -> Job:
        job = await self._call(self.store.get_job, job_id)
        verb = "cancelled" if target is JobState.CANCELLED else "paused"
        allowed = (
            {JobState.QUEUED, JobState.RUNNING, JobState.PAUSED, JobState.INTERRUPTED}
            if target is JobState.CANCELLED
            else {JobState.QUEUED, JobState.RUNNING}
        )
        if job.state not in allowed:
            raise JobConflict(f"job {job_id} is {job.state} and cannot be {verb}")
        active = self._active.get(job_id)
        if active is not None:
            active.stop_as = target
            active.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(active.task)
            return await self.get(job_id)
        job = await self._finish(
            job_id, target, f"{verb} before it ran" if job.state is JobState.QUEUED else verb
        )
        return job

    async def _finish(self, job_id: str, state: JobState, message: str, error: str = "") -> Job:
        summary = await self._summary(job_id)
        finished_at = time.time() if state.finished else None
        job = await self._call(
            self.store.update_job,
            job_id,
            state=state,
            message=message,
            error=error,
            summary=summary,
            finished_at=finished_at,
        )
        await self._event(job_id, "error" if state is JobState.FAILED else "info", message)
        metrics.JOBS_FINISHED.labels(job.kind, state.value).inc()
        await self._publish_metrics()
        self._wake.set()
        return job

    async def _summary(self, job_id: str) -> dict[str, Any]:
        job = await self._call(self.store.get_job, job_id)
        errors = await self._call(self.store.errors_by_kind, job_id)
        return {
            **job.summary,
            "done": job.progress.done - job.progress.failed,
            "failed": job.progress.failed,
            "total": job.progress.total,
            "errors_by_kind": errors,
        }

    async def _publish_metrics(self) -> None:
        # One GROUP BY, not every job record read back: this runs on every submit and every end.
        counts = await self._call(self.store.counts_by_kind_and_state)
        for kind in self._kinds:
            for state in JobState:
                metrics.JOBS.labels(kind, state.value).set(counts.get((kind, state.value), 0))

    async def _schedule(self) -> None:
        while True:
            self._wake.clear()
            free = self.max_running_jobs - len(self._active)
            if free > 0:
                queued = await self._call(
                    self.store.list_jobs, states=(JobState.QUEUED,), kinds=(), page_size=500, page_token=""
                )
                for job in reversed(queued.jobs[-free:] if free < len(queued.jobs) else queued.jobs):
                    if job.id in self._active or len(self._active) >= self.max_running_jobs:
                        continue
                    task = asyncio.create_task(self._run(job), name=f"job-{job.id}")
                    self._active[job.id] = _Active(task)
                    task.add_done_callback(functools.partial(self._retire, job.id))
            await self._wake.wait()

    def _retire(self, job_id: str, _task: asyncio.Task[None]) -> None:
        self._active.pop(job_id, None)
        self._notify(job_id)
        self._wake.set()

    async def _run(self, job: Job) -> None:
        kind = self._kinds.get(job.kind)
        active = self._active[job.id]
        try:
            if kind is None:
                await self._finish(
                    job.id, JobState.FAILED, "failed", f"this server has no job kind {job.kind!r}"
                )
                return
            try:
                params = await asyncio.to_thread(kind.parse, job.params)
            except StashVisionError as error:
                await self._finish(job.id, JobState.FAILED, "failed", str(error))
                return
            resumed = job.started_at is not None
            await self._call(
                self.store.update_job,
                job.id,
                state=JobState.RUNNING,
                message="running",
                started_at=job.started_at or time.time(),
            )
            await self._event(job.id, "info", "resumed" if resumed else "started")
            await self._publish_metrics()
            stored = await self._call(self.store.get_job, job.id)
            active.rate.add(stored.progress.done)
            await JobExecution(self._tools, job, kind, params, self.items_in_flight, active.rate).run()
            await self._finish(job.id, JobState.SUCCEEDED, "succeeded")
        except asyncio.CancelledError:
            await self._call(self.store.release_running_items, job.id)
            if active.stop_as is None:
                raise  # the server is stopping: the job stays `running` and resumes at the next start
            verb = "cancelled" if active.stop_as is JobState.CANCELLED else "paused"
            await self._finish(job.id, active.stop_as, verb)
        except Exception as error:
            if isinstance(storage := unwrap_group(error), StorageUnavailable):
                await self._interrupt_for_storage(job.id, str(storage))
                return
            incident = uuid.uuid4().hex[:8]
            log.exception("job %s failed (incident %s)", job.id, incident)
            await self._call(self.store.release_running_items, job.id)
            message = f"internal error (incident {incident}; see the server log): {type(error).__name__}"
            await self._finish(job.id, JobState.FAILED, "failed", message)

    async def _interrupt_for_storage(self, job_id: str, reason: str) -> None:
        """jobs.db could not be written under a running job (a full disk, a lock held too long):
        the job waits as interrupted, naming the cause, and `resume` goes on once it is fixed; the
        items it finished are kept. When even that state cannot be written, this process shows
        it as interrupted (`_stalled`), and jobs.db still says `running`: a restart resumes it."""
        log.error("job %s interrupted: %s", job_id, reason)
        self._stalled[job_id] = reason
        with contextlib.suppress(StorageUnavailable):
            await self._call(self.store.release_running_items, job_id)
            await self._finish(job_id, JobState.INTERRUPTED, f"interrupted: {reason}", reason)
            self._stalled.pop(job_id, None)
