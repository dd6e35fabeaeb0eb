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

    def lookup_blocking(
        self, kind: str, files: Sequence[tuple[Path, Sequence[Mapping[str, Any]]] | None]
    ) -> list[list[tuple[str, dict[str, Any] | None]]]:
        """For each (file, producers), `get_many`'s answer, in one store transaction; None stands for
        a file nothing can be kept for. Blocking: call it on a worker thread."""
        assert self.store is not None
        keys: list[list[str]] = []
        for entry in files:
            if entry is None:
                keys.append([])
                continue
            path, producers = entry
            try:
                file = FileKey.of(path)
            except StashVisionError:
                keys.append(["" for _ in producers])
                continue
            keys.append([result_key(kind, file, producer) for producer in producers])
        flat = [key for per_file in keys for key in per_file if key]
        try:
            values = iter(self.store.get_many(flat))
        except StashVisionError as error:
            self._warn(error)
            return [[("", None) for _ in per_file] for per_file in keys]
        answers = []
        for per_file in keys:
            row = [(key, next(values)) if key else ("", None) for key in per_file]
            for _, value in row:
                RESULT_STORE_LOOKUPS.labels(kind, "hit" if value is not None else "miss").inc()
            answers.append(row)
        return answers

    async def put(self, key: str, kind: str, value: dict[str, Any]) -> None:
        if key and self.enabled:
            await asyncio.to_thread(self._put, key, kind, value)

    def _get(self, kind: str, path: Path, producer: Mapping[str, Any]) -> tuple[str, dict[str, Any] | None]:
        return self._get_many(kind, path, [producer])[0]

    def _get_many(
        self, kind: str, path: Path, producers: Sequence[Mapping[str, Any]]
    ) -> list[tuple[str, dict[str, Any] | None]]:
        return self.lookup_blocking(kind, [(path, producers)])[0]

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
