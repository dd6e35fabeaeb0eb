"""Result store on real SQLite files: keys by file and producer, LRU eviction by bytes, sharing
jobs.db with the job store, and storage failures reported as StorageUnavailable."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import stash_vision.server.results.store as store_module
from stash_vision.server.errors import MediaNotFound, StorageUnavailable
from stash_vision.server.jobs.store import JobStore
from stash_vision.server.results import FileKey, ResultStore, result_key

PRODUCER = {"models": {"open_nsfw": "1"}, "threshold": 0.5}


class _Clock:
    """Replaces the store module's `time`: each call one second later, so LRU order is exact."""

    def __init__(self) -> None:
        self.now = 1000.0

    def time(self) -> float:
        self.now += 1
        return self.now


@pytest.fixture(autouse=True)
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(store_module, "time", fake)
    return fake


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "jobs.db"


@pytest.fixture
def results(db_path: Path) -> Iterator[ResultStore]:
    store = ResultStore(db_path, max_bytes=1000)
    yield store
    store.close()


def _value(size: int) -> dict[str, Any]:
    """A value whose stored JSON is exactly `size` bytes."""
    value = {"v": ""}
    value["v"] = "x" * (size - len('{"v": ""}'))
    return value


# Keys


def test_file_key_and_result_key(tmp_path: Path) -> None:
    media = tmp_path / "a.jpg"
    media.write_bytes(b"12345")
    os.utime(media, ns=(1_000_000_000, 2_000_000_000))
    link = tmp_path / "link.jpg"
    link.symlink_to(media)
    key = FileKey.of(link)
    assert key == FileKey(str(media.resolve()), 5, 2_000_000_000)

    base = result_key("tags", key, PRODUCER)
    assert len(base) == 64 and base == result_key("tags", FileKey.of(media), dict(reversed(PRODUCER.items())))
    assert result_key("faces", key, PRODUCER) != base
    assert result_key("tags", key, {**PRODUCER, "threshold": 0.6}) != base
    os.utime(media, ns=(1_000_000_000, 3_000_000_000))
    assert result_key("tags", FileKey.of(media), PRODUCER) != base
    media.write_bytes(b"123456")
    os.utime(media, ns=(1_000_000_000, 2_000_000_000))
    assert result_key("tags", FileKey.of(media), PRODUCER) != base

    with pytest.raises(MediaNotFound, match=r"missing\.jpg"):
        FileKey.of(tmp_path / "missing.jpg")
    odd = FileKey(b"/m/caf\xe9.jpg".decode("utf-8", "surrogateescape"), 1, 1)
    assert result_key("tags", odd, PRODUCER) != result_key("tags", FileKey("/m/caf.jpg", 1, 1), PRODUCER)


# Store


def test_put_get_replace_and_reopen(results: ResultStore, db_path: Path) -> None:
    assert results.get("k1") is None
    results.put("k1", "tags", {"tags": ["a"], "score": 0.5})
    assert results.get("k1") == {"tags": ["a"], "score": 0.5}
    results.put("k1", "tags", {"tags": ["b"]})
    assert results.get("k1") == {"tags": ["b"]}
    assert results.stats() == (1, len('{"tags": ["b"]}'))
    results.close()
    reopened = ResultStore(db_path, max_bytes=1000)
    assert reopened.get("k1") == {"tags": ["b"]}
    reopened.close()


def test_least_recently_used_entries_are_evicted(results: ResultStore) -> None:
    for key in ("a", "b", "c", "d"):
        results.put(key, "tags", _value(250))
    assert results.stats() == (4, 1000)
    assert results.get("a") is not None  # a is now the most recently used
    results.put("e", "tags", _value(300))  # 300 over: b and c (the two oldest) go
    assert [k for k in "abcde" if results.get(k) is not None] == ["a", "d", "e"]
    assert results.stats() == (3, 800)


def test_too_large_values_and_a_disabled_store(results: ResultStore, db_path: Path) -> None:
    results.put("k", "tags", _value(100))
    results.put("k", "tags", _value(1001))  # larger than the whole budget: not kept, old one gone
    assert results.get("k") is None and results.stats() == (0, 0)
    results.put("k", "tags", _value(1000))
    assert results.stats() == (1, 1000)

    disabled = ResultStore(db_path, max_bytes=0)
    assert disabled.get("k") is None  # off: always a miss, but what was kept stays
    disabled.put("other", "tags", _value(10))
    assert disabled.stats() == (1, 1000)
    disabled.close()

    smaller = ResultStore(db_path, max_bytes=500)  # the budget shrank since the last run
    assert smaller.stats() == (0, 0)
    smaller.close()


def test_clear_all_or_one_kind(results: ResultStore) -> None:
    results.put("t1", "tags", {"n": 1})
    results.put("t2", "tags", {"n": 2})
    results.put("f1", "faces", {"n": 3})
    assert results.clear("tags") == 2
    assert results.get("f1") == {"n": 3} and results.stats() == (1, len('{"n": 3}'))
    assert results.clear() == 1 and results.stats() == (0, 0)


def test_shares_jobs_db_with_the_job_store(db_path: Path) -> None:
    results = ResultStore(db_path, max_bytes=1000)  # opened first: it migrates
    jobs = JobStore(db_path)
    job = jobs.create_job("tag-library", {})
    results.put("k", "tags", {"job": job.id})
    jobs.close()
    results.close()
    raw = sqlite3.connect(db_path)
    assert raw.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 1
    assert raw.execute("SELECT kind, bytes FROM results").fetchall() == [
        ("tags", len(f'{{"job": "{job.id}"}}'))
    ]


def test_storage_failures_are_storage_unavailable(results: ResultStore, db_path: Path) -> None:
    results.max_bytes = 100_000
    results.put("small", "tags", {"n": 1})
    pages = results._connection.execute("PRAGMA page_count").fetchone()[0]
    results._connection.execute(f"PRAGMA max_page_count = {pages}")
    with pytest.raises(StorageUnavailable, match="disk is full"):
        results.put("big", "tags", _value(900) | {"w": "y" * 20_000})
    assert results.stats() == (1, len('{"n": 1}'))
    results._connection.execute("PRAGMA max_page_count = 1073741823")
    results.put("big", "tags", _value(900) | {"w": "y" * 20_000})
    assert results.stats()[0] == 2

    locked = ResultStore(db_path, max_bytes=100_000, busy_timeout_s=0.1)
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(StorageUnavailable, match="locked"):
            locked.get("small")
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert locked.get("small") == {"n": 1}
    locked.close()
