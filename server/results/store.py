"""`ResultStore`: answers kept in jobs.db by `result_key`, bounded in bytes, evicted LRU.

It is a cache. Nothing depends on an entry being there: a miss costs one more inference. So a
caller treats `StorageUnavailable` from it (full disk, locked or read-only file) as a miss and
goes on computing; only the job store's errors fail work.

Why it is built this way:

- The same file as the jobs (DESIGN.md "Data directory"), own connection, same `schema` module:
  whichever store opens first migrates, and one file is one thing to back up or delete.
- `get` moves `last_used` in the same statement that reads the value (UPDATE … RETURNING), so a
  hit costs one round trip and the LRU order is exact.
- The total size lives in `result_totals`, kept by triggers (schema version 2): the bound is
  checked after every put without summing the table, and `stats()` is one row.
- `max_bytes` is the sum of the stored JSON values' lengths (SQLite's own page overhead comes on
  top). A value larger than the whole budget is not stored; `max_bytes == 0` turns the store off
  (`get` misses, `put` does nothing) without deleting what an earlier run kept.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..jobs.schema import DEFAULT_BUSY_TIMEOUT_S, Database, encode_json, placeholders

_EVICTION_BATCH = 256
_LOOKUP_BATCH = 500  # under SQLite's limit of bound variables


class ResultStore(Database):
    def __init__(self, path: Path, *, max_bytes: int, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        super().__init__(path, busy_timeout_s=busy_timeout_s)
        self.max_bytes = max(0, max_bytes)
        if self.max_bytes:  # the budget may have shrunk since the last run
            with self._transaction() as db:
                _evict(db, self.max_bytes)

    def get(self, key: str) -> dict[str, Any] | None:
        """The value kept under `key` (now the most recently used), or None."""
        if not self.max_bytes:
            return None
        with self._transaction() as db:
            row = db.execute(
                "UPDATE results SET last_used = ? WHERE key = ? RETURNING value", (time.time(), key)
            ).fetchone()
        if row is None:
            return None
        value = json.loads(row[0])
        return value if isinstance(value, dict) else None

    def get_many(self, keys: Sequence[str]) -> list[dict[str, Any] | None]:
        """`get` for many keys in one transaction (a 320-image request is one look-up, not 320)."""
        if not self.max_bytes or not keys:
            return [None] * len(keys)
        found: dict[str, dict[str, Any]] = {}
        now = time.time()
        with self._transaction() as db:
            for start in range(0, len(keys), _LOOKUP_BATCH):
                chunk = list(dict.fromkeys(keys[start : start + _LOOKUP_BATCH]))
                rows = db.execute(
                    f"UPDATE results SET last_used = ? WHERE key IN ({placeholders(chunk)}) RETURNING key, value",
                    (now, *chunk),
                ).fetchall()
                for key, text in rows:
                    value = json.loads(text)
                    if isinstance(value, dict):
                        found[key] = value
        return [found.get(key) for key in keys]

    def put(self, key: str, kind: str, value: dict[str, Any]) -> None:
        """Keeps `value` under `key` (replacing any), then evicts the least recently used entries
        until the total fits `max_bytes`. A value larger than `max_bytes` is not kept, and removes
        what `key` held before, so `get` never returns an answer older than the last `put`."""
        if not self.max_bytes:
            return
        encoded = encode_json(value, f"the {kind} result")
        size = len(encoded)  # ASCII: characters are bytes
        now = time.time()
        with self._transaction() as db:
            if size > self.max_bytes:
                db.execute("DELETE FROM results WHERE key = ?", (key,))
                return
            db.execute(
                "INSERT INTO results (key, kind, value, bytes, created_at, last_used) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, "
                "value = excluded.value, bytes = excluded.bytes, created_at = excluded.created_at, "
                "last_used = excluded.last_used",
                (key, kind, encoded, size, now, now),
            )
            _evict(db, self.max_bytes)

    def clear(self, kind: str | None = None) -> int:
        """Deletes every entry (or every entry of `kind`); returns how many."""
        with self._transaction() as db:
            if kind is None:
                return db.execute("DELETE FROM results").rowcount
            return db.execute("DELETE FROM results WHERE kind = ?", (kind,)).rowcount

    def stats(self) -> tuple[int, int]:
        """(entries, bytes) kept now."""
        with self._transaction(write=False) as db:
            return _totals(db)


def _totals(db: sqlite3.Connection) -> tuple[int, int]:
    entries, size = db.execute("SELECT entries, bytes FROM result_totals").fetchone()
    return int(entries), int(size)


def _evict(db: sqlite3.Connection, max_bytes: int) -> None:
    """Deletes least recently used entries until the total is at most `max_bytes`."""
    excess = _totals(db)[1] - max_bytes
    while excess > 0:
        oldest = db.execute(
            "SELECT key, bytes FROM results ORDER BY last_used, key LIMIT ?", (_EVICTION_BATCH,)
        ).fetchall()
        if not oldest:
            return
        victims: list[str] = []
        for key, size in oldest:
            if excess <= 0:
                break
            victims.append(key)
            excess -= size
        db.executemany("DELETE FROM results WHERE key = ?", ((key,) for key in victims))
