"""The checks `FaceIndex.load` runs on an index folder before anything is searched: the manifest's
recipe and Voyager parameters against the profile's, every listed checksum, faces.json and
performers.json, performers.db's tables, and each embedder's Voyager file (space, storage,
dimension, rows 0..N-1). Each step raises a `FaceIndexError` subclass whose message says what is
wrong and how to fix it (usually: rebuild the index).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import voyager

from .errors import (
    REBUILD_HINT,
    ChecksumMismatchError,
    IndexCorruptError,
    IndexFileMissingError,
    IndexIncompatibleError,
    RecipeMismatchError,
)
from .layout import FACES_FILE, PERFORMERS_DB_FILE, PERFORMERS_JSON_FILE, sha256_file, voyager_file
from .manifest import IndexManifest, VoyagerParams
from .recipe import normalise_recipe, recipe_differences
from .records import PerformerRecord

# Tables of Stash Sense's performers.db that an index must have (the subset stash-vision writes).
REQUIRED_TABLES = frozenset({"performers", "stashbox_ids", "faces", "aliases"})


@dataclass(frozen=True, slots=True)
class LoadedEmbedder:
    """One embedder's Voyager index, loaded and checked."""

    name: str
    dim: int
    index: Any  # voyager.Index, or None for an empty index (Voyager cannot load an empty index file)


def check_compatible(
    folder: Path,
    manifest: IndexManifest,
    embedders: Sequence[str],
    wanted_recipe: dict[str, Any],
    profile_name: str,
) -> VoyagerParams:
    rebuild = f"{REBUILD_HINT} for {profile_name}"
    if manifest.recipe is None:
        raise IndexIncompatibleError(
            f"the index at {folder} (version {manifest.version}) lacks a recipe: its manifest.json has no "
            "'recipe' block, so nothing says how its faces were detected, aligned and normalised. It was not "
            f"built by stash-vision (a Stash Sense release?); {rebuild}"
        )
    if manifest.voyager is None:
        raise IndexIncompatibleError(
            f"the index at {folder} (version {manifest.version}) has no 'voyager' block in manifest.json "
            f"(space, M, ef_construction, embedders); {rebuild}"
        )
    built_recipe = normalise_recipe(manifest.recipe)
    differences = recipe_differences(built_recipe, wanted_recipe)
    if differences:
        keys = tuple(key for key, _ in differences)
        raise RecipeMismatchError(
            f"the index at {folder} (version {manifest.version}) was built with a different preprocessing "
            f"recipe than {profile_name}; differing keys: {'; '.join(text for _, text in differences)}. "
            f"Its vectors cannot be compared with this profile's embeddings: {rebuild}",
            differing_keys=keys,
        )
    params = manifest.voyager
    missing = [name for name in embedders if name not in params.embedders]
    if missing:
        raise IndexIncompatibleError(
            f"the index at {folder} has no Voyager index for embedder(s) {missing} (it holds "
            f"{params.embedders}); {rebuild}"
        )
    no_dim = [name for name in embedders if manifest.dim(name) is None]
    if no_dim:
        raise IndexCorruptError(
            f"manifest.json of {folder} gives no dimension for embedder(s) {no_dim} "
            f"(models.<embedder>_dim); {REBUILD_HINT}"
        )
    return params


def verify_checksums(folder: Path, manifest: IndexManifest, embedders: Sequence[str]) -> None:
    required = [voyager_file(name) for name in embedders] + [
        FACES_FILE,
        PERFORMERS_JSON_FILE,
        PERFORMERS_DB_FILE,
    ]
    for name in required:
        if not (folder / name).is_file():
            raise IndexFileMissingError(
                f"{folder / name} is missing: the index is incomplete; re-download it or {REBUILD_HINT}"
            )
        if name not in manifest.checksums:
            raise IndexCorruptError(
                f"manifest.json of {folder} lists no checksum for {name}, so it cannot be verified; {REBUILD_HINT}"
            )
    for name, expected in manifest.checksums.items():
        path = folder / name
        if not path.is_file():
            raise IndexFileMissingError(
                f"{path} is missing (manifest.json lists it): the index is incomplete; re-download it or {REBUILD_HINT}"
            )
        try:
            actual = sha256_file(path)
        except OSError as exc:
            raise IndexCorruptError(f"cannot read {path}: {exc}") from exc
        if actual != expected:
            raise ChecksumMismatchError(
                f"checksum mismatch for {name} in {folder}: manifest.json says {expected}, the file has {actual}. "
                f"The file was modified or damaged; re-download the index or {REBUILD_HINT}",
                file=name,
            )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(f"{path} is not readable JSON ({exc}); {REBUILD_HINT}") from exc


def read_faces(path: Path) -> list[str | None]:
    data = _read_json(path)
    if not isinstance(data, list):
        raise IndexCorruptError(
            f"{path} must hold a JSON array (row -> performer id or null), found {type(data).__name__}"
        )
    for row, item in enumerate(data):
        if item is not None and not isinstance(item, str):
            raise IndexCorruptError(f"{path} row {row} is {item!r}: expected a performer id string or null")
    return data


def read_performers(path: Path) -> dict[str, PerformerRecord]:
    data = _read_json(path)
    if not isinstance(data, dict):
        raise IndexCorruptError(
            f"{path} must hold a JSON object (performer id -> metadata), found {type(data).__name__}"
        )
    performers: dict[str, PerformerRecord] = {}
    for universal_id, entry in data.items():
        if not isinstance(entry, dict):
            raise IndexCorruptError(f"{path}: entry {universal_id!r} is not a JSON object")
        try:
            performers[universal_id] = PerformerRecord.from_json_entry(universal_id, entry)
        except ValueError as exc:
            raise IndexCorruptError(f"{path}: entry {universal_id!r}: {exc}") from exc
    return performers


def check_performers_db(path: Path) -> None:
    try:
        connection = sqlite3.connect(path.resolve().as_uri() + "?mode=ro", uri=True)
        try:
            names = {
                row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            }
        finally:
            connection.close()
    except sqlite3.Error as exc:
        raise IndexCorruptError(f"{path} is not a readable SQLite database ({exc}); {REBUILD_HINT}") from exc
    missing = sorted(REQUIRED_TABLES - names)
    if missing:
        raise IndexCorruptError(f"{path} lacks table(s) {missing}; {REBUILD_HINT}")


def load_embedder(folder: Path, name: str, manifest: IndexManifest, params: VoyagerParams) -> LoadedEmbedder:
    path = folder / voyager_file(name)
    dim = manifest.dim(name)
    assert dim is not None  # checked by check_compatible
    if manifest.face_count == 0:
        # Voyager writes an empty index that it cannot load back ("entry point ... 4294967295"):
        # the file's checksum was verified; there is nothing to search.
        return LoadedEmbedder(name, dim, None)
    try:
        index = voyager.Index.load(str(path))
    except (RuntimeError, ValueError, OSError) as exc:
        raise IndexCorruptError(f"{path} is not a loadable Voyager index ({exc}); {REBUILD_HINT}") from exc
    if index.space != voyager.Space.Cosine or index.storage_data_type != voyager.StorageDataType.Float32:
        raise IndexIncompatibleError(
            f"{path} uses space {index.space} with {index.storage_data_type} storage; stash-vision expects "
            f"Cosine with Float32 (manifest says {params.space}/{params.storage}); {REBUILD_HINT}"
        )
    if index.num_dimensions != dim:
        raise IndexCorruptError(
            f"{path} holds {index.num_dimensions}-d vectors but manifest.json says {name}_dim={dim}; {REBUILD_HINT}"
        )
    rows = int(index.num_elements)
    if len(index) != rows:
        raise IndexCorruptError(f"{path} has deleted rows; stash-vision indices never delete; {REBUILD_HINT}")
    if rows:
        ids = np.fromiter(index.ids, dtype=np.int64, count=rows)
        if int(ids.min()) != 0 or int(ids.max()) != rows - 1:
            raise IndexCorruptError(
                f"{path} row ids are not 0..{rows - 1}, so they cannot line up with faces.json; {REBUILD_HINT}"
            )
    return LoadedEmbedder(name, dim, index)
