"""`JobStore`: jobs, their items and events in jobs.db, so that work survives restarts.

The runner calls it from a worker thread (never the event loop): every method is synchronous,
takes the store's lock, and runs in one SQLite transaction, so a reader never sees an item done
without the job's counter having moved with it.

Why it is built this way:

- A job's counters (done, failed, total) live on its row and move in the same transaction as the
  item they count: progress is one row read, not a count over 100,000 items, and `finish_item`
  only counts an item that was still pending or running, so a retried finish never counts twice.
- Items are numbered by `seq` in listing order (1-based, no gaps): results page by it, and the
  next free `seq` is read from the primary key inside each insert, so items a resumed listing
  offers again (`UNIQUE (job_id, item)`) are skipped without leaving holes.
- Page tokens are opaque base64 of the last row's sort key (keyset paging): stable while the
  runner inserts, and cheap at any depth.
- Item names that are not valid UTF-8 (Linux `surrogateescape` file names) are kept as BLOBs
  (`schema.encode_name`), so such a file is still processed and reported by its name.
"""

from __future__ import annotations

import base64
import binascii
import json
import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, JobNotFound
from .api import JobPage, ResultPage
from .model import ItemRecord, ItemState, Job, JobEvent, JobState, Progress
from .schema import (
    DEFAULT_BUSY_TIMEOUT_S,
    Database,
    clean_text,
    decode_name,
    encode_json,
    encode_name,
    placeholders,
)

MAX_PAGE_SIZE = 500
INTERRUPTED_MESSAGE = "interrupted: the server stopped while it ran; resume it to go on"
REQUEUED_MESSAGE = "queued again: the server stopped while it ran"

_JOB_COLUMNS = (
    "id, kind, params, state, created_at, started_at, finished_at, updated_at, message, error, "
    "summary, done, failed, total, unit, listing_complete"
)
_ITEM_COLUMNS = "job_id, seq, item, state, error, error_kind, result, result_key, finished_at"
_FINISHED_ITEMS = (ItemState.DONE.value, ItemState.FAILED.value)


class JobStore(Database):
    def __init__(
        self,
        path: Path,
        *,
        max_events_per_job: int = 500,
        busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S,
    ) -> None:
        super().__init__(path, busy_timeout_s=busy_timeout_s)
        self.max_events_per_job = max(1, max_events_per_job)

    # Jobs

    def create_job(self, kind: str, params: dict[str, Any], *, unit: str = "items") -> Job:
        now = time.time()
        job_id = uuid.uuid4().hex
        encoded = encode_json(params, "job parameters")
        with self._transaction() as db:
            db.execute(
                "INSERT INTO jobs (id, kind, params, state, created_at, updated_at, unit) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (job_id, kind, encoded, JobState.QUEUED.value, now, now, unit),
            )
            return _load_job(db, job_id)

    def get_job(self, job_id: str) -> Job:
        with self._transaction(write=False) as db:
            return _load_job(db, job_id)

    def list_jobs(
        self,
        *,
        states: Sequence[JobState | str] = (),
        kinds: Sequence[str] = (),
        page_size: int = 50,
        page_token: str = "",
    ) -> JobPage:
        """Newest first (created_at, then id, descending)."""
        _check_page_size(page_size)
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({placeholders(states)})")
            args.extend(_job_state(s).value for s in states)
        if kinds:
            where.append(f"kind IN ({placeholders(kinds)})")
            args.extend(kinds)
        if page_token:
            created_at, last_id = _decode_token(page_token, float, str)
            where.append("(created_at < ? OR (created_at = ? AND id < ?))")
            args.extend((created_at, created_at, last_id))
        sql = f"SELECT {_JOB_COLUMNS} FROM jobs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, id DESC LIMIT ?"
        with self._transaction(write=False) as db:
            rows = db.execute(sql, (*args, page_size + 1)).fetchall()
        jobs = [_job(row) for row in rows[:page_size]]
        more = len(rows) > page_size
        return JobPage(jobs, _encode_token(jobs[-1].created_at, jobs[-1].id) if more else "")

    def update_job(
        self,
        job_id: str,
        *,
        state: JobState | None = None,
        message: str | None = None,
        error: str | None = None,
        summary: dict[str, Any] | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
    ) -> Job:
        """Changes the given fields (None: unchanged) and `updated_at`."""
        given = {
            "state": None if state is None else _job_state(state).value,
            "message": None if message is None else clean_text(message),
            "error": None if error is None else clean_text(error),
            "summary": None if summary is None else encode_json(summary, "job summary"),
            "started_at": started_at,
            "finished_at": finished_at,
        }
        changes = {column: value for column, value in given.items() if value is not None}
        changes["updated_at"] = time.time()
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._transaction() as db:
            db.execute(f"UPDATE jobs SET {assignments} WHERE id = ?", (*changes.values(), job_id))
            return _load_job(db, job_id)

    def delete_job(self, job_id: str) -> None:
        """The job, its items and its events. JobNotFound if there is no such job."""
        with self._transaction() as db:
            _require_job(db, job_id)
            for table, column in (("job_items", "job_id"), ("job_events", "job_id"), ("jobs", "id")):
                db.execute(f"DELETE FROM {table} WHERE {column} = ?", (job_id,))

    # Items

    def add_items(self, job_id: str, items: Sequence[str]) -> int:
        """Appends `items` in order after the job's last item, skipping those the job already has
        (a resumed listing offers them again); adds to `total` and returns how many were new."""
        with self._transaction() as db:
            _require_job(db, job_id)
            return _insert_items(db, job_id, [encode_name(item) for item in items])

    def add_failed_item(self, job_id: str, item: str, error: str, error_kind: str = "") -> int:
        """An item the listing could not offer for work (unreadable folder, bad name): appended
        already failed, counted in total, done and failed. Returns its seq. Listed again on
        resume, it is not added twice; if it was pending or running it is finished as failed."""
        with self._transaction() as db:
            _require_job(db, job_id)
            encoded = encode_name(item)
            _insert_items(db, job_id, [encoded])
            (seq,) = db.execute(
                "SELECT seq FROM job_items WHERE job_id = ? AND item = ?", (job_id, encoded)
            ).fetchone()
            _finish(db, job_id, seq, None, "", error or "failed while listing", error_kind)
            return int(seq)

    def set_listing_complete(self, job_id: str) -> None:
        with self._transaction() as db:
            _require_job(db, job_id)
            db.execute(
                "UPDATE jobs SET listing_complete = 1, updated_at = ? WHERE id = ?", (time.time(), job_id)
            )

    def claim_items(self, job_id: str, limit: int) -> list[ItemRecord]:
        """The first `limit` pending items by seq, now marked running."""
        with self._transaction() as db:
            _require_job(db, job_id)
            rows = db.execute(
                f"UPDATE job_items SET state = 'running' WHERE job_id = ? AND seq IN ("
                f"SELECT seq FROM job_items WHERE job_id = ? AND state = 'pending' ORDER BY seq LIMIT ?"
                f") RETURNING {_ITEM_COLUMNS}",
                (job_id, job_id, max(0, limit)),
            ).fetchall()
        return sorted((_item(row) for row in rows), key=lambda record: record.seq)

    def finish_item(
        self,
        job_id: str,
        seq: int,
        *,
        result: dict[str, Any] | None = None,
        result_key: str = "",
        error: str = "",
        error_kind: str = "",
    ) -> None:
        """Done (no `error`) or failed, with the job's counters, in one transaction. An item that
        is already done or failed is left as it is and not counted again."""
        encoded = None if result is None else encode_json(result, f"the result of item {seq}")
        with self._transaction() as db:
            if _finish(db, job_id, seq, encoded, result_key, error, error_kind):
                return
            _require_job(db, job_id)
            known = db.execute("SELECT 1 FROM job_items WHERE job_id = ? AND seq = ?", (job_id, seq))
            if known.fetchone() is None:
                raise InvalidInput(f"job {job_id} has no item {seq}")

    def release_running_items(self, job_id: str) -> int:
        """Running items back to pending (pause, restart); returns how many."""
        with self._transaction() as db:
            _require_job(db, job_id)
            return _release(db, (job_id,))

    def recover_after_restart(self, *, auto_resume: bool) -> list[str]:
        """After a process start: jobs left running go back to queued (`auto_resume`) or to
        interrupted, and their running items to pending. Returns those jobs' ids.

        Items left running by a job in any other state (a crash between pausing the job and
        releasing its items) are released too: after a restart nothing can be running."""
        state, message = (
            (JobState.QUEUED, REQUEUED_MESSAGE)
            if auto_resume
            else (JobState.INTERRUPTED, INTERRUPTED_MESSAGE)
        )
        with self._transaction() as db:
            running = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM jobs WHERE state = ? ORDER BY created_at, id", (JobState.RUNNING.value,)
                )
            ]
            stranded = [
                row[0] for row in db.execute("SELECT DISTINCT job_id FROM job_items WHERE state = 'running'")
            ]
            _release(db, stranded)
            db.executemany(
                "UPDATE jobs SET state = ?, message = ?, updated_at = ? WHERE id = ?",
                ((state.value, message, time.time(), job_id) for job_id in running),
            )
        return running

    def results(self, job_id: str, *, page_size: int = 100, page_token: str = "") -> ResultPage:
        """Finished items (done and failed) in seq order."""
        _check_page_size(page_size)
        (after,) = _decode_token(page_token, int) if page_token else (0,)
        with self._transaction(write=False) as db:
            _require_job(db, job_id)
            rows = db.execute(
                f"SELECT {_ITEM_COLUMNS} FROM job_items WHERE job_id = ? AND seq > ? "
                f"AND state IN ({placeholders(_FINISHED_ITEMS)}) ORDER BY seq LIMIT ?",
                (job_id, after, *_FINISHED_ITEMS, page_size + 1),
            ).fetchall()
        items = [_item(row) for row in rows[:page_size]]
        return ResultPage(items, _encode_token(items[-1].seq) if len(rows) > page_size else "")

    def counts_by_kind_and_state(self) -> dict[tuple[str, str], int]:
        """How many jobs of each kind are in each state (one GROUP BY, for the metrics)."""
        with self._transaction(write=False) as db:
            rows = db.execute("SELECT kind, state, COUNT(*) FROM jobs GROUP BY kind, state").fetchall()
        return {(str(kind), str(state)): int(count) for kind, state, count in rows}

    def errors_by_kind(self, job_id: str) -> dict[str, int]:
        """Failed items counted by error kind (the error's class name)."""
        with self._transaction(write=False) as db:
            _require_job(db, job_id)
            rows = db.execute(
                "SELECT error_kind, COUNT(*) FROM job_items WHERE job_id = ? AND state = 'failed' "
                "GROUP BY error_kind ORDER BY error_kind",
                (job_id,),
            ).fetchall()
        return {str(kind): int(count) for kind, count in rows}

    # Events

    def append_event(self, job_id: str, level: str, message: str) -> JobEvent:
        """Appends an event and drops the job's oldest beyond `max_events_per_job`."""
        now = time.time()
        with self._transaction() as db:
            _require_job(db, job_id)
            (seq,) = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM job_events WHERE job_id = ?", (job_id,)
            ).fetchone()
            db.execute(
                "INSERT INTO job_events (job_id, seq, at, level, message) VALUES (?, ?, ?, ?, ?)",
                (job_id, seq, now, clean_text(level), clean_text(message)),
            )
            db.execute(
                "DELETE FROM job_events WHERE job_id = ? AND seq <= ?",
                (job_id, seq - self.max_events_per_job),
            )
        return JobEvent(job_id, int(seq), now, clean_text(level), clean_text(message))

    def events(self, job_id: str, *, after_seq: int = 0) -> list[JobEvent]:
        """The job's kept events with seq > `after_seq`, oldest first."""
        with self._transaction(write=False) as db:
            _require_job(db, job_id)
            rows = db.execute(
                "SELECT job_id, seq, at, level, message FROM job_events WHERE job_id = ? AND seq > ? "
                "ORDER BY seq",
                (job_id, after_seq),
            ).fetchall()
        return [JobEvent(str(j), int(s), float(a), str(lv), str(m)) for j, s, a, lv, m in rows]


# Rows ↔ records


def _require_job(db: sqlite3.Connection, job_id: str) -> None:
    if db.execute("SELECT 1 FROM jobs WHERE id = ?", (job_id,)).fetchone() is None:
        raise JobNotFound(f"no job with id {job_id!r}")


def _load_job(db: sqlite3.Connection, job_id: str) -> Job:
    row = db.execute(f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        raise JobNotFound(f"no job with id {job_id!r}")
    return _job(row)


def _job(row: tuple[Any, ...]) -> Job:
    job_id, kind, params, state, created, started, finished, updated, message, error, summary = row[:11]
    done, failed, total, unit, listing_complete = row[11:]
    progress = Progress(done, failed, total, unit, bool(listing_complete))
    return Job(
        job_id, kind, json.loads(params), JobState(state), created, started, finished, updated,
        progress, message, error, json.loads(summary),
    )  # fmt: skip


def _item(row: tuple[Any, ...]) -> ItemRecord:
    job_id, seq, item, state, error, error_kind, result, result_key, finished_at = row
    return ItemRecord(
        job_id, seq, decode_name(item), ItemState(state), error, error_kind,
        None if result is None else json.loads(result), result_key, finished_at,
    )  # fmt: skip


def _insert_items(db: sqlite3.Connection, job_id: str, items: Sequence[str | bytes]) -> int:
    """Appends the items the job does not have yet, numbering them on from its last seq (read
    from the primary key per row, so skipped items leave no gap); returns how many were new."""
    before = db.total_changes
    db.executemany(
        "INSERT OR IGNORE INTO job_items (job_id, seq, item, state) "
        "SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, 'pending' FROM job_items WHERE job_id = ?1",
        ((job_id, item) for item in items),
    )
    added = db.total_changes - before
    if added:
        db.execute(
            "UPDATE jobs SET total = total + ?, updated_at = ? WHERE id = ?", (added, time.time(), job_id)
        )
    return added


def _finish(
    db: sqlite3.Connection,
    job_id: str,
    seq: int,
    result: str | None,
    result_key: str,
    error: str,
    error_kind: str,
) -> bool:
    """Item `seq` done (no error) or failed, with the job's counters; False (and nothing changed)
    when there is no such open item."""
    failed = bool(error)
    now = time.time()
    state = (ItemState.FAILED if failed else ItemState.DONE).value
    kind = error_kind or ("Error" if failed else "")
    changed = db.execute(
        "UPDATE job_items SET state = ?, error = ?, error_kind = ?, result = ?, result_key = ?, "
        "finished_at = ? WHERE job_id = ? AND seq = ? AND state IN ('pending', 'running')",
        (state, clean_text(error), clean_text(kind), result, result_key, now, job_id, seq),
    ).rowcount
    if changed:
        db.execute(
            "UPDATE jobs SET done = done + 1, failed = failed + ?, updated_at = ? WHERE id = ?",
            (int(failed), now, job_id),
        )
    return bool(changed)


def _release(db: sqlite3.Connection, job_ids: Sequence[str]) -> int:
    if not job_ids:
        return 0
    return db.execute(
        f"UPDATE job_items SET state = 'pending' WHERE state = 'running' AND job_id IN ({placeholders(job_ids)})",
        tuple(job_ids),
    ).rowcount


def _job_state(state: JobState | str) -> JobState:
    try:
        return JobState(state)
    except ValueError:
        raise InvalidInput(f"unknown job state {state!r}; one of {', '.join(JobState)}") from None


# Paging


def _check_page_size(page_size: int) -> None:
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidInput(f"page_size must be between 1 and {MAX_PAGE_SIZE}, not {page_size}")


def _encode_token(*key: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def _decode_token(token: str, *types: type) -> list[Any]:
    """The sort key `_encode_token` wrote, if `token` holds one of `types` (json keeps a float a
    float: 2.0 is written "2.0")."""
    try:
        key = json.loads(base64.urlsafe_b64decode(token))
        if isinstance(key, list) and [type(value) for value in key] == list(types):
            return key
    except (ValueError, binascii.Error):
        pass
    raise InvalidInput("page_token is not one this server handed out; start again without it")
