"""The job runner with a real SQLite job store and a scripted job kind: items committed one by one,
bad items counted, Triton outages retried, cancel within 2 s, pause/resume, resume after a stop
(nothing lost, nothing committed run twice), interrupted when auto-resume is off, one runner per data
directory, and items running as background work.

Each test runs inside asyncio.run (no pytest-asyncio)."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from stash_vision.server.errors import (
    BackendUnavailable,
    InvalidInput,
    JobConflict,
    JobsUnavailable,
    MediaNotFound,
)
from stash_vision.server.jobs import execution as runner_module
from stash_vision.server.jobs.kinds.base import ItemOutcome, ItemProblem, check_keys
from stash_vision.server.jobs.model import Job, JobState
from stash_vision.server.jobs.runner import JobRunner
from stash_vision.server.jobs.store import JobStore
from stash_vision.server.priority import is_background

TIMEOUT_S = 30.0


class Scripted:
    """Items `item-000`…; `bad` items raise MediaNotFound, `flaky` ones are unavailable twice, and
    every item waits for `gate` when one is set. Counts runs per item."""

    name = "scripted"
    unit = "things"

    def __init__(self) -> None:
        self.runs: collections.Counter[str] = collections.Counter()
        self.gate: asyncio.Event | None = None
        self.flaky_left: collections.Counter[str] = collections.Counter()
        self.background_seen: list[bool] = []
        self.started = asyncio.Event()

    def parse(self, params: Mapping[str, Any]) -> dict[str, Any]:
        check_keys(params, {"count", "bad", "flaky", "problem"}, self.name)
        if not isinstance(params.get("count", 0), int):
            raise InvalidInput("count must be an integer")
        return dict(params)

    def items(self, params: dict[str, Any]) -> Iterator[str | ItemProblem]:
        for i in range(params.get("count", 0)):
            yield f"item-{i:03d}"
        if params.get("problem"):
            yield ItemProblem("/unreadable", "permission denied", "ListingProblem")

    async def run(self, params: dict[str, Any], item: str) -> ItemOutcome:
        self.runs[item] += 1
        self.background_seen.append(is_background())
        self.started.set()
        if item in params.get("flaky", []) and self.flaky_left[item] < 2:
            self.flaky_left[item] += 1
            raise BackendUnavailable("Triton is restarting")
        if self.gate is not None:
            await self.gate.wait()
        if item in params.get("bad", []):
            raise MediaNotFound(f"file not found: {item}")
        return ItemOutcome({"item": item, "length": len(item)})


@pytest.fixture(autouse=True)
def fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module, "_RETRY_DELAYS_S", (0.01,))


def _runner(tmp_path: Path, kind: Scripted, **kwargs: Any) -> JobRunner:
    return JobRunner(JobStore(tmp_path / "jobs.db"), [kind], tmp_path / "jobs.lock", **kwargs)


async def _until(runner: JobRunner, job_id: str, *states: JobState) -> Job:
    async def poll() -> Job:
        while True:
            job = await runner.get(job_id)
            if job.state in states:
                return job
            await asyncio.sleep(0.02)

    return await asyncio.wait_for(poll(), TIMEOUT_S)


async def _all_results(runner: JobRunner, job_id: str) -> list[Any]:
    items, token = [], ""
    while True:
        page = await runner.results(job_id, page_size=7, page_token=token)
        items.extend(page.items)
        token = page.next_page_token
        if not token:
            return items


def test_a_job_runs_every_item_once_and_counts_errors_by_kind(tmp_path: Path) -> None:
    async def scenario() -> None:
        kind = Scripted()
        runner = _runner(tmp_path, kind)
        await runner.start()
        job = await runner.submit("scripted", {"count": 20, "bad": ["item-003", "item-007"], "problem": True})
        assert job.state is JobState.QUEUED and job.progress.unit == "things"
        done = await _until(runner, job.id, JobState.SUCCEEDED, JobState.FAILED)
        assert done.state is JobState.SUCCEEDED, done.error
        assert done.progress.total == 21 and done.progress.done == 21 and done.progress.failed == 3
        assert done.summary["errors_by_kind"] == {"MediaNotFound": 2, "ListingProblem": 1}
        assert done.finished_at is not None and done.started_at is not None
        results = await _all_results(runner, job.id)
        assert [r.item for r in results][:20] == [f"item-{i:03d}" for i in range(20)]
        assert set(kind.runs.values()) == {1}
        assert next(r for r in results if r.item == "item-003").error_kind == "MediaNotFound"
        assert next(r for r in results if r.item == "item-004").result == {"item": "item-004", "length": 8}
        assert all(kind.background_seen), "job items run as background work"
        await runner.stop()

    asyncio.run(scenario())


def test_triton_unavailable_is_retried_not_failed(tmp_path: Path) -> None:
    async def scenario() -> None:
        kind = Scripted()
        runner = _runner(tmp_path, kind)
        await runner.start()
        job = await runner.submit("scripted", {"count": 3, "flaky": ["item-001"]})
        done = await _until(runner, job.id, JobState.SUCCEEDED, JobState.FAILED)
        assert done.progress.failed == 0 and kind.runs["item-001"] == 3
        events = await asyncio.to_thread(runner.store.events, job.id)
        assert any("retrying" in e.message for e in events)
        await runner.stop()

    asyncio.run(scenario())


def test_cancel_stops_within_two_seconds_and_keeps_what_was_done(tmp_path: Path) -> None:
    async def scenario() -> None:
        kind = Scripted()
        runner = _runner(tmp_path, kind, items_in_flight=2)
        await runner.start()
        job = await runner.submit("scripted", {"count": 50})
        await _until_done_at_least(runner, job.id, 5)
        kind.gate = asyncio.Event()  # from now on items hang until cancelled
        loop = asyncio.get_running_loop()
        started = loop.time()
        cancelled = await runner.cancel(job.id)
        assert loop.time() - started < 2.0
        assert cancelled.state is JobState.CANCELLED
        kept = await _all_results(runner, job.id)
        assert len(kept) == cancelled.progress.done >= 5
        with pytest.raises(JobConflict):
            await runner.cancel(job.id)
        with pytest.raises(JobConflict):
            await runner.resume(job.id)
        await runner.stop()

    asyncio.run(scenario())


async def _until_done_at_least(runner: JobRunner, job_id: str, count: int) -> None:
    async def poll() -> None:
        while (await runner.get(job_id)).progress.done < count:
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), TIMEOUT_S)


def test_pause_then_resume_finishes_without_running_a_committed_item_again(tmp_path: Path) -> None:
    async def scenario() -> None:
        kind = Scripted()
        runner = _runner(tmp_path, kind, items_in_flight=2)
        await runner.start()
        job = await runner.submit("scripted", {"count": 40})
        await _until_done_at_least(runner, job.id, 3)
        kind.gate = asyncio.Event()
        paused = await runner.pause(job.id)
        assert paused.state is JobState.PAUSED
        committed = {r.item for r in await _all_results(runner, job.id)}
        kind.gate = None
        resumed = await runner.resume(job.id)
        assert resumed.state is JobState.QUEUED
        done = await _until(runner, job.id, JobState.SUCCEEDED)
        assert done.progress.done == 40
        assert all(kind.runs[item] == 1 for item in committed)
        assert len(await _all_results(runner, job.id)) == 40
        await runner.stop()

    asyncio.run(scenario())


def test_a_stopped_server_resumes_its_job_at_the_next_start(tmp_path: Path) -> None:
    async def scenario() -> None:
        kind = Scripted()
        first = _runner(tmp_path, kind, items_in_flight=3)
        await first.start()
        job = await first.submit("scripted", {"count": 60})
        await _until_done_at_least(first, job.id, 10)
        kind.gate = asyncio.Event()
        await first.stop()  # as `serve` does on SIGTERM: in-flight items are abandoned uncommitted
        first.store.close()
        committed = {r.item for r in await asyncio.to_thread(_results_of, tmp_path, job.id)}

        kind.gate = None
        second = _runner(tmp_path, kind, items_in_flight=3)
        await second.start()
        done = await _until(second, job.id, JobState.SUCCEEDED)
        results = await _all_results(second, job.id)
        assert [r.item for r in results] == [f"item-{i:03d}" for i in range(60)], "every item exactly once"
        assert all(kind.runs[item] == 1 for item in committed), "no committed item ran again"
        assert done.progress.done == 60
        events = [e.message for e in await asyncio.to_thread(second.store.events, job.id)]
        assert any("server stopped" in m for m in events)
        await second.stop()

    asyncio.run(scenario())


def _results_of(tmp_path: Path, job_id: str) -> list[Any]:
    store = JobStore(tmp_path / "jobs.db")
    try:
        return store.results(job_id, page_size=500).items
    finally:
        store.close()


def test_without_auto_resume_a_stopped_job_waits_as_interrupted(tmp_path: Path) -> None:
    async def scenario() -> None:
        kind = Scripted()
        first = _runner(tmp_path, kind)
        await first.start()
        job = await first.submit("scripted", {"count": 30})
        await _until_done_at_least(first, job.id, 2)
        kind.gate = asyncio.Event()
        await first.stop()
        first.store.close()
        kind.gate = None
        second = _runner(tmp_path, kind, auto_resume=False)
        await second.start()
        interrupted = await second.get(job.id)
        assert interrupted.state is JobState.INTERRUPTED and "resume" in interrupted.message
        await second.resume(job.id)
        assert (await _until(second, job.id, JobState.SUCCEEDED)).progress.done == 30
        await second.stop()

    asyncio.run(scenario())


def test_one_runner_per_data_directory(tmp_path: Path) -> None:
    async def scenario() -> None:
        holder = _runner(tmp_path, Scripted())
        await holder.start()
        other = _runner(tmp_path, Scripted())
        await other.start()
        with pytest.raises(JobsUnavailable, match=r"run by process \d+"):
            await other.submit("scripted", {"count": 1})
        job = await holder.submit("scripted", {"count": 1})
        assert (await other.get(job.id)).id == job.id, "the second server still answers reads"
        await other.stop()
        await holder.stop()

    asyncio.run(scenario())


def test_bad_submissions_are_clear_errors(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = _runner(tmp_path, Scripted())
        await runner.start()
        with pytest.raises(InvalidInput, match=r"unknown job kind .tag-everything.*scripted"):
            await runner.submit("tag-everything", {})
        with pytest.raises(InvalidInput, match=r"unknown parameter.*colour"):
            await runner.submit("scripted", {"colour": "red"})
        with pytest.raises(InvalidInput, match="count must be an integer"):
            await runner.submit("scripted", {"count": "many"})
        assert (await runner.list()).jobs == []
        await runner.stop()

    asyncio.run(scenario())


def test_watch_follows_a_job_to_its_end(tmp_path: Path) -> None:
    async def scenario() -> None:
        runner = _runner(tmp_path, Scripted())
        await runner.start()
        job = await runner.submit("scripted", {"count": 30})
        updates = [u async for u in runner.watch(job.id)]
        assert updates[-1].job.state is JobState.SUCCEEDED
        messages = [e.message for u in updates for e in u.events]
        assert messages[0] == "queued scripted" and "succeeded" in messages
        assert len(messages) == len(set(e.seq for u in updates for e in u.events)), "no event twice"
        await runner.stop()

    asyncio.run(asyncio.wait_for(scenario(), TIMEOUT_S))


def test_a_long_item_reports_its_progress_as_the_jobs_message(tmp_path: Path) -> None:
    from stash_vision.server.jobs.kinds.base import current_job_id, report_progress

    seen_ids: list[str] = []

    class Reporting(Scripted):
        async def run(self, params: dict[str, Any], item: str) -> ItemOutcome:
            seen_ids.append(current_job_id())
            report_progress(f"{item}: halfway")
            assert self.gate is not None
            await self.gate.wait()
            return ItemOutcome({"item": item})

    async def scenario() -> None:
        kind = Reporting()
        kind.gate = asyncio.Event()
        runner = _runner(tmp_path, kind)
        await runner.start()
        job = await runner.submit("scripted", {"count": 1})

        async def message() -> str:
            while (current := (await runner.get(job.id)).message) != "item-000: halfway":
                await asyncio.sleep(0.02)
            return current

        assert await asyncio.wait_for(message(), TIMEOUT_S) == "item-000: halfway"
        kind.gate.set()
        done = await _until(runner, job.id, JobState.SUCCEEDED)
        assert done.message == "succeeded"
        assert seen_ids == [job.id], "a kind knows the job it works for"
        assert current_job_id() == ""
        report_progress("outside a job: nothing happens")
        await runner.stop()

    asyncio.run(scenario())


def test_the_jobs_gauge_counts_jobs_by_kind_and_state(tmp_path: Path) -> None:
    from prometheus_client import REGISTRY

    async def scenario() -> None:
        runner = _runner(tmp_path, Scripted())
        await runner.start()
        job = await runner.submit("scripted", {"count": 2})
        await _until(runner, job.id, JobState.SUCCEEDED)
        await runner.submit("scripted", {"count": 1})
        await _until(runner, (await runner.list()).jobs[0].id, JobState.SUCCEEDED)
        await runner.stop()

    asyncio.run(scenario())
    gauge = REGISTRY.get_sample_value("stash_vision_jobs", {"kind": "scripted", "state": "succeeded"})
    assert gauge == 2
    assert REGISTRY.get_sample_value("stash_vision_jobs", {"kind": "scripted", "state": "queued"}) == 0
