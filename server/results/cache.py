"""The flows' face of the result store: asynchronous, keyed by a file and what produced the answer,
and forgiving — the store is a cache, so a storage problem is logged once and counted as a miss,
never an error for the caller.

Look-ups stat the file and touch SQLite, so they run on a worker thread, not the event loop."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from stash_vision.server.errors import StashVisionError
from stash_vision.server.metrics import RESULT_STORE_LOOKUPS

from .keys import FileKey, result_key
from .store import ResultStore

log = logging.getLogger("stash_vision.server.results")


class ResultCache:
    def __init__(self, store: ResultStore | None) -> None:
        self.store = store
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.store is not None and self.store.max_bytes > 0

    async def get(
        self, kind: str, path: Path, producer: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any] | None]:
        """`(key, value)`: the key under which the answer for this file as it is now is (or would
        be) kept, and the kept value or None. An empty key means nothing can be kept."""
        if not self.enabled:
            return "", None
        return await asyncio.to_thread(self._get, kind, path, producer)

    async def get_many(
        self, kind: str, path: Path, producers: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, dict[str, Any] | None]]:
        """`get` for several producers of one file (one stat, one thread hop)."""
        if not self.enabled:
            return [("", None)] * len(producers)
        return await asyncio.to_thread(self._get_many, kind, path, producers)

    async def put(self, key: str, kind: str, value: dict[str, Any]) -> None:
        if key and self.enabled:
            await asyncio.to_thread(self._put, key, kind, value)

    def _get(self, kind: str, path: Path, producer: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
        return self._get_many(kind, path, [producer])[0]

    def _get_many(
        self, kind: str, path: Path, producers: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, dict[str, Any] | None]]:
        assert self.store is not None
        found: list[tuple[str, dict[str, Any] | None]] = []
        try:
            file = FileKey.of(path)
            for producer in producers:
                key = result_key(kind, file, producer)
                value = self.store.get(key)
                RESULT_STORE_LOOKUPS.labels(kind, "hit" if value is not None else "miss").inc()
                found.append((key, value))
        except StashVisionError as error:
            self._warn(error)
            return [("", None)] * len(producers)
        return found

    def _put(self, key: str, kind: str, value: dict[str, Any]) -> None:
        assert self.store is not None
        try:
            self.store.put(key, kind, value)
        except StashVisionError as error:
            self._warn(error)

    def _warn(self, error: StashVisionError) -> None:
        if not self._warned:  # one line, not one per image of a full disk
            log.warning("result store unavailable, computing answers afresh: %s", error)
            self._warned = True
