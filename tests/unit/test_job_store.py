"""JobStore on real SQLite files: jobs, items, counters, paging, recovery, events, migrations, and
the storage failures (full disk, locked, read-only) a person must be told about."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from stash_vision.server.errors import InvalidInput, JobNotFound, StorageUnavailable
from stash_vision.server.jobs.model import ItemState, JobState
from stash_vision.server.jobs.schema import SCHEMA_VERSION, connect
from stash_vision.server.jobs.store import INTERRUPTED_MESSAGE, JobStore


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "data" / "jobs.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[JobStore]:
    jobs = JobStore(db_path, max_events_per_job=5)
    yield jobs
    jobs.close()


def _job_with_items(store: JobStore, count: int) -> str:
    job = store.create_job("tag-library", {"root": "/media"})
    store.add_items(job.id, [f"/media/{n:03}.jpg" for n in range(1, count + 1)])
    return job.id


def test_create_get_and_reopen(db_path: Path) -> None:
    before = time.time()
    store = JobStore(db_path)
    job = store.create_job("tag-library", {"root": "/media", "models": ["a", "b"]}, unit="files")
    assert len(job.id) == 32 and int(job.id, 16) >= 0
    assert job.state is JobState.QUEUED and job.params == {"root": "/media", "models": ["a", "b"]}
    assert before <= job.created_at == job.updated_at <= time.time()
    assert job.started_at is None and job.finished_at is None
    assert (job.progress.total, job.progress.unit, job.progress.listing_complete) == (0, "files", False)
    store.close()

    reopened = JobStore(db_path)
    assert reopened.get_job(job.id) == job
    with pytest.raises(JobNotFound, match="nope"):
        reopened.get_job("nope")
    reopened.close()
    assert sqlite3.connect(db_path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_update_job_changes_only_given_fields(store: JobStore) -> None:
    job = store.create_job("tag-library", {})
    updated = store.update_job(job.id, state=JobState.RUNNING, started_at=100.0, message="listing")
    assert (updated.state, updated.started_at, updated.message) == (JobState.RUNNING, 100.0, "listing")
    assert updated.updated_at >= job.updated_at
    again = store.update_job(job.id, summary={"errors_by_kind": {"MediaNotFound": 2}}, error="boom")
    assert (again.state, again.started_at, again.message) == (JobState.RUNNING, 100.0, "listing")
    assert again.summary == {"errors_by_kind": {"MediaNotFound": 2}} and again.error == "boom"
    done = store.update_job(job.id, state=JobState.SUCCEEDED, finished_at=200.0)
    assert done.finished_at == 200.0 and store.get_job(job.id) == done
    with pytest.raises(JobNotFound):
        store.update_job("missing", message="x")
    with pytest.raises(InvalidInput, match="JSON"):
        store.update_job(job.id, summary={"bad": object()})


def test_list_jobs_newest_first_filters_and_pages(store: JobStore) -> None:
    ids = [store.create_job("tag-library" if n % 2 else "identify-library", {"n": n}).id for n in range(7)]
    store.update_job(ids[3], state=JobState.PAUSED)
    seen: list[str] = []
    token = ""
    while True:
        page = store.list_jobs(page_size=3, page_token=token)
        seen += [job.id for job in page.jobs]
        if not page.next_page_token:
            break
        token = page.next_page_token
    assert seen == ids[::-1]
    assert [j.id for j in store.list_jobs(kinds=["tag-library"]).jobs] == [ids[5], ids[3], ids[1]]
    assert [j.id for j in store.list_jobs(states=[JobState.PAUSED]).jobs] == [ids[3]]
    assert store.list_jobs(states=["queued"], kinds=["identify-library"]).jobs[0].id == ids[6]
    assert store.list_jobs(page_size=7).next_page_token == ""
    for bad in ("garbage!", "bm90IGpzb24=", "WzEsMiwzXQ=="):
        with pytest.raises(InvalidInput, match="page_token"):
            store.list_jobs(page_token=bad)
    for size in (0, 501):
        with pytest.raises(InvalidInput, match="page_size"):
            store.list_jobs(page_size=size)
    with pytest.raises(InvalidInput, match="state"):
        store.list_jobs(states=["sleeping"])


def test_add_items_appends_in_order_and_skips_known_items(store: JobStore) -> None:
    job = store.create_job("tag-library", {})
    assert store.add_items(job.id, ["/a", "/b", "/c"]) == 3
    assert store.add_items(job.id, ["/b", "/d", "/d", "/a", "/e"]) == 2  # a resumed listing
    assert store.get_job(job.id).progress.total == 5
    claimed = store.claim_items(job.id, 10)
    assert [(r.seq, r.item) for r in claimed] == [(1, "/a"), (2, "/b"), (3, "/c"), (4, "/d"), (5, "/e")]
    store.set_listing_complete(job.id)
    assert store.get_job(job.id).progress.listing_complete
    with pytest.raises(JobNotFound):
        store.add_items("missing", ["/x"])


def test_add_100k_items_in_batches_is_fast(store: JobStore) -> None:
    job = store.create_job("tag-library", {})
    items = [f"/library/folder{n // 1000}/file{n}.mp4" for n in range(100_000)]
    started = time.perf_counter()
    added = sum(store.add_items(job.id, items[i : i + 500]) for i in range(0, len(items), 500))
    elapsed = time.perf_counter() - started
    assert added == 100_000 and store.get_job(job.id).progress.total == 100_000
    assert elapsed < 15, f"adding 100,000 items took {elapsed:.1f} s"
    assert store.add_items(job.id, items[-500:]) == 0
    last = store.claim_items(job.id, 100_000)[-1]
    assert (last.seq, last.item) == (100_000, items[-1])


def test_claim_finish_and_counters(store: JobStore) -> None:
    job_id = _job_with_items(store, 5)
    first = store.claim_items(job_id, 2)
    assert [(r.seq, r.state) for r in first] == [(1, ItemState.RUNNING), (2, ItemState.RUNNING)]
    assert [r.seq for r in store.claim_items(job_id, 2)] == [3, 4]
    store.finish_item(job_id, 1, result={"tags": ["x"]}, result_key="k1")
    store.finish_item(job_id, 2, error="/media/002.jpg does not exist", error_kind="MediaNotFound")
    store.finish_item(job_id, 1, error="late duplicate")  # already done: nothing changes
    store.finish_item(job_id, 2, result={"tags": []})
    progress = store.get_job(job_id).progress
    assert (progress.done, progress.failed, progress.total) == (2, 1, 5)
    store.finish_item(job_id, 5, result={})  # pending items may be finished too
    assert store.get_job(job_id).progress.done == 3
    with pytest.raises(InvalidInput, match="no item 99"):
        store.finish_item(job_id, 99)
    with pytest.raises(JobNotFound):
        store.finish_item("missing", 1)
    assert store.release_running_items(job_id) == 2  # items 3 and 4
    assert [r.seq for r in store.claim_items(job_id, 5)] == [3, 4]


def test_items_the_listing_could_not_offer_are_added_failed(store: JobStore) -> None:
    job_id = _job_with_items(store, 2)  # /media/001.jpg, /media/002.jpg
    assert store.add_failed_item(job_id, "/media/locked", "permission denied", "AccessDenied") == 3
    assert store.add_failed_item(job_id, "/media/locked", "permission denied", "AccessDenied") == 3  # resume
    assert store.add_failed_item(job_id, "/media/002.jpg", "unreadable") == 2  # listed before: now failed
    progress = store.get_job(job_id).progress
    assert (progress.total, progress.done, progress.failed) == (3, 2, 2)
    assert store.errors_by_kind(job_id) == {"AccessDenied": 1, "Error": 1}
    assert [(r.seq, r.error) for r in store.results(job_id).items] == [
        (2, "unreadable"),
        (3, "permission denied"),
    ]
    assert [r.seq for r in store.claim_items(job_id, 5)] == [1]
    with pytest.raises(JobNotFound):
        store.add_failed_item("missing", "/x", "y")


def test_results_pages_in_seq_order(store: JobStore) -> None:
    job_id = _job_with_items(store, 6)
    store.claim_items(job_id, 6)
    for seq in (5, 1, 3):
        store.finish_item(job_id, seq, result={"seq": seq}, result_key=f"key{seq}")
    store.finish_item(job_id, 2, error="bad file", error_kind="InvalidInput")
    first = store.results(job_id, page_size=3)
    assert [(r.seq, r.state) for r in first.items] == [
        (1, ItemState.DONE),
        (2, ItemState.FAILED),
        (3, ItemState.DONE),
    ]
    assert first.items[0].result == {"seq": 1} and first.items[0].result_key == "key1"
    assert first.items[1].error == "bad file" and first.items[1].error_kind == "InvalidInput"
    assert first.items[0].finished_at is not None and first.next_page_token
    second = store.results(job_id, page_size=3, page_token=first.next_page_token)
    assert [r.seq for r in second.items] == [5] and second.next_page_token == ""
    with pytest.raises(JobNotFound):
        store.results("missing")
    with pytest.raises(InvalidInput):
        store.results(job_id, page_token=first.next_page_token + "x")


def test_errors_by_kind(store: JobStore) -> None:
    job_id = _job_with_items(store, 4)
    store.finish_item(job_id, 1, error="gone", error_kind="MediaNotFound")
    store.finish_item(job_id, 2, error="gone", error_kind="MediaNotFound")
    store.finish_item(job_id, 3, error="no kind given")
    store.finish_item(job_id, 4, result={})
    assert store.errors_by_kind(job_id) == {"Error": 1, "MediaNotFound": 2}


def test_recover_after_restart(db_path: Path) -> None:
    store = JobStore(db_path)
    running, paused, queued = (_job_with_items(store, 3) for _ in range(3))
    for job_id in (running, paused):
        store.update_job(job_id, state=JobState.RUNNING)
        store.claim_items(job_id, 2)
    store.update_job(paused, state=JobState.PAUSED)  # crashed before releasing its items
    store.close()

    reopened = JobStore(db_path)
    assert reopened.recover_after_restart(auto_resume=False) == [running]
    job = reopened.get_job(running)
    assert job.state is JobState.INTERRUPTED and job.message == INTERRUPTED_MESSAGE
    assert reopened.get_job(paused).state is JobState.PAUSED
    assert reopened.get_job(queued).state is JobState.QUEUED
    for job_id in (running, paused):
        assert [r.seq for r in reopened.claim_items(job_id, 3)] == [1, 2, 3]

    reopened.update_job(running, state=JobState.RUNNING)
    assert reopened.recover_after_restart(auto_resume=True) == [running]
    assert reopened.get_job(running).state is JobState.QUEUED
    assert reopened.recover_after_restart(auto_resume=True) == []
    reopened.close()


def test_events_keep_the_newest(store: JobStore) -> None:
    job = store.create_job("tag-library", {})
    for n in range(1, 8):
        event = store.append_event(job.id, "info", f"event {n}")
    assert (event.seq, event.message, event.level) == (7, "event 7", "info")
    assert [e.seq for e in store.events(job.id)] == [3, 4, 5, 6, 7]  # max_events_per_job=5
    assert [e.message for e in store.events(job.id, after_seq=5)] == ["event 6", "event 7"]
    with pytest.raises(JobNotFound):
        store.append_event("missing", "info", "x")
    with pytest.raises(JobNotFound):
        store.events("missing")


def test_delete_job_removes_items_and_events(store: JobStore, db_path: Path) -> None:
    keep = _job_with_items(store, 2)
    gone = _job_with_items(store, 3)
    store.append_event(gone, "info", "hello")
    store.delete_job(gone)
    with pytest.raises(JobNotFound):
        store.get_job(gone)
    with pytest.raises(JobNotFound):
        store.delete_job(gone)
    raw = sqlite3.connect(db_path)
    assert raw.execute("SELECT COUNT(*) FROM job_items WHERE job_id = ?", (gone,)).fetchone()[0] == 0
    assert raw.execute("SELECT COUNT(*) FROM job_events").fetchone()[0] == 0
    assert raw.execute("SELECT COUNT(*) FROM job_items").fetchone()[0] == 2
    assert store.get_job(keep).progress.total == 2


def test_undecodable_file_names_round_trip(store: JobStore) -> None:
    name = b"/media/caf\xe9.jpg".decode("utf-8", "surrogateescape")  # a Latin-1 name on Linux
    job = store.create_job("tag-library", {"root": name})
    assert store.add_items(job.id, [name, "/media/ok.jpg", name]) == 2
    [record, _] = store.claim_items(job.id, 2)
    assert record.item == name and store.get_job(job.id).params == {"root": name}
    store.finish_item(job.id, record.seq, result={"path": name}, error=f"{name} is broken", error_kind="X")
    [finished] = store.results(job.id).items
    assert finished.item == name and finished.result == {"path": name}
    assert finished.error == "/media/caf\ufffd.jpg is broken"


def test_finishing_from_many_threads_counts_each_item_once(store: JobStore) -> None:
    job_id = _job_with_items(store, 200)
    claimed = store.claim_items(job_id, 200)

    def finish_all() -> None:
        for record in claimed:  # every thread finishes every item: each must count once
            store.finish_item(job_id, record.seq, result={"ok": True})

    threads = [threading.Thread(target=finish_all) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    progress = store.get_job(job_id).progress
    assert (progress.done, progress.failed) == (200, 0)


# Migrations


def test_a_version_1_database_migrates_and_keeps_its_jobs(db_path: Path) -> None:
    db_path.parent.mkdir(parents=True)
    old = connect(db_path, target=1)
    assert old.execute("PRAGMA user_version").fetchone()[0] == 1
    old.execute(
        "INSERT INTO jobs (id, kind, params, state, created_at, updated_at, total, done) "
        "VALUES ('j1', 'tag-library', '{\"root\": \"/m\"}', 'paused', 1.5, 2.5, 10, 4)"
    )
    old.execute("INSERT INTO job_items (job_id, seq, item, state) VALUES ('j1', 1, '/m/a.jpg', 'pending')")
    assert old.execute("SELECT name FROM sqlite_master WHERE name = 'results'").fetchone() is None
    old.close()

    store = JobStore(db_path)
    job = store.get_job("j1")
    assert (job.kind, job.params, job.state, job.created_at) == (
        "tag-library",
        {"root": "/m"},
        JobState.PAUSED,
        1.5,
    )
    assert (job.progress.total, job.progress.done) == (10, 4)
    assert [r.item for r in store.claim_items("j1", 5)] == ["/m/a.jpg"]
    store.close()
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    assert raw.execute("SELECT entries, bytes FROM result_totals").fetchone() == (0, 0)


def test_a_newer_database_is_refused(db_path: Path) -> None:
    JobStore(db_path).close()
    raw = sqlite3.connect(db_path)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(
        StorageUnavailable, match=f"schema version {SCHEMA_VERSION + 1}.*upgrade stash-vision"
    ):
        JobStore(db_path)


# Storage failures


def test_full_disk_is_reported_and_nothing_half_written(store: JobStore, db_path: Path) -> None:
    job_id = _job_with_items(store, 1)
    pages = store._connection.execute("PRAGMA page_count").fetchone()[0]
    store._connection.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: a full disk
    big = [f"/media/{'x' * 200}/{n}.jpg" for n in range(2000)]
    with pytest.raises(StorageUnavailable, match=f"cannot write {db_path}: the disk is full; free space"):
        store.add_items(job_id, big)
    assert store.get_job(job_id).progress.total == 1  # the failed batch left nothing behind
    store._connection.execute("PRAGMA max_page_count = 1073741823")  # space freed: it works again
    assert store.add_items(job_id, big) == 2000
    assert store.get_job(job_id).progress.total == 2001


def test_a_locked_database_is_reported(db_path: Path) -> None:
    store = JobStore(db_path, busy_timeout_s=0.1)
    job = store.create_job("tag-library", {})
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        started = time.monotonic()
        with pytest.raises(StorageUnavailable, match=f"{db_path} is locked by another process"):
            store.update_job(job.id, message="x")
        assert time.monotonic() - started < 3
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert store.update_job(job.id, message="x").message == "x"
    store.close()


def test_read_only_and_unopenable_files_are_reported(store: JobStore, tmp_path: Path) -> None:
    store._connection.execute("PRAGMA query_only = 1")  # as a read-only file behaves (we run as root)
    with pytest.raises(StorageUnavailable, match="read-only"):
        store.create_job("tag-library", {})
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(StorageUnavailable, match=r"file/jobs\.db"):
        JobStore(tmp_path / "file" / "jobs.db")
    (tmp_path / "garbage.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StorageUnavailable, match="not a SQLite database"):
        JobStore(tmp_path / "garbage.db")


def test_a_closed_store_raises_storage_unavailable(db_path: Path) -> None:
    store = JobStore(db_path)
    store.close()
    with pytest.raises(StorageUnavailable, match=str(db_path)):
        store.create_job("tag-library", {})
