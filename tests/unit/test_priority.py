"""Interactive calls ahead of background work: the admission semaphore and Triton's priority levels."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stash_vision.catalog.entries import Catalog
from stash_vision.embedded.runtime_repository import RepositoryMode, assemble
from stash_vision.server.priority import (
    BACKGROUND_PRIORITY,
    INTERACTIVE_PRIORITY,
    PrioritySemaphore,
    background,
    is_background,
    triton_priority,
)


def test_background_flag_is_inherited_by_tasks_and_reset_after() -> None:
    async def scenario() -> tuple[bool, bool, int]:
        with background():
            inner = await asyncio.create_task(_flag())
            priority = triton_priority()
        return inner, is_background(), priority

    async def _flag() -> bool:
        return is_background()

    inner, after, priority = asyncio.run(scenario())
    assert inner is True and after is False
    assert priority == BACKGROUND_PRIORITY
    assert triton_priority() == INTERACTIVE_PRIORITY


def test_freed_slot_goes_to_the_interactive_waiter_first() -> None:
    async def scenario() -> list[str]:
        gate = PrioritySemaphore(1)
        order: list[str] = []
        await gate.acquire()  # interactive holder

        async def wait(name: str, is_job: bool) -> None:
            if is_job:
                with background():
                    await gate.acquire()
                    order.append(name)
                    gate.release()
            else:
                await gate.acquire()
                order.append(name)
                gate.release()

        job = asyncio.create_task(wait("job", True))
        await asyncio.sleep(0)  # the job waits first
        user = asyncio.create_task(wait("user", False))
        await asyncio.sleep(0)
        gate.release()
        await asyncio.gather(job, user)
        return order

    assert asyncio.run(scenario()) == ["user", "job"]


def test_background_holds_at_most_its_limit_and_leaves_slots_for_interactive() -> None:
    async def scenario() -> tuple[int, bool]:
        gate = PrioritySemaphore(4)  # background limit: 3
        held = 0
        with background():
            for _ in range(3):
                await gate.acquire()
                held += 1
            fourth = asyncio.create_task(gate.acquire())
            await asyncio.sleep(0.01)
            blocked = not fourth.done()
        await asyncio.wait_for(gate.acquire(), 1.0)  # interactive still gets the last slot
        fourth.cancel()
        return held, blocked

    held, blocked = asyncio.run(scenario())
    assert held == 3 and blocked


def test_cancelled_waiter_does_not_leak_a_slot() -> None:
    async def scenario() -> bool:
        gate = PrioritySemaphore(1)
        await gate.acquire()
        waiter = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0)
        gate.release()  # grants the slot to the waiter ...
        waiter.cancel()  # ... which is cancelled before it runs: the slot must come back
        with pytest.raises(asyncio.CancelledError):
            await waiter
        await asyncio.wait_for(gate.acquire(), 1.0)
        return True

    assert asyncio.run(scenario())


@pytest.mark.parametrize("mode", list(RepositoryMode))
def test_every_batched_model_gets_two_priority_levels(tmp_path: Path, mode: RepositoryMode) -> None:
    entries = Catalog.load().select(["open_nsfw", "yunet"])
    models_dir = tmp_path / "models"
    for entry in entries:
        weights = entry.weights_path(models_dir)
        weights.parent.mkdir(parents=True)
        weights.write_bytes(b"not really onnx")
    out = assemble(entries, models_dir, tmp_path / "runtime", mode)
    for entry in entries:
        config = text_format.Parse(
            (out / entry.name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        assert config.dynamic_batching.priority_levels == 2
        assert config.dynamic_batching.default_priority_level == 1


def test_a_reserve_lets_background_use_every_shared_slot_and_interactive_still_start() -> None:
    async def scenario() -> tuple[bool, bool, bool]:
        videos = PrioritySemaphore(3, background_limit=2, interactive_limit=2)  # 2 shared + 1 reserved
        with background():
            await videos.acquire()
            await videos.acquire()
            third_job = asyncio.create_task(videos.acquire())
        await asyncio.wait_for(videos.acquire(), 1.0)  # the reserve: no wait for a whole video
        await asyncio.sleep(0.01)
        job_blocked = not third_job.done()
        videos.release()
        second_user = asyncio.create_task(videos.acquire())
        await asyncio.sleep(0.01)
        user_got_it = second_user.done()
        third_job.cancel()
        return job_blocked, user_got_it, videos.locked() is False or True

    job_blocked, user_got_it, _ = asyncio.run(scenario())
    assert job_blocked, "background work never takes the reserved slot"
    assert user_got_it
