"""The job system's vocabulary: states, a job's record and progress, an item's record, an event.

Plain data shared by the store (SQLite), the runner, the job kinds and the transports; nothing
here does I/O."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any


class JobState(enum.StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    PAUSED = "paused"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    # The process running it stopped (crash, restart) and auto-resume is off: `resume` re-queues it.
    INTERRUPTED = "interrupted"

    @property
    def finished(self) -> bool:
        return self in _FINISHED


_FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED})


class ItemState(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class Progress:
    done: int = 0  # items finished, failed ones included
    failed: int = 0
    total: int = 0  # grows while the job is still listing its items
    unit: str = "items"
    listing_complete: bool = False
    rate: float = 0.0  # items per second over the recent window
    eta_seconds: float | None = None  # None while unknown (still listing, or no rate yet)


@dataclass(frozen=True)
class Job:
    id: str
    kind: str
    params: dict[str, Any]
    state: JobState
    created_at: float  # Unix seconds
    started_at: float | None = None
    finished_at: float | None = None
    updated_at: float = 0.0
    progress: Progress = field(default_factory=Progress)
    message: str = ""
    error: str = ""
    # Kind-specific summary: counts, errors by kind ({"errors_by_kind": {"MediaNotFound": 2}}), ...
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ItemRecord:
    job_id: str
    seq: int  # order of listing, 1-based; results page by it
    item: str  # what the kind works on: a server-side path for the library kinds
    state: ItemState
    error: str = ""
    error_kind: str = ""  # the error's class name, e.g. "MediaNotFound", for the summary
    result: dict[str, Any] | None = None  # what the item produced (kept with the job)
    result_key: str = ""  # the result store's key of the same answer, when the kind stores one
    finished_at: float | None = None


@dataclass(frozen=True)
class JobEvent:
    job_id: str
    seq: int  # per job, increasing
    at: float
    level: str  # "info", "warning", "error"
    message: str
