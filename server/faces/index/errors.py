"""Errors raised by the face index. Every failure is a `FaceIndexError`, with a message a user can act on."""

from __future__ import annotations

REBUILD_HINT = "rebuild the index with `stash-vision index build`"


class FaceIndexError(Exception):
    """Base class: the face index cannot be loaded, written or queried."""


class IndexNotFoundError(FaceIndexError):
    """The index folder, or its manifest.json, does not exist."""


class IndexFileMissingError(FaceIndexError):
    """A file the index needs (a .voy, faces.json, ...) is not in the folder."""


class IndexCorruptError(FaceIndexError):
    """A file is unreadable or inconsistent with the others (bad JSON, row counts that disagree, ...)."""


class ChecksumMismatchError(IndexCorruptError):
    """A file's sha256 differs from the one manifest.json lists for it."""

    def __init__(self, message: str, *, file: str) -> None:
        super().__init__(message)
        self.file = file


class IndexIncompatibleError(FaceIndexError):
    """The index is intact but was not built for this server or face profile (no recipe, other embedders)."""


class RecipeMismatchError(IndexIncompatibleError):
    """The preprocessing recipe the index was built with differs from the face profile's recipe."""

    def __init__(self, message: str, *, differing_keys: tuple[str, ...]) -> None:
        super().__init__(message)
        self.differing_keys = differing_keys


class IndexBuildError(FaceIndexError):
    """IndexWriter was given inconsistent input, or the index could not be written or published."""


class IndexQueryError(FaceIndexError, ValueError):
    """A query's vectors or parameters do not fit the index (unknown embedder, wrong shape, k < 1, ...)."""
