"""What the fault tests under load (tests/integration/test_faults_kills.py) found, pinned down:
a domain error raised inside a TaskGroup reaches the caller as itself (UNAVAILABLE, not an
INTERNAL incident), and a waiter of the priority semaphore cancelled after a release already
dropped it from the queue does not raise ValueError."""

from __future__ import annotations

import asyncio

import pytest

from stash_vision.server.errors import BackendUnavailable, InvalidInput, unwrap_group
from stash_vision.server.priority import PrioritySemaphore


async def _fails(error: Exception) -> None:
    await asyncio.sleep(0)
    raise error


async def _group_of(*raised: Exception) -> BaseException:
    try:
        async with asyncio.TaskGroup() as group:
            for error in raised:
                group.create_task(_fails(error))
    except BaseExceptionGroup as caught:
        return caught
    raise AssertionError("the task group raised nothing")


def test_a_group_of_domain_errors_stands_for_its_first() -> None:
    unavailable = BackendUnavailable("Triton is not available for model m; retry shortly")
    group = asyncio.run(_group_of(unavailable, InvalidInput("bad")))
    assert unwrap_group(group) is unavailable
    nested = BaseExceptionGroup("outer", [BaseExceptionGroup("inner", [unavailable])])
    assert unwrap_group(nested) is unavailable


def test_a_group_with_a_bug_in_it_stays_a_group() -> None:
    group = asyncio.run(_group_of(BackendUnavailable("down"), ValueError("a bug")))
    assert unwrap_group(group) is group
    plain = ValueError("not a group")
    assert unwrap_group(plain) is plain


def test_a_waiter_cancelled_after_a_release_dropped_it_raises_only_the_cancellation() -> None:
    async def scenario() -> None:
        semaphore = PrioritySemaphore(1)
        await semaphore.acquire()
        waiting = asyncio.create_task(semaphore.acquire())
        await asyncio.sleep(0)  # queued
        waiting.cancel()  # its future is cancelled now; the task has not run its handler yet
        semaphore.release()  # _wake drops the cancelled waiter from the queue first
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not semaphore.locked()
        await asyncio.wait_for(semaphore.acquire(), 1)  # the slot is free for the next one

    asyncio.run(scenario())
