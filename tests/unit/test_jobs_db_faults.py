"""A jobs.db the server cannot use at start (locked by another process while the last run's jobs
are recovered, or garbage bytes) costs the jobs only, with the file named and left as it was; the
server itself starts (a crash here had the supervisor restart it in a loop)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from stash_vision.server.errors import StorageUnavailable
from stash_vision.server.jobs.lock import RunnerLock
from stash_vision.server.jobs.runner import JobRunner
from stash_vision.server.jobs.setup import UnavailableJobs, close_jobs, open_jobs
from stash_vision.server.jobs.store import JobStore
from stash_vision.settings import Settings


def refusal(settings: Settings) -> str:
    async def opened() -> str:
        jobs = await open_jobs(settings, [])
        assert isinstance(jobs, UnavailableJobs)
        with pytest.raises(StorageUnavailable) as refused:
            await jobs.submit("tag-library", {})
        await close_jobs(jobs)
        return str(refused.value)

    return asyncio.run(opened())


def test_a_jobs_db_locked_during_recovery_is_named_and_the_runner_lock_released(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    JobStore(settings.jobs_db).close()
    holder = sqlite3.connect(settings.jobs_db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        message = refusal(settings)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert f"jobs are unavailable: {settings.jobs_db} is locked by another process" in message
    lock = RunnerLock(tmp_path / "jobs.lock")
    lock.acquire()  # the refused runner did not keep it
    lock.release()

    async def reopened() -> None:
        jobs = await open_jobs(settings, [])
        assert isinstance(jobs, JobRunner)  # once the other process let go, a restart has its jobs
        await close_jobs(jobs)

    asyncio.run(reopened())


def test_a_jobs_db_of_garbage_is_named_and_never_reset(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    garbage = b"not SQLite at all " * 300
    settings.jobs_db.write_bytes(garbage)
    message = refusal(settings)
    assert f"{settings.jobs_db} is not a SQLite database: move it aside and restart" in message
    assert settings.jobs_db.read_bytes() == garbage
