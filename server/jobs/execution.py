"""One run of one job: lists its items (unless a previous run finished listing), works on up to
`items_in_flight` of them at once, and commits each on its own.

- Listing streams: the kind's generator is advanced in a worker thread a batch at a time, and each
  batch goes into the job store before the next is read, so a 100,000-file tree is never held.
- An item runs inside `priority.background()`, so Triton and the server's admission slots serve
  interactive calls first.
- A bad item (corrupt, vanished, refused) records its error and the job goes on; Triton being
  unavailable (a restart) is not the item's fault: the item waits with back-off and is retried;
  an unexpected exception fails the item with an incident number in the log.
- Cancelling the run (cancel, pause, server stop) cancels the in-flight items; the runner puts
  their records back to `pending`."""

from __future__ import annotations

import asyncio
import collections
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from stash_vision.server import metrics
from stash_vision.server.errors import BackendUnavailable, DeadlineExceeded, StashVisionError, unwrap_group
from stash_vision.server.priority import background

from .kinds.base import ItemProblem, JobKind, PartlyDone, error_kind, reporting_to
from .model import ItemRecord, Job
from .store import JobStore

log = logging.getLogger("stash_vision.server.jobs")

T = TypeVar("T")

_LIST_BATCH = 500
_RATE_WINDOW_S = 60.0
_RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
_REPORT_EVERY_S = 1.0


@dataclass(frozen=True)
class RunnerTools:
    """What a run needs from its runner: the store (called on the runner's database thread), the
    job's event log and watchers, and the listing threads."""

    store: JobStore
    call: Callable[..., Awaitable[Any]]
    event: Callable[[str, str, str], Awaitable[None]]
    notify: Callable[[str], None]
    listing: ThreadPoolExecutor


class RateWindow:
    """Items done over the last minute: the job's rate and ETA."""

    def __init__(self) -> None:
        self._samples: collections.deque[tuple[float, int]] = collections.deque(maxlen=240)

    def add(self, done: int) -> None:
        now = time.monotonic()
        self._samples.append((now, done))
        while len(self._samples) > 2 and self._samples[0][0] < now - _RATE_WINDOW_S:
            self._samples.popleft()

    def rate(self) -> float | None:
        if len(self._samples) < 2:
            return None
        (t0, d0), (t1, d1) = self._samples[0], self._samples[-1]
        return (d1 - d0) / (t1 - t0) if t1 > t0 else 0.0


class JobExecution:
    def __init__(
        self,
        tools: RunnerTools,
        job: Job,
        kind: JobKind[Any],
        params: Any,
        items_in_flight: int,
        rate: RateWindow,
    ) -> None:
        self.tools = tools
        self.job = job
        self.kind = kind
        self.params = params
        self.items_in_flight = items_in_flight
        self.rate = rate

    async def run(self) -> None:
        job = self.job
        listed = asyncio.Event()
        more = asyncio.Event()
        stored = await self.tools.call(self.tools.store.get_job, job.id)
        if stored.progress.listing_complete:
            listed.set()
        async with asyncio.TaskGroup() as group:
            if not listed.is_set():
                group.create_task(self._list(listed, more))
            in_flight: set[asyncio.Task[None]] = set()
            while True:
                # Cleared before claiming, so a batch listed after the claim still wakes us; and
                # read before claiming: when listing was complete before the claim, a claim that
                # finds nothing means nothing is left.
                more.clear()
                listing_done = listed.is_set()
                free = self.items_in_flight - len(in_flight)
                claimed = (
                    await self.tools.call(self.tools.store.claim_items, job.id, free) if free > 0 else []
                )
                for record in claimed:
                    task = group.create_task(self._item(record))
                    in_flight.add(task)
                    task.add_done_callback(in_flight.discard)
                if not claimed and not in_flight and listing_done:
                    break
                waits: set[asyncio.Future[Any]] = set(in_flight)
                if not listing_done:
                    waits.add(asyncio.ensure_future(more.wait()))
                if waits:
                    _, pending = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
                    for future in pending - in_flight:
                        future.cancel()

    async def _list(self, listed: asyncio.Event, more: asyncio.Event) -> None:
        job_id, kind, params = self.job.id, self.kind, self.params
        loop = asyncio.get_running_loop()
        items: Iterator[str | ItemProblem] = await loop.run_in_executor(
            self.tools.listing, kind.items, params
        )
        try:
            while True:
                batch = await loop.run_in_executor(self.tools.listing, _take, items, _LIST_BATCH)
                if not batch:
                    break
                await self.tools.call(
                    self.tools.store.add_items, job_id, [e for e in batch if isinstance(e, str)]
                )
                for problem in (entry for entry in batch if isinstance(entry, ItemProblem)):
                    await self._fail_listed(job_id, problem)
                more.set()
                self.tools.notify(job_id)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                await loop.run_in_executor(self.tools.listing, close)
        await self.tools.call(self.tools.store.set_listing_complete, job_id)
        await self.tools.event(job_id, "info", "listing complete")
        listed.set()
        more.set()

    async def _fail_listed(self, job_id: str, problem: ItemProblem) -> None:
        await self.tools.call(
            self.tools.store.add_failed_item, job_id, problem.item, problem.error, problem.error_kind
        )

    def _reporter(self) -> Callable[[str], None]:
        """Turns an item's `report_progress` into the job's message, at most once a second, without
        making the item wait for the database."""
        last = [0.0]

        def report(message: str) -> None:
            now = time.monotonic()
            if now - last[0] < _REPORT_EVERY_S:
                return
            last[0] = now
            task: asyncio.Future[Any] = asyncio.ensure_future(
                self.tools.call(self.tools.store.update_job, self.job.id, message=message)
            )
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self.tools.notify(self.job.id)

        return report

    async def _item(self, record: ItemRecord) -> None:
        job, kind, params = self.job, self.kind, self.params
        started = time.perf_counter()
        outcome_label = "done"
        for attempt in itertools.count():
            try:
                with background(), reporting_to(self._reporter(), job.id):
                    try:
                        outcome = await kind.run(params, record.item)
                    except BaseExceptionGroup as group:  # a kind's TaskGroup: see unwrap_group
                        raise unwrap_group(group) from None
            except (BackendUnavailable, DeadlineExceeded) as error:
                delay = _RETRY_DELAYS_S[min(attempt, len(_RETRY_DELAYS_S) - 1)]
                if attempt == 0:
                    await self.tools.event(job.id, "warning", f"{record.item}: {error}; retrying")
                await asyncio.sleep(delay)
                continue
            except StashVisionError as error:
                outcome_label = "failed"
                await self.tools.call(
                    self.tools.store.finish_item,
                    job.id,
                    record.seq,
                    error=str(error),
                    error_kind=error_kind(error),
                    result=error.result if isinstance(error, PartlyDone) else None,
                )
            except Exception as error:
                incident = uuid.uuid4().hex[:8]
                log.exception("job %s item %s failed (incident %s)", job.id, record.item, incident)
                outcome_label = "failed"
                await self.tools.call(
                    self.tools.store.finish_item,
                    job.id,
                    record.seq,
                    error=f"internal error (incident {incident}; see the server log): {type(error).__name__}",
                    error_kind="InternalError",
                )
            else:
                await self.tools.call(
                    self.tools.store.finish_item,
                    job.id,
                    record.seq,
                    result=outcome.result,
                    result_key=outcome.result_key,
                )
            break
        metrics.JOB_ITEMS.labels(job.kind, outcome_label).inc()
        metrics.JOB_ITEM_SECONDS.labels(job.kind).observe(time.perf_counter() - started)
        stored = await self.tools.call(self.tools.store.get_job, job.id)
        self.rate.add(stored.progress.done)
        self.tools.notify(job.id)


def _take(items: Iterator[T], count: int) -> list[T]:
    return list(itertools.islice(items, count))
