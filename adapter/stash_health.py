"""The `stash` object of GET /health: whether the user's Stash is configured, reachable, its
version and whether the key works. The adapter asks Stash itself (it has the same settings as the
server), with a short timeout and no retries so /health stays fast, and keeps the answer ~10 s so
a dashboard polling /health does not turn into a stream of queries to Stash."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict
from typing import Any

from stash_vision.server.connections import StashConnection
from stash_vision.server.connections.status import SourceStatus
from stash_vision.settings import Settings

CACHE_S = 10.0
TIMEOUT_S = 2.0


class StashHealth:
    def __init__(self, settings: Settings, *, cache_s: float = CACHE_S) -> None:
        self.connection = StashConnection.from_settings(settings, timeout_s=TIMEOUT_S, retries=0)
        self.cache_s = cache_s
        self._answer: tuple[float, SourceStatus] | None = None
        self._lock: asyncio.Lock | None = None

    async def status(self) -> dict[str, Any]:
        if self.connection is None:
            return asdict(SourceStatus(configured=False))
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:  # one probe at a time; the others take its answer
            now = time.monotonic()
            if self._answer is None or now - self._answer[0] >= self.cache_s:
                self._answer = (now, await self.connection.status())
            return asdict(self._answer[1])
