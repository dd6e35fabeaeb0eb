"""What a job kind provides: parameter validation, the items to work on (streamed), and the work
on one item. The runner owns everything else: persistence, concurrency, retries, progress,
cancel/pause/resume, and interactive calls' priority over the items (server/priority.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from stash_vision.server.errors import InvalidInput, StashVisionError

P = TypeVar("P")


@dataclass(frozen=True)
class ItemProblem:
    """An item that is known to fail before any work (an unreadable directory met while listing):
    recorded as a failed item, so it shows in the results and the error counts."""

    item: str
    error: str
    error_kind: str


_REPORTER: ContextVar[Callable[[str], None] | None] = ContextVar("stash_vision_job_reporter", default=None)


def report_progress(message: str) -> None:
    """What a long item is doing now (a face-index build: "stash-box:stashdb: 120 performers, 340
    images"); becomes the job's message, at most once a second. A no-op outside a job."""
    reporter = _REPORTER.get()
    if reporter is not None:
        reporter(message)


_JOB_ID: ContextVar[str] = ContextVar("stash_vision_job_id", default="")


def current_job_id() -> str:
    """The id of the job whose item is running ("" outside a job): what a kind records as the
    origin of what it made (a face-index version's build job)."""
    return _JOB_ID.get()


@contextlib.contextmanager
def reporting_to(reporter: Callable[[str], None], job_id: str = "") -> Iterator[None]:
    """The runner's side: inside the block, `report_progress` goes to `reporter` and
    `current_job_id` answers `job_id`."""
    tokens = (_REPORTER.set(reporter), _JOB_ID.set(job_id))
    try:
        yield
    finally:
        _REPORTER.reset(tokens[0])
        _JOB_ID.reset(tokens[1])


class ItemFailed(StashVisionError):
    """An item's failure reported by a flow as text, with the kind of the error it stood for."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind or "InvalidInput"


class PartlyDone(ItemFailed):
    """An item that failed after part of its work took effect (a Stash write went through, the
    next one did not): the item counts as failed, and `result` records the part that was done, so
    that what undoes a job's work (undo-sync-to-stash) still finds it."""

    def __init__(self, message: str, kind: str, result: dict[str, Any]) -> None:
        super().__init__(message, kind)
        self.result = result


def error_kind(error: StashVisionError) -> str:
    """How the job summary counts an error: the flow's own kind, else the error's class name."""
    return error.kind if isinstance(error, ItemFailed) else type(error).__name__


@dataclass(frozen=True)
class ItemOutcome:
    result: dict[str, Any] = field(default_factory=dict)
    result_key: str = ""  # the result store's key of the same answer, when there is one


class JobKind(Protocol, Generic[P]):
    name: str
    unit: str  # what progress counts: "files", "performers", ...

    def parse(self, params: Mapping[str, Any]) -> P:
        """Validated parameters; InvalidInput (or MediaNotFound/AccessDenied for roots) naming
        what is wrong. Runs at submit time and again when the job (re)starts."""
        ...

    def items(self, params: P) -> Iterator[str | ItemProblem]:
        """The items, in a stable order (a resumed job lists again and skips what it has). Blocking:
        the runner advances it in a worker thread, a batch at a time."""
        ...

    async def run(self, params: P, item: str) -> ItemOutcome:
        """The work on one item. A StashVisionError fails the item (its class name is the error
        kind); BackendUnavailable and DeadlineExceeded are retried by the runner."""
        ...


def check_keys(params: Mapping[str, Any], allowed: AbstractSet[str], kind: str) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) of a {kind} job: {', '.join(unknown)} (known: {', '.join(sorted(allowed))})"
        )


def string_list(params: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = params.get(key, [])
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"{key} must be a list of strings, got {value!r}")
    return tuple(value)


def boolean(params: Mapping[str, Any], key: str, default: bool) -> bool:
    value = params.get(key, default)
    if not isinstance(value, bool):
        raise InvalidInput(f"{key} must be true or false, got {value!r}")
    return value


def number(
    params: Mapping[str, Any], key: str, default: float | None, *, minimum: float | None = None
) -> float | None:
    value = params.get(key, default)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInput(f"{key} must be a number, got {value!r}")
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{key} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise InvalidInput(f"{key} must be at least {minimum}, got {value!r}")
    return float(value)
