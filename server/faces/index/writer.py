"""Building a face index folder, and publishing it as `root/current`.

`IndexWriter.write` builds everything in a hidden temporary folder next to the target, writes
manifest.json last, fsyncs, and renames the folder into place: a reader sees either no index or a
whole one. `publish` then swaps the `root/current` symlink to the new version with os.replace, so
a server reloading `current` never sees a half-published index either.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import voyager

from .defaults import DEFAULT_EF_CONSTRUCTION, DEFAULT_M
from .errors import IndexBuildError
from .layout import (
    CURRENT_LINK,
    FACES_FILE,
    MANIFEST_FILE,
    PERFORMERS_DB_FILE,
    PERFORMERS_JSON_FILE,
    check_embedder_name,
    dim_key,
    sha256_file,
    voyager_file,
)
from .manifest import IndexManifest, VoyagerParams, read_manifest
from .recipe import normalise_recipe
from .records import PerformerRecord, check_universal_id

# Stash Sense's performers.db schema (docs/face-recognition-peers.md §1.2), the subset stash-vision
# fills, plus `universal_id` (the faces.json id) and per-face `row`, `detection_score`.
_SCHEMA = """
CREATE TABLE performers (
    id INTEGER PRIMARY KEY,
    universal_id TEXT NOT NULL UNIQUE,
    canonical_name TEXT NOT NULL,
    country TEXT,
    face_count INTEGER NOT NULL DEFAULT 0,
    image_url TEXT,
    created_at TEXT,
    updated_at TEXT
);
CREATE TABLE stashbox_ids (
    performer_id INTEGER NOT NULL REFERENCES performers(id),
    endpoint TEXT NOT NULL,
    stashbox_performer_id TEXT NOT NULL,
    PRIMARY KEY (endpoint, stashbox_performer_id)
);
CREATE TABLE aliases (
    performer_id INTEGER NOT NULL REFERENCES performers(id),
    alias TEXT NOT NULL,
    source_endpoint TEXT,
    UNIQUE (performer_id, alias)
);
"""


@dataclass(frozen=True, slots=True)
class _Face:
    performer_id: str
    source: str
    quality: float
    yaw: float
    detection_score: float
    image_url: str | None


class IndexWriter:
    """Collects performers and faces, then writes a complete index folder with `write`.

    Every face gets one row id, the same in every embedder's Voyager index (ids line up)."""

    def __init__(
        self,
        embedder_dims: Mapping[str, int],
        recipe: Mapping[str, Any],
        M: int = DEFAULT_M,
        ef_construction: int = DEFAULT_EF_CONSTRUCTION,
        *,
        num_threads: int = -1,
        random_seed: int = 1,
    ) -> None:
        if not embedder_dims:
            raise IndexBuildError("an index needs at least one embedder (e.g. {'facenet': 512})")
        dims: dict[str, int] = {}
        for name, dim in embedder_dims.items():
            try:
                check_embedder_name(name)
            except ValueError as exc:
                raise IndexBuildError(str(exc)) from exc
            if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
                raise IndexBuildError(
                    f"dimension of embedder {name!r} must be a positive integer, got {dim!r}"
                )
            dims[name] = dim
        if M < 2 or ef_construction < 1:
            raise IndexBuildError(
                f"need M >= 2 and ef_construction >= 1, got M={M}, ef_construction={ef_construction}"
            )
        try:
            self._recipe = normalise_recipe(recipe)
        except ValueError as exc:
            raise IndexBuildError(f"cannot record the recipe in manifest.json: {exc}") from exc
        self._dims = dims
        self._M = M
        self._ef_construction = ef_construction
        self._num_threads = num_threads
        self._random_seed = random_seed
        self._performers: dict[str, PerformerRecord] = {}
        self._faces: list[_Face] = []
        self._vectors: dict[str, list[npt.NDArray[np.float32]]] = {name: [] for name in dims}
        self._face_counts: dict[str, int] = {}

    @property
    def face_count(self) -> int:
        return len(self._faces)

    @property
    def performer_count(self) -> int:
        return len(self._performers)

    def add_performer(self, record: PerformerRecord) -> None:
        """Register a performer. Its `face_count` is ignored: write() counts the faces added."""
        try:
            check_universal_id(record.id)
        except ValueError as exc:
            raise IndexBuildError(str(exc)) from exc
        if record.id in self._performers:
            raise IndexBuildError(f"performer {record.id!r} was already added")
        if not record.name:
            raise IndexBuildError(f"performer {record.id!r} has no name")
        self._performers[record.id] = record
        self._face_counts[record.id] = 0

    def add_face(
        self,
        performer_id: str,
        vectors: Mapping[str, npt.ArrayLike],
        *,
        source: str,
        quality: float,
        yaw: float,
        detection_score: float,
        image_url: str | None = None,
    ) -> int:
        """Add one face of an already-added performer: one (dim,) vector per embedder. Returns its row."""
        if performer_id not in self._performers:
            raise IndexBuildError(
                f"add_face: performer {performer_id!r} was not added (call add_performer first)"
            )
        if set(vectors) != set(self._dims):
            raise IndexBuildError(
                f"add_face needs exactly one vector per embedder {sorted(self._dims)}, got {sorted(vectors)}"
            )
        checked: dict[str, npt.NDArray[np.float32]] = {}
        for name, dim in self._dims.items():
            vector = np.asarray(vectors[name], dtype=np.float32)
            if vector.shape != (dim,):
                raise IndexBuildError(f"add_face: {name} vector must have shape ({dim},), got {vector.shape}")
            if not np.isfinite(vector).all():
                raise IndexBuildError(f"add_face: {name} vector of {performer_id!r} contains NaN or infinity")
            if not float(np.linalg.norm(vector)) > 0.0:
                raise IndexBuildError(
                    f"add_face: {name} vector of {performer_id!r} is all zeros (no direction)"
                )
            checked[name] = vector.copy()
        for name, vector in checked.items():
            self._vectors[name].append(vector)
        self._faces.append(
            _Face(performer_id, source, float(quality), float(yaw), float(detection_score), image_url)
        )
        self._face_counts[performer_id] += 1
        return len(self._faces) - 1

    # -- writing ------------------------------------------------------------------------------
    def write(self, folder: Path, version: str, sources: list[str], detector: str) -> IndexManifest:
        """Write the whole index to `folder` (which must not exist) atomically; returns the manifest."""
        folder = Path(folder)
        if not version or not isinstance(version, str):
            raise IndexBuildError("an index needs a non-empty version string (e.g. '2026.11.21')")
        if folder.exists() or folder.is_symlink():
            raise IndexBuildError(
                f"{folder} already exists: index folders are never overwritten; write a new version folder "
                "and publish() it"
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
        try:
            os.chmod(staging, 0o755)
            manifest = self._write_files(staging, version, list(sources), detector)
            _fsync_dir(staging)
            try:
                os.rename(staging, folder)
            except OSError as exc:
                raise IndexBuildError(
                    f"cannot move the finished index into place at {folder}: {exc}"
                ) from exc
            _fsync_dir(folder.parent)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return manifest

    def _write_files(self, staging: Path, version: str, sources: list[str], detector: str) -> IndexManifest:
        rows = len(self._faces)
        for name, dim in self._dims.items():
            index = voyager.Index(
                voyager.Space.Cosine,
                num_dimensions=dim,
                M=self._M,
                ef_construction=self._ef_construction,
                random_seed=self._random_seed,
                max_elements=max(rows, 1),
                storage_data_type=voyager.StorageDataType.Float32,
            )
            if rows:
                matrix = np.stack(self._vectors[name]).astype(np.float32, copy=False)
                index.add_items(matrix, ids=list(range(rows)), num_threads=self._num_threads)
            path = staging / voyager_file(name)
            index.save(str(path))
            _fsync_file(path)

        performers = {
            universal_id: replace(record, face_count=self._face_counts[universal_id])
            for universal_id, record in self._performers.items()
        }
        _write_json(staging / FACES_FILE, [face.performer_id for face in self._faces])
        _write_json(
            staging / PERFORMERS_JSON_FILE,
            {universal_id: record.to_json_entry() for universal_id, record in performers.items()},
        )
        now = datetime.now(UTC).isoformat(timespec="seconds")
        self._write_db(staging / PERFORMERS_DB_FILE, performers, now)

        written = sorted(path.name for path in staging.iterdir() if path.is_file())
        manifest = IndexManifest(
            version=version,
            created_at=now,
            performer_count=len(performers),
            face_count=rows,
            sources=sources,
            models={"detector": detector, **{dim_key(name): dim for name, dim in self._dims.items()}},
            checksums={name: sha256_file(staging / name) for name in written},
            recipe=self._recipe,
            voyager=VoyagerParams(
                space="cosine",
                M=self._M,
                ef_construction=self._ef_construction,
                storage="float32",
                embedders=list(self._dims),
            ),
        )
        path = staging / MANIFEST_FILE
        path.write_text(manifest.to_json(), encoding="utf-8")
        _fsync_file(path)
        return manifest

    def _write_db(self, path: Path, performers: Mapping[str, PerformerRecord], now: str) -> None:
        index_columns = "".join(f",\n    {name}_index INTEGER UNIQUE" for name in self._dims)
        faces_table = f"""
CREATE TABLE faces (
    id INTEGER PRIMARY KEY,
    performer_id INTEGER NOT NULL REFERENCES performers(id){index_columns},
    row INTEGER NOT NULL UNIQUE,
    image_url TEXT,
    source_endpoint TEXT,
    quality_score REAL,
    yaw REAL,
    detection_score REAL,
    pruned INTEGER NOT NULL DEFAULT 0,
    created_at TEXT
);
CREATE INDEX faces_performer ON faces(performer_id);
"""
        connection = sqlite3.connect(path)
        try:
            connection.executescript(_SCHEMA + faces_table)
            keys: dict[str, int] = {}
            for key, (universal_id, record) in enumerate(performers.items(), start=1):
                keys[universal_id] = key
                connection.execute(
                    "INSERT INTO performers (id, universal_id, canonical_name, country, face_count, image_url, "
                    "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        key,
                        universal_id,
                        record.name,
                        record.country,
                        record.face_count,
                        record.image_url,
                        now,
                        now,
                    ),
                )
                connection.executemany(
                    "INSERT OR IGNORE INTO stashbox_ids (performer_id, endpoint, stashbox_performer_id) VALUES (?, ?, ?)",
                    [(key, endpoint, stash_id) for endpoint, stash_id in record.stash_ids],
                )
                connection.executemany(
                    "INSERT OR IGNORE INTO aliases (performer_id, alias, source_endpoint) VALUES (?, ?, NULL)",
                    [(key, alias) for alias in record.aliases],
                )
            index_names = "".join(f", {name}_index" for name in self._dims)
            placeholders = ", ?" * len(self._dims)
            connection.executemany(
                f"INSERT INTO faces (id, performer_id{index_names}, row, image_url, source_endpoint, quality_score, "
                f"yaw, detection_score, created_at) VALUES (?, ?{placeholders}, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        row,
                        keys[face.performer_id],
                        *([row] * len(self._dims)),
                        row,
                        face.image_url,
                        face.source,
                        face.quality,
                        face.yaw,
                        face.detection_score,
                        now,
                    )
                    for row, face in enumerate(self._faces)
                ],
            )
            connection.commit()
        finally:
            connection.close()
        _fsync_file(path)


# -- publishing ---------------------------------------------------------------------------------
def publish(root: Path, version_folder: Path, *, link_name: str = CURRENT_LINK) -> None:
    """Point `root/current` (or `root/<link_name>`) at `version_folder` atomically (a new symlink
    renamed over the old one).

    The target is stored relative to `root` when the version folder is inside it, so the whole root
    can be moved or mounted elsewhere. Refuses a folder without manifest.json (not a finished index)."""
    root = Path(root)
    version_folder = Path(version_folder)
    read_manifest(version_folder)  # IndexNotFoundError / IndexCorruptError for an unfinished index
    root.mkdir(parents=True, exist_ok=True)
    link = root / link_name
    if (link.exists() or link.is_symlink()) and not link.is_symlink():
        raise IndexBuildError(
            f"{link} is a real file or folder, not a symlink: move it aside before publishing"
        )
    resolved_root = root.resolve()
    resolved_target = version_folder.resolve()
    if resolved_target.is_relative_to(resolved_root):
        target = os.path.relpath(resolved_target, resolved_root)
    else:
        target = str(resolved_target)
    temporary = root / f".{link_name}.{uuid.uuid4().hex}.tmp"
    os.symlink(target, temporary, target_is_directory=True)
    try:
        os.replace(temporary, link)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise IndexBuildError(f"cannot point {link} at {version_folder}: {exc}") from exc
    _fsync_dir(root)


def current_index_folder(root: Path) -> Path | None:
    """The version folder `root/current` points at (resolved, so it stays put if `current` is swapped
    later), or None if there is no `current` or it points at nothing."""
    link = Path(root) / CURRENT_LINK
    if not link.exists():
        return None
    return link.resolve()


# -- file helpers -------------------------------------------------------------------------------
def _write_json(path: Path, data: Any) -> None:
    with path.open("w", encoding="utf-8") as stream:
        json.dump(data, stream, ensure_ascii=False, separators=(",", ":"))
        stream.flush()
        os.fsync(stream.fileno())


def _fsync_file(path: Path) -> None:
    with path.open("rb") as stream:
        os.fsync(stream.fileno())


def _fsync_dir(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
