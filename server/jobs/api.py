"""What the transports (gRPC JobService, the adapter through it, the CLI through gRPC) may ask of
the job system. `JobRunner` implements it; transport tests substitute a fake."""

from __future__ import annotations

import builtins
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from .model import ItemRecord, Job, JobEvent, JobState


@dataclass(frozen=True)
class JobPage:
    jobs: list[Job]
    next_page_token: str = ""  # empty: no more


@dataclass(frozen=True)
class ResultPage:
    items: list[ItemRecord]
    next_page_token: str = ""


@dataclass(frozen=True)
class JobUpdate:
    """One message of a watch: the job as it is now, and the events since the previous update.
    The last update of a watch carries a finished state (or `paused` / `interrupted`, after which the
    watch also ends)."""

    job: Job
    events: list[JobEvent] = field(default_factory=list)


class Jobs(Protocol):
    async def submit(self, kind: str, params: dict[str, Any]) -> Job:
        """Validates `params` for `kind` and queues the job. InvalidInput (unknown kind or
        parameter, a root that does not exist / is a file / lies outside the library roots),
        JobsUnavailable (another process runs this data directory's jobs), StorageUnavailable."""
        ...

    async def get(self, job_id: str) -> Job:
        """JobNotFound when there is no such job."""
        ...

    async def list(
        self,
        *,
        states: Sequence[JobState] = (),
        kinds: Sequence[str] = (),
        page_size: int = 50,
        page_token: str = "",
    ) -> JobPage:
        """Newest first. InvalidInput for a bad page token or page size (1..500)."""
        ...

    async def cancel(self, job_id: str) -> Job:
        """Stops within 2 s and keeps what was done. A finished job: JobConflict."""
        ...

    async def pause(self, job_id: str) -> Job:
        """Queued or running → paused (in-flight items are abandoned uncommitted and re-run on
        resume). Otherwise JobConflict."""
        ...

    async def resume(self, job_id: str) -> Job:
        """Paused or interrupted → queued. Otherwise JobConflict."""
        ...

    def watch(self, job_id: str) -> AsyncIterator[JobUpdate]:
        """The current state at once, then an update on every change (progress at most a few per
        second), until the job is finished, paused or interrupted. JobNotFound first if unknown."""
        ...

    async def results(self, job_id: str, *, page_size: int = 100, page_token: str = "") -> ResultPage:
        """Finished items (done and failed) in listing order."""
        ...

    def kinds(self) -> builtins.list[str]:
        """The job kinds this server runs, e.g. ["build-face-index", "identify-library", "tag-library"]."""
        ...
