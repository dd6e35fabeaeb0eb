"""An in-memory `Jobs` (server/jobs/api.py) for the transport tests, and a real grpc.aio server
running JobServicer over it on a free loopback port.

The fake follows the protocol's documented rules (newest first, offset page tokens, the state
transitions of cancel / pause / resume, a watch that ends at finished, paused or interrupted) and
records what reached it, so a test can check what a transport sent as well as what it shows."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import grpc

from stash_vision.server.api.job_servicer import add_to_server
from stash_vision.server.errors import InvalidInput, JobConflict, JobNotFound, StashVisionError
from stash_vision.server.jobs.api import JobPage, JobUpdate, ResultPage
from stash_vision.server.jobs.model import ItemRecord, Job, JobEvent, JobState, Progress

KINDS = ["build-face-index", "identify-library", "tag-library"]
_WATCH_ENDS = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})
_WATCH_ENDS |= {JobState.PAUSED, JobState.INTERRUPTED}


@dataclass(frozen=True)
class Step:
    """A scripted change a watch plays after its first update: new job fields and events, or an
    error the watch raises."""

    changes: dict[str, Any]
    events: tuple[str, ...] = ()
    error: StashVisionError | None = None


class FakeJobs:
    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.events: dict[str, list[JobEvent]] = {}
        self.items: dict[str, list[ItemRecord]] = {}
        self.calls: list[tuple[str, Any]] = []
        # Raised by the next call of any method (JobsUnavailable, StorageUnavailable, RuntimeError).
        self.fail_with: BaseException | None = None
        self.scripts: dict[str, list[Step]] = {}
        self.subscribers: dict[str, list[asyncio.Queue[Step]]] = {}
        self.watch_started = asyncio.Event()
        self.watch_closed = asyncio.Event()
        self._ids = itertools.count(1)
        self._clock = itertools.count(1)

    # -------------------------------------------------------------------------------- test helpers

    def add(self, kind: str = "tag-library", state: JobState = JobState.QUEUED, **fields: Any) -> Job:
        job = Job(
            id=f"job-{next(self._ids)}",
            kind=kind,
            params=fields.pop("params", {"roots": ["/media"]}),
            state=state,
            created_at=1_700_000_000.0 + next(self._clock),
            **fields,
        )
        self.jobs[job.id] = job
        self.events[job.id] = []
        self.items[job.id] = []
        return job

    def log(self, job_id: str, message: str, level: str = "info") -> JobEvent:
        events = self.events[job_id]
        event = JobEvent(job_id, len(events) + 1, 1_700_000_100.0 + len(events), level, message)
        events.append(event)
        return event

    def push(self, job_id: str, step: Step) -> None:
        """Applies a change now and sends it to every open watch of the job."""
        for queue in self.subscribers.get(job_id, []):
            queue.put_nowait(step)

    def _apply(self, job_id: str, step: Step) -> JobUpdate:
        self.jobs[job_id] = replace(self.jobs[job_id], **step.changes)
        return JobUpdate(self.jobs[job_id], [self.log(job_id, message) for message in step.events])

    def _job(self, job_id: str) -> Job:
        if job_id not in self.jobs:
            raise JobNotFound(f"no job {job_id!r}")
        return self.jobs[job_id]

    def _enter(self, method: str, *args: Any) -> None:
        self.calls.append((method, args))
        if self.fail_with is not None:
            raise self.fail_with

    def _move(self, job_id: str, allowed: Sequence[JobState], to: JobState, action: str) -> Job:
        job = self._job(job_id)
        if job.state not in allowed:
            raise JobConflict(f"cannot {action} job {job_id}: it is {job.state}")
        self.push(job_id, Step({"state": to}))
        self.jobs[job_id] = replace(job, state=to)
        return self.jobs[job_id]

    # -------------------------------------------------------------------------------- the protocol

    async def submit(self, kind: str, params: dict[str, Any]) -> Job:
        self._enter("submit", kind, params)
        if kind not in KINDS:
            raise InvalidInput(f"unknown job kind {kind!r} (one of {', '.join(KINDS)})")
        return self.add(kind, params=params)

    async def get(self, job_id: str) -> Job:
        self._enter("get", job_id)
        return self._job(job_id)

    async def list(
        self,
        *,
        states: Sequence[JobState] = (),
        kinds: Sequence[str] = (),
        page_size: int = 50,
        page_token: str = "",
    ) -> JobPage:
        self._enter("list", list(states), list(kinds), page_size, page_token)
        if not 1 <= page_size <= 500:
            raise InvalidInput("page_size must be 1..500")
        if page_token and not page_token.isdigit():
            raise InvalidInput(f"bad page token {page_token!r}")
        start = int(page_token or 0)
        jobs = sorted(self.jobs.values(), key=lambda j: -j.created_at)
        jobs = [j for j in jobs if (not states or j.state in states) and (not kinds or j.kind in kinds)]
        more = start + page_size < len(jobs)
        return JobPage(jobs[start : start + page_size], str(start + page_size) if more else "")

    async def cancel(self, job_id: str) -> Job:
        self._enter("cancel", job_id)
        allowed = [s for s in JobState if not s.finished]
        return self._move(job_id, allowed, JobState.CANCELLED, "cancel")

    async def pause(self, job_id: str) -> Job:
        self._enter("pause", job_id)
        return self._move(job_id, [JobState.QUEUED, JobState.RUNNING], JobState.PAUSED, "pause")

    async def resume(self, job_id: str) -> Job:
        self._enter("resume", job_id)
        return self._move(job_id, [JobState.PAUSED, JobState.INTERRUPTED], JobState.QUEUED, "resume")

    async def watch(self, job_id: str) -> AsyncIterator[JobUpdate]:
        self._enter("watch", job_id)
        self._job(job_id)
        queue: asyncio.Queue[Step] = asyncio.Queue()
        for step in self.scripts.pop(job_id, []):
            queue.put_nowait(step)
        self.subscribers.setdefault(job_id, []).append(queue)
        self.watch_started.set()
        try:
            update = JobUpdate(self.jobs[job_id], list(self.events[job_id]))
            while True:
                yield update
                if update.job.state in _WATCH_ENDS:
                    return
                step = await queue.get()
                if step.error is not None:
                    raise step.error
                update = self._apply(job_id, step)
        finally:
            self.subscribers[job_id].remove(queue)
            self.watch_closed.set()

    async def results(self, job_id: str, *, page_size: int = 100, page_token: str = "") -> ResultPage:
        self._enter("results", job_id, page_size, page_token)
        self._job(job_id)
        start = int(page_token or 0)
        items = self.items[job_id]
        more = start + page_size < len(items)
        return ResultPage(items[start : start + page_size], str(start + page_size) if more else "")

    def kinds(self) -> list[str]:
        return list(KINDS)


def progress(done: int, total: int, **fields: Any) -> Progress:
    return Progress(done=done, total=total, unit="files", **fields)


def full_job(fake: FakeJobs) -> str:
    """A finished job with every optional field set."""
    return fake.add(
        "identify-library",
        JobState.SUCCEEDED,
        params={"roots": ["/media"], "batch": 8, "ratio": 0.5, "nested": {"list": [1, True, None]}},
        started_at=1_700_000_010.5,
        finished_at=1_700_000_070.25,
        updated_at=1_700_000_070.25,
        progress=progress(10, 10, failed=2, listing_complete=True, rate=1.5, eta_seconds=0.0),
        message="done",
        summary={"errors_by_kind": {"MediaNotFound": 2}, "faces": 31},
    ).id


class MetadataRecorder(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Keeps each call's x-api-key (None when absent)."""

    def __init__(self) -> None:
        self.api_keys: list[str | None] = []

    async def intercept_service(
        self, continuation: Callable[[Any], Awaitable[Any]], details: grpc.HandlerCallDetails
    ) -> Any:
        self.api_keys.append(dict(details.invocation_metadata or ()).get("x-api-key"))
        return await continuation(details)


@asynccontextmanager
async def job_server(jobs: FakeJobs, recorder: MetadataRecorder | None = None) -> AsyncIterator[int]:
    """JobServicer(jobs) on a free loopback port; yields the port."""
    server = grpc.aio.server(interceptors=[recorder] if recorder else None)
    add_to_server(server, jobs)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)
