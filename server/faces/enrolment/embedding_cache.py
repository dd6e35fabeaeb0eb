"""Faces already embedded, by image content and profile recipe: a rebuild with unchanged inputs
runs no inference, and only new or changed images reach Triton.

Keyed by the SHA-256 of the image bytes (not the path or URL: a stash-box image moves between URLs,
a renamed file is the same photo) and by a hash of the profile's recipe plus its enrolment gates
(another detector, embedder or gate is another answer). Values are the faces as the result store
keeps them (`stored_faces.encode`, vectors bit for bit).

Its own SQLite file, `$DATA/embedding_cache/embeddings.db`, not the LRU result store: a build may
need every entry at once, and losing entries to eviction would make a rebuild slow again. It is a
cache all the same: storage problems are raised as StorageUnavailable, and a caller that cannot
read it embeds again."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

from stash_vision.server.faces.pipeline import EmbeddedFace
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.faces.stored_faces import decode, encode
from stash_vision.server.jobs.schema import storage_errors

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embeddings (
    content_hash TEXT NOT NULL,
    recipe_hash TEXT NOT NULL,
    faces TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (content_hash, recipe_hash)
) WITHOUT ROWID
"""


def content_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def recipe_hash(profile: FaceProfile) -> str:
    recipe = {"recipe": profile.recipe(), "enrollment": profile.enrollment.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class EmbeddingCache:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        with storage_errors(path):
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=5.0)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)

    def get(self, content: str, recipe: str) -> list[EmbeddedFace] | None:
        with self._lock, storage_errors(self.path):
            row = self._db.execute(
                "SELECT faces FROM embeddings WHERE content_hash = ? AND recipe_hash = ?", (content, recipe)
            ).fetchone()
        return decode(json.loads(row[0])) if row else None

    def put(self, content: str, recipe: str, faces: list[EmbeddedFace]) -> None:
        text = json.dumps(encode(faces), separators=(",", ":"))
        with self._lock, storage_errors(self.path):
            self._db.execute(
                "INSERT OR REPLACE INTO embeddings (content_hash, recipe_hash, faces, created_at) VALUES (?, ?, ?, ?)",
                (content, recipe, text, time.time()),
            )

    def count(self) -> int:
        with self._lock, storage_errors(self.path):
            return int(self._db.execute("SELECT count(*) FROM embeddings").fetchone()[0])

    def close(self) -> None:
        with self._lock, storage_errors(self.path):
            self._db.close()
