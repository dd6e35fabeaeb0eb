"""Loading and querying a face index folder (layout: see `layout`; the checks loading runs: see
`loading`).

Thread-safety: a loaded `FaceIndex` is immutable and `query` may be called from many threads at
once. Each call passes its own `query_ef` to Voyager and never sets the shared `Index.ef`; the
underlying hnswlib search only reads the graph (its visited-list pool is mutex-guarded), so
concurrent searches are safe. Voyager 2.2's Python binding holds the GIL for the whole of `query`
(we pass num_threads=1, so it starts no threads of its own): concurrent calls are serialised, not
parallel. A single-face search takes about a millisecond at 100k rows (docs/benchmarks-voyager.md),
so this costs little next to detection and embedding.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
import voyager

from .errors import (
    REBUILD_HINT,
    FaceIndexError,
    IndexCorruptError,
    IndexIncompatibleError,
    IndexNotFoundError,
    IndexQueryError,
)
from .layout import (
    FACES_FILE,
    PERFORMERS_DB_FILE,
    PERFORMERS_JSON_FILE,
    check_embedder_name,
    voyager_file,
)
from .loading import (
    LoadedEmbedder,
    check_compatible,
    check_performers_db,
    load_embedder,
    read_faces,
    read_performers,
    verify_checksums,
)
from .manifest import IndexManifest, read_manifest
from .recipe import normalise_recipe
from .records import PerformerRecord

RowIds = npt.NDArray[np.int64]
Distances = npt.NDArray[np.float32]


class FaceIndex:
    """A loaded, verified face index: one Voyager index per embedder, rows lined up across them."""

    def __init__(
        self,
        folder: Path,
        manifest: IndexManifest,
        embedders: Sequence[LoadedEmbedder],
        rows: int,
        faces: Sequence[str | None],
        performers: Mapping[str, PerformerRecord],
    ) -> None:
        self._folder = folder
        self._manifest = manifest
        self._embedders = {embedder.name: embedder for embedder in embedders}
        self._rows = rows
        self._faces = tuple(faces)
        self._performers = MappingProxyType(dict(performers))

    # -- loading ------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        folder: Path,
        embedders: Sequence[str],
        recipe: Mapping[str, Any],
        *,
        profile: str | None = None,
    ) -> FaceIndex:
        """Load and verify the index in `folder` for the given embedders and preprocessing recipe.

        Verifies every checksum manifest.json lists (sha256, streamed), that the recipe the index was
        built with equals `recipe` exactly, that each embedder's .voy exists with the manifest's
        dimension and that all hold the same rows 0..N-1, and that faces.json covers every row.
        `profile` names the face profile in error messages (default: the recipe's "profile" key).
        Raises a `FaceIndexError` subclass."""
        folder = Path(folder)
        if profile is None and isinstance(recipe, Mapping) and isinstance(recipe.get("profile"), str):
            profile = recipe["profile"]
        profile_name = f"profile {profile}" if profile else "this face profile"
        if not folder.exists():
            raise IndexNotFoundError(
                f"face index folder {folder} does not exist: build one with `stash-vision index build`"
                f" for {profile_name}, or point the server at an existing index folder"
            )
        if not folder.is_dir():
            raise IndexNotFoundError(f"face index path {folder} is not a folder")
        if isinstance(embedders, str) or not embedders:
            raise IndexQueryError(
                "load() needs a non-empty sequence of embedder names, e.g. ['facenet', 'arcface']"
            )
        for name in embedders:
            try:
                check_embedder_name(name)
            except ValueError as exc:
                raise IndexQueryError(str(exc)) from exc
        if len(set(embedders)) != len(embedders):
            raise IndexQueryError(f"embedder names repeat: {list(embedders)}")
        try:
            wanted_recipe = normalise_recipe(recipe)
        except ValueError as exc:
            raise IndexIncompatibleError(f"the recipe of {profile_name} cannot be compared: {exc}") from exc

        manifest = read_manifest(folder)
        params = check_compatible(folder, manifest, embedders, wanted_recipe, profile_name)
        verify_checksums(folder, manifest, embedders)
        faces = read_faces(folder / FACES_FILE)
        performers = read_performers(folder / PERFORMERS_JSON_FILE)
        check_performers_db(folder / PERFORMERS_DB_FILE)

        loaded = [load_embedder(folder, name, manifest, params) for name in embedders]
        rows = manifest.face_count
        for embedder in loaded:
            if embedder.index is not None and embedder.index.num_elements != rows:
                raise IndexCorruptError(
                    f"{folder / voyager_file(embedder.name)} holds {embedder.index.num_elements} rows but "
                    f"manifest.json says face_count={rows}: the files come from different builds; {REBUILD_HINT}"
                )
        if len(faces) < rows:
            raise IndexCorruptError(
                f"{folder / FACES_FILE} maps {len(faces)} rows but the Voyager indices hold {rows}: "
                f"rows past the end would have no performer; {REBUILD_HINT}"
            )
        for row, universal_id in enumerate(faces):
            if universal_id is not None and universal_id not in performers:
                raise IndexCorruptError(
                    f"{folder / FACES_FILE} row {row} names performer {universal_id!r}, which "
                    f"{PERFORMERS_JSON_FILE} does not list; {REBUILD_HINT}"
                )
        if manifest.performer_count != len(performers):
            raise IndexCorruptError(
                f"manifest.json says performer_count={manifest.performer_count} but {PERFORMERS_JSON_FILE} "
                f"lists {len(performers)}: the files come from different builds; {REBUILD_HINT}"
            )
        return cls(folder, manifest, loaded, rows, faces, performers)

    # -- properties ---------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        return self._folder

    @property
    def manifest(self) -> IndexManifest:
        return self._manifest

    @property
    def version(self) -> str:
        return self._manifest.version

    @property
    def face_count(self) -> int:
        """Rows in every Voyager index (faces.json may name fewer performers: null rows are gaps)."""
        return self._rows

    @property
    def performer_count(self) -> int:
        return len(self._performers)

    @property
    def embedders(self) -> tuple[str, ...]:
        """The embedders loaded (in the order given to `load`)."""
        return tuple(self._embedders)

    @property
    def dims(self) -> Mapping[str, int]:
        return MappingProxyType({name: embedder.dim for name, embedder in self._embedders.items()})

    # -- lookups ------------------------------------------------------------------------------
    def performer(self, universal_id: str) -> PerformerRecord | None:
        return self._performers.get(universal_id)

    def performer_of_row(self, row: int) -> PerformerRecord | None:
        """The performer a Voyager row belongs to; None for a null row (a gap) or one out of range."""
        row = int(row)
        if row < 0 or row >= len(self._faces):
            return None
        universal_id = self._faces[row]
        return None if universal_id is None else self._performers.get(universal_id)

    def vectors(self, rows: Sequence[int]) -> dict[str, npt.NDArray[np.float32]]:
        """The stored vectors of `rows`, per embedder, as (n, dim) arrays: L2-normalised, as Voyager
        keeps them for cosine (what a build carries over unchanged from this version)."""
        wanted = [int(row) for row in rows]
        if any(row < 0 or row >= self._rows for row in wanted):
            raise IndexQueryError(f"rows must lie in 0..{self._rows - 1}")
        return {
            name: np.asarray(embedder.index.get_vectors(wanted), dtype=np.float32).reshape(
                len(wanted), embedder.dim
            )
            if wanted
            else np.empty((0, embedder.dim), dtype=np.float32)
            for name, embedder in self._embedders.items()
        }

    # -- search -------------------------------------------------------------------------------
    def query(
        self, vectors: Mapping[str, npt.ArrayLike], k: int, query_ef: int
    ) -> dict[str, tuple[RowIds, Distances]]:
        """k nearest rows per query vector, per embedder.

        `vectors[name]` is an (n, dim) float32 array for any subset of the loaded embedders. Returns
        `{name: (rows (n, k'), distances (n, k'))}` with k' = min(k, face_count), nearest first. The
        distance is Voyager's cosine distance 1 - cos, clamped to [0, 2] (vectors need not be
        normalised; Voyager normalises them). The search explores max(query_ef, k') candidates. An empty index
        gives (n, 0) arrays."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise IndexQueryError(f"k must be a positive integer, got {k!r}")
        if isinstance(query_ef, bool) or not isinstance(query_ef, int | np.integer) or query_ef < 1:
            raise IndexQueryError(f"query_ef must be a positive integer, got {query_ef!r}")
        unknown = sorted(set(vectors) - set(self._embedders))
        if unknown:
            raise IndexQueryError(
                f"no Voyager index loaded for embedder(s) {unknown}; this index was loaded for {list(self._embedders)}"
            )
        kept = min(int(k), self._rows)
        ef = max(int(query_ef), kept)
        results: dict[str, tuple[RowIds, Distances]] = {}
        for name, array in vectors.items():
            embedder = self._embedders[name]
            queries = _as_queries(name, array, embedder.dim)
            if kept == 0 or queries.shape[0] == 0:
                results[name] = (
                    np.empty((queries.shape[0], kept), dtype=np.int64),
                    np.empty((queries.shape[0], kept), dtype=np.float32),
                )
                continue
            results[name] = _search(embedder, queries, kept, ef)
        return results

    def __repr__(self) -> str:
        return (
            f"<FaceIndex {self._folder} version={self.version!r} faces={self._rows} "
            f"performers={self.performer_count} embedders={list(self._embedders)}>"
        )


# -- search -------------------------------------------------------------------------------------
def _as_queries(name: str, array: npt.ArrayLike, dim: int) -> npt.NDArray[np.float32]:
    try:
        queries = np.ascontiguousarray(array, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise IndexQueryError(f"query vectors for {name} are not numeric: {exc}") from exc
    if queries.ndim != 2 or queries.shape[1] != dim:
        raise IndexQueryError(f"query vectors for {name} must have shape (n, {dim}), got {queries.shape}")
    if not np.isfinite(queries).all():
        raise IndexQueryError(f"query vectors for {name} contain NaN or infinity")
    return queries


def _search(
    embedder: LoadedEmbedder, queries: npt.NDArray[np.float32], k: int, ef: int
) -> tuple[RowIds, Distances]:
    index = embedder.index
    try:
        ids, distances = index.query(queries, k=k, num_threads=1, query_ef=ef)
    except voyager.RecallError:
        # HNSW found fewer than k reachable rows: search wider once before giving up.
        try:
            ids, distances = index.query(queries, k=k, num_threads=1, query_ef=max(4 * ef, 4 * k))
        except voyager.RecallError as exc:
            raise FaceIndexError(
                f"Voyager found fewer than {k} neighbours in the {embedder.name} index even at query_ef="
                f"{max(4 * ef, 4 * k)} ({exc}); the index graph may be damaged: {REBUILD_HINT}"
            ) from exc
    # Rounding makes an exact match come back as about -2e-7 even with Float32 storage (E4M3 gives
    # down to -0.04): clamp to the range cosine distance has, so 1 - distance stays a valid confidence.
    return np.asarray(ids, dtype=np.int64), np.clip(np.asarray(distances, dtype=np.float32), 0.0, 2.0)
