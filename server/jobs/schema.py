"""`jobs.db`: its schema, its migrations, opening it, and what its errors mean to a person.

One SQLite file in the data directory holds the jobs, their items and events, and the result store
(DESIGN.md, "Data directory"). `JobStore` and `ResultStore` each open their own connection through
`Database`, so whichever opens first migrates, and the other finds the work done.

Why it is built this way:

- WAL journal: the runner writes an item at a time while transports read pages of results; in WAL
  readers never block the writer nor the writer them. `synchronous=NORMAL` is durable across a
  process crash; a power cut may undo the last commits, which only makes their items run again.
- Autocommit connection (`isolation_level=None`) with explicit `BEGIN IMMEDIATE` for every write:
  Python's implicit transactions start late and upgrade read locks to write locks, which is where
  "database is locked" errors come from. `BEGIN IMMEDIATE` takes the write lock up front and waits
  for it under `busy_timeout`.
- The schema version is `PRAGMA user_version`; `MIGRATIONS[n]` takes version n to n + 1 in one
  transaction, which re-reads the version after taking the write lock (two stores opening at once
  migrate once). Migrations are lists of statements, not scripts: `executescript` would commit
  the migration's transaction half-way on Python 3.11.
- A file from a newer stash-vision is refused rather than opened: old code must not write rows
  in a layout it does not know.
- Every sqlite3 (and file system) error becomes `StorageUnavailable` naming the file and what to
  do, so no raw sqlite3 exception reaches a transport.
"""

from __future__ import annotations

import contextlib
import errno
import json
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from ..errors import InvalidInput, StorageUnavailable

DEFAULT_BUSY_TIMEOUT_S = 5.0

_V1_JOBS: tuple[str, ...] = (
    """CREATE TABLE jobs (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        params TEXT NOT NULL DEFAULT '{}',
        state TEXT NOT NULL,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        updated_at REAL NOT NULL,
        message TEXT NOT NULL DEFAULT '',
        error TEXT NOT NULL DEFAULT '',
        summary TEXT NOT NULL DEFAULT '{}',
        done INTEGER NOT NULL DEFAULT 0,
        failed INTEGER NOT NULL DEFAULT 0,
        total INTEGER NOT NULL DEFAULT 0,
        unit TEXT NOT NULL DEFAULT 'items',
        listing_complete INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX jobs_by_created ON jobs (created_at DESC, id DESC)",
    "CREATE INDEX jobs_by_state ON jobs (state)",
    """CREATE TABLE job_items (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        item TEXT NOT NULL,
        state TEXT NOT NULL,
        error TEXT NOT NULL DEFAULT '',
        error_kind TEXT NOT NULL DEFAULT '',
        result TEXT,
        result_key TEXT NOT NULL DEFAULT '',
        finished_at REAL,
        PRIMARY KEY (job_id, seq),
        UNIQUE (job_id, item)
    ) WITHOUT ROWID""",
    "CREATE INDEX job_items_by_state ON job_items (job_id, state, seq)",
    """CREATE TABLE job_events (
        job_id TEXT NOT NULL,
        seq INTEGER NOT NULL,
        at REAL NOT NULL,
        level TEXT NOT NULL,
        message TEXT NOT NULL,
        PRIMARY KEY (job_id, seq)
    ) WITHOUT ROWID""",
)

# The result store. `result_totals` (one row) is kept by triggers so that the size check after
# each put and `stats()` do not sum the whole table.
_V2_RESULTS: tuple[str, ...] = (
    """CREATE TABLE results (
        key TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        value TEXT NOT NULL,
        bytes INTEGER NOT NULL,
        created_at REAL NOT NULL,
        last_used REAL NOT NULL
    )""",
    "CREATE INDEX results_by_last_used ON results (last_used)",
    "CREATE TABLE result_totals (entries INTEGER NOT NULL, bytes INTEGER NOT NULL)",
    "INSERT INTO result_totals (entries, bytes) VALUES (0, 0)",
    """CREATE TRIGGER results_added AFTER INSERT ON results BEGIN
        UPDATE result_totals SET entries = entries + 1, bytes = bytes + NEW.bytes;
    END""",
    """CREATE TRIGGER results_removed AFTER DELETE ON results BEGIN
        UPDATE result_totals SET entries = entries - 1, bytes = bytes - OLD.bytes;
    END""",
    """CREATE TRIGGER results_resized AFTER UPDATE OF bytes ON results BEGIN
        UPDATE result_totals SET bytes = bytes - OLD.bytes + NEW.bytes;
    END""",
)

# MIGRATIONS[n] takes a database at version n to n + 1. Append only; never edit a released one.
MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1_JOBS, _V2_RESULTS)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(connection: sqlite3.Connection, path: Path, *, target: int = SCHEMA_VERSION) -> int:
    """Applies the missing migrations up to `target`, each in its own transaction; returns the
    version the file is at. `target` below the current version exists for tests that build an old
    file."""
    version = _user_version(connection)
    if version > SCHEMA_VERSION:
        raise StorageUnavailable(_too_new(path, version))
    while version < target:
        connection.execute("BEGIN IMMEDIATE")
        try:
            version = _user_version(connection)  # another connection may have migrated meanwhile
            if version < target:
                for statement in MIGRATIONS[version]:
                    connection.execute(statement)
                version += 1
                connection.execute(f"PRAGMA user_version = {version}")
            connection.execute("COMMIT")
        except BaseException:
            _rollback(connection)
            raise
    return version


def _user_version(connection: sqlite3.Connection) -> int:
    return int(connection.execute("PRAGMA user_version").fetchone()[0])


def _too_new(path: Path, version: int) -> str:
    return (
        f"{path} has job-database schema version {version}, but this stash-vision knows versions up "
        f"to {SCHEMA_VERSION}: upgrade stash-vision to a release with job-database schema version "
        f"{version} (the one that wrote the file), or use another data directory"
    )


def connect(
    path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S, target: int = SCHEMA_VERSION
) -> sqlite3.Connection:
    """Opens (creating the folder and file if needed) and migrates `path`. The connection may be
    used from any thread; the caller serialises its use."""
    with storage_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            path, timeout=busy_timeout_s, isolation_level=None, check_same_thread=False
        )
        try:
            connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("PRAGMA synchronous = NORMAL")
            migrate(connection, path, target=target)
        except BaseException:
            connection.close()
            raise
    return connection


# sqlite3 primary result codes (the low byte of `sqlite_errorcode`) → what to tell a person.
_BY_CODE: dict[int, str] = {
    13: "cannot write {path}: the disk is full; free space and retry",  # SQLITE_FULL
    5: (  # SQLITE_BUSY
        "{path} is locked by another process (another stash-vision on the same data directory, or a "
        "tool holding it open); stop it or retry"
    ),
    6: "{path} is locked by another connection; retry",  # SQLITE_LOCKED
    8: "cannot write {path}: the file or its folder is read-only; make both writable by the server",  # SQLITE_READONLY
    14: (  # SQLITE_CANTOPEN
        "cannot open {path}: its folder is missing or not writable; check the data directory and "
        "its permissions"
    ),
    10: "I/O error on {path}: check the disk and the file system",  # SQLITE_IOERR
    11: "{path} is corrupt: move it aside (its jobs and stored results are lost) and restart",  # SQLITE_CORRUPT
    26: "{path} is not a SQLite database: move it aside and restart",  # SQLITE_NOTADB
}
# Older sqlite3 modules (and some errors) carry no code: recognise the message instead.
_BY_TEXT: dict[str, int] = {
    "database or disk is full": 13,
    "database is locked": 5,
    "database table is locked": 6,
    "readonly database": 8,
    "unable to open database file": 14,
    "disk i/o error": 10,
    "malformed": 11,
    "file is not a database": 26,
}
_BY_ERRNO: dict[int, int] = {errno.ENOSPC: 13, errno.EROFS: 8, errno.EACCES: 14, errno.EPERM: 14}


def describe(path: Path, error: sqlite3.Error | OSError) -> str:
    """The actionable message for `error` on the database file `path`."""
    if isinstance(error, OSError):
        code = _BY_ERRNO.get(error.errno or 0, 10)
    else:
        code = (getattr(error, "sqlite_errorcode", None) or 0) & 0xFF
        if code not in _BY_CODE:
            text = str(error).lower()
            code = next((c for needle, c in _BY_TEXT.items() if needle in text), 0)
    if code in _BY_CODE:
        return _BY_CODE[code].format(path=path)
    return f"the job database {path} failed: {error}"


@contextlib.contextmanager
def storage_errors(path: Path) -> Iterator[None]:
    """Turns sqlite3 and file system errors into StorageUnavailable with `describe`'s message."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise StorageUnavailable(describe(path, exc)) from exc


def _rollback(connection: sqlite3.Connection) -> None:
    # After SQLITE_FULL and some I/O errors SQLite has already rolled back: nothing left to undo.
    with contextlib.suppress(sqlite3.Error):
        if connection.in_transaction:
            connection.execute("ROLLBACK")


class Database:
    """One connection to jobs.db shared by threads under a lock: the shape both stores need.

    SQLite serialises writers anyway; one connection per store keeps that in-process and cheap,
    and the lock makes the connection safe to call from the runner's worker thread and others."""

    def __init__(self, path: Path, *, busy_timeout_s: float = DEFAULT_BUSY_TIMEOUT_S) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection = connect(path, busy_timeout_s=busy_timeout_s)

    @contextlib.contextmanager
    def _transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """A transaction under the lock: committed when the block ends, rolled back if it raises.
        Reads use one too, so that a multi-query read sees one snapshot."""
        with self._lock, storage_errors(self.path):
            connection = self._connection
            connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield connection
                connection.execute("COMMIT")
            except BaseException:
                _rollback(connection)
                raise

    def close(self) -> None:
        with self._lock, storage_errors(self.path):
            self._connection.close()


def placeholders(values: Sequence[object]) -> str:
    """`?, ?, ?` for an IN list."""
    return ", ".join("?" * len(values))


def encode_json(value: dict[str, Any], what: str) -> str:
    """`value` as the JSON text both stores keep; InvalidInput names `what` if it is not JSON."""
    try:
        # ensure_ascii: lone surrogates (undecodable file names) survive as \udcxx escapes.
        return json.dumps(value, ensure_ascii=True, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"{what} cannot be stored as JSON: {exc}") from exc


def clean_text(value: str) -> str:
    """Free text (messages, errors) as valid UTF-8: an undecodable file name in it shows as �."""
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def encode_name(name: str) -> str | bytes:
    """A file name as stored: TEXT when it is valid UTF-8, else its raw bytes as a BLOB (SQLite
    text must be UTF-8). The same name always maps to the same value, so UNIQUE still holds."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape")
    return name


def decode_name(stored: str | bytes) -> str:
    return stored.decode("utf-8", "surrogateescape") if isinstance(stored, bytes) else stored
