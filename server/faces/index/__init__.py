"""Face index: Voyager HNSW indices per embedder plus performer metadata, in Stash Sense's layout.

Pure domain code (numpy, voyager, sqlite3, json): build with `IndexWriter`, publish with `publish`,
load and search with `FaceIndex`."""

from __future__ import annotations

from .defaults import DEFAULT_EF_CONSTRUCTION, DEFAULT_M, DEFAULT_QUERY_EF
from .errors import (
    ChecksumMismatchError,
    FaceIndexError,
    IndexBuildError,
    IndexCorruptError,
    IndexFileMissingError,
    IndexIncompatibleError,
    IndexNotFoundError,
    IndexQueryError,
    RecipeMismatchError,
)
from .manifest import IndexManifest, VoyagerParams, read_manifest
from .records import PerformerRecord
from .store import FaceIndex
from .writer import IndexWriter, current_index_folder, publish

__all__ = [
    "DEFAULT_EF_CONSTRUCTION",
    "DEFAULT_M",
    "DEFAULT_QUERY_EF",
    "ChecksumMismatchError",
    "FaceIndex",
    "FaceIndexError",
    "IndexBuildError",
    "IndexCorruptError",
    "IndexFileMissingError",
    "IndexIncompatibleError",
    "IndexManifest",
    "IndexNotFoundError",
    "IndexQueryError",
    "IndexWriter",
    "PerformerRecord",
    "RecipeMismatchError",
    "VoyagerParams",
    "current_index_folder",
    "publish",
    "read_manifest",
]
