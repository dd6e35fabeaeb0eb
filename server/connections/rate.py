"""A request budget per remote endpoint: at most N requests in any sliding window (a minute by
default). stash-box servers have no limiter of their own, so the client must keep to the budget
the user configured; a sliding log (not a token bucket with a burst) guarantees that no window of
that length, measured anywhere, ever holds more than N requests — retries included."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable


class RateBudget:
    """`await budget.acquire()` before each request; it waits until the request fits the window.

    Each caller reserves its send time under a thread lock (no await in between), then sleeps until
    it: the reservations stay sorted, so the check is exact, and one budget works across event loops
    and threads. `margin_s` widens the window a little so that network jitter between sending here
    and arriving there cannot make two requests look closer at the server than they were here."""

    def __init__(
        self,
        max_requests: int,
        window_s: float = 60.0,
        *,
        margin_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_requests < 1:
            raise ValueError("max_requests must be at least 1")
        self.max_requests = max_requests
        self.window_s = window_s + (max(0.1, window_s / 100) if margin_s is None else margin_s)
        self._clock = clock
        self._sent: deque[float] = deque()
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Reserves the earliest send time that keeps every window within the budget; returns the
        seconds to wait for it."""
        with self._lock:
            now = self._clock()
            while self._sent and now - self._sent[0] >= self.window_s:
                self._sent.popleft()
            at = max(now, self._sent[-1]) if self._sent else now
            if len(self._sent) >= self.max_requests:
                at = max(at, self._sent[-self.max_requests] + self.window_s)
            self._sent.append(at)
            return at - now

    async def acquire(self) -> None:
        delay = self.reserve()
        if delay > 0:
            await asyncio.sleep(delay)


_BUDGETS: dict[tuple[str, int, float], RateBudget] = {}


def budget_for(key: str, max_requests: int, window_s: float = 60.0) -> RateBudget:
    """The budget shared by every client of one endpoint in this process (one per event loop would
    let two loops together exceed it, so it is keyed by endpoint alone)."""
    entry = (key, max_requests, window_s)
    budget = _BUDGETS.get(entry)
    if budget is None:
        budget = _BUDGETS[entry] = RateBudget(max_requests, window_s)
    return budget
