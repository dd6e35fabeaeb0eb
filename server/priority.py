"""Interactive calls ahead of background work.

A plugin's `/process_images/`, `/process_video/` or `/identify…` call must not queue behind a
job's items. Two mechanisms, both keyed by one context variable that the job runner sets around an
item (and that asyncio tasks and `CpuPool.run` inherit):

* **Triton**: every model's dynamic batcher has two priority levels (`runtime_repository`); a
  background request asks for the lower one, so Triton takes interactive requests from its queue
  first.
* **Admission**: the server's own bounded slots (images and video frames in flight, videos
  decoding, CPU-pool queue) are `PrioritySemaphore`s: a freed slot goes to a waiting interactive
  caller before any background one, and background work may hold only part of the slots, so an
  interactive caller finds one free or freed soon.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from types import TracebackType

_BACKGROUND: ContextVar[bool] = ContextVar("stash_vision_background", default=False)

TRITON_PRIORITY_LEVELS = 2
"""Levels of every model's dynamic batcher: 1 = interactive (the default), 2 = background."""
INTERACTIVE_PRIORITY = 0  # Triton: 0 means the model's default level (1)
BACKGROUND_PRIORITY = 2


def is_background() -> bool:
    return _BACKGROUND.get()


def triton_priority() -> int:
    return BACKGROUND_PRIORITY if _BACKGROUND.get() else INTERACTIVE_PRIORITY


@contextlib.contextmanager
def background() -> Iterator[None]:
    """Marks everything started inside (tasks created here inherit it) as background work."""
    token = _BACKGROUND.set(True)
    try:
        yield
    finally:
        _BACKGROUND.reset(token)


class PrioritySemaphore:
    """An asyncio semaphore whose waiters are served interactive first (first come, first served
    within each class), and which lets background work hold at most `background_limit` slots and
    interactive callers at most `interactive_limit`.

    `background_limit` defaults to all but one slot (at least one), so a lone interactive caller
    never waits for a background holder to finish. A slot held for long (a whole video) is better
    given a reserve instead: `value` = n + reserve with both limits n, so jobs use all n slots
    while nobody else is there, and an interactive call still starts at once."""

    def __init__(
        self, value: int, *, background_limit: int | None = None, interactive_limit: int | None = None
    ) -> None:
        if value < 1:
            raise ValueError(f"a semaphore needs at least one slot, got {value}")
        self._value = value
        self.capacity = value
        self.background_limit = max(1, value - 1) if background_limit is None else max(1, background_limit)
        self.interactive_limit = value if interactive_limit is None else max(1, interactive_limit)
        self._held = {False: 0, True: 0}
        self._waiters: dict[bool, collections.deque[asyncio.Future[None]]] = {
            False: collections.deque(),
            True: collections.deque(),
        }

    def _can_take(self, background_: bool) -> bool:
        if self._value <= 0:
            return False
        if background_:
            return self._held[True] < self.background_limit and not self._waiters[False]
        return self._held[False] < self.interactive_limit

    async def acquire(self) -> bool:
        kind = _BACKGROUND.get()
        if not self._waiters[kind] and self._can_take(kind):
            self._take(kind)
            return True
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters[kind].append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                # Granted and cancelled at once: the slot was taken for us; hand it on.
                self._give_back(kind)
            elif waiter in self._waiters[kind]:  # _wake may have dropped it, cancelled, already
                self._waiters[kind].remove(waiter)
            raise
        return True

    def release(self) -> None:
        self._give_back(_BACKGROUND.get())

    def _take(self, kind: bool) -> None:
        self._value -= 1
        self._held[kind] += 1

    def _give_back(self, kind: bool) -> None:
        self._value += 1
        self._held[kind] -= 1
        self._wake()

    def _wake(self) -> None:
        for kind in (False, True):  # interactive first
            queue = self._waiters[kind]
            while queue and queue[0].done():  # cancelled waiters
                queue.popleft()
            while queue and self._can_take(kind):
                waiter = queue.popleft()
                if waiter.done():
                    continue
                self._take(kind)
                waiter.set_result(None)

    def locked(self) -> bool:
        return self._value <= 0

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
