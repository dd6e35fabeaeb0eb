"""A request budget per remote endpoint: at most N requests in any sliding window (a minute by
default). stash-box servers have no limiter of their own, so the client must keep to the budget
the user configured; a sliding log (not a token bucket with a burst) guarantees that no window of
that length, measured anywhere, ever holds more than N requests — retries included."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable


class RateBudget:
    """`await budget.acquire()` before each request; it waits until the request fits the window.

    Each caller reserves its send time under a thread lock (no await in between), then sleeps until
    it, and one budget works across event loops and threads. When the answer is back, `done` moves
    the request's entry to that moment: a request may have arrived at the server as late as its
    answer, so counting it from then keeps every window measured at the server within the budget,
    however long connection set-up or a loaded machine delayed it. `margin_s` widens the window a
    little for what is left (clock jitter)."""

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
        self._sent: list[list[float]] = []  # [time, ticket], sorted by time
        self._lock = threading.Lock()
        self._ticket = 0.0

    def reserve(self) -> float:
        """Reserves the earliest send time that keeps every window within the budget; returns the
        seconds to wait for it."""
        return self.reserve_ticket()[0]

    def reserve_ticket(self) -> tuple[float, float]:
        """`reserve`, plus the ticket to hand to `done` when the answer is back."""
        with self._lock:
            now = self._clock()
            self._sent = [entry for entry in self._sent if now - entry[0] < self.window_s]
            at = max(now, self._sent[-1][0]) if self._sent else now
            if len(self._sent) >= self.max_requests:
                at = max(at, self._sent[-self.max_requests][0] + self.window_s)
            self._ticket += 1.0
            self._sent.append([at, self._ticket])
            return at - now, self._ticket

    def done(self, ticket: float) -> None:
        """The request's answer is back: count it from now."""
        with self._lock:
            now = self._clock()
            for entry in self._sent:
                if entry[1] == ticket:
                    entry[0] = max(entry[0], now)
            self._sent.sort()

    async def acquire(self) -> float:
        """Waits for a slot; returns the ticket to hand to `done` when the answer is back."""
        delay, ticket = self.reserve_ticket()
        if delay > 0:
            await asyncio.sleep(delay)
        return ticket


_BUDGETS: dict[tuple[str, int, float], RateBudget] = {}


def budget_for(key: str, max_requests: int, window_s: float = 60.0) -> RateBudget:
    """The budget shared by every client of one endpoint in this process (one per event loop would
    let two loops together exceed it, so it is keyed by endpoint alone)."""
    entry = (key, max_requests, window_s)
    budget = _BUDGETS.get(entry)
    if budget is None:
        budget = _BUDGETS[entry] = RateBudget(max_requests, window_s)
    return budget
