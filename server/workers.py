"""A bounded thread pool for CPU-bound work (decoding, preprocessing), so the event loop stays free.
OpenCV and numpy release the GIL in their kernels, so threads use every core."""

from __future__ import annotations

import asyncio
import contextvars
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

from stash_vision.server.priority import PrioritySemaphore

P = ParamSpec("P")
T = TypeVar("T")


class CpuPool:
    def __init__(self, threads: int, max_pending: int | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="cpu")
        # Bounds the work queued behind the threads: callers wait here (back-pressure) instead of
        # piling decoded images up in memory. Background (job) work may queue only one task per
        # thread, so an interactive call never finds a long queue of job work ahead of it.
        self._slots = PrioritySemaphore(max_pending or threads * 4, background_limit=threads)

    async def run(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        async with self._slots:
            loop = asyncio.get_running_loop()
            call = functools.partial(contextvars.copy_context().run, function, *args, **kwargs)
            return await loop.run_in_executor(self._executor, call)

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
