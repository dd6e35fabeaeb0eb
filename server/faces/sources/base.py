"""What a face source gives a build: performers, each with a universal id and its images, read
lazily (a stash-box source downloads an image only when the build asks for it, and the build asks
only for images its embedding cache does not already answer)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from stash_vision.server.errors import StashVisionError
from stash_vision.server.faces.index.records import PerformerRecord


class SourceError(StashVisionError):
    """A source cannot be read at all (missing folder, unreachable server, wrong key); the message
    names the source and what to do."""


@dataclass(frozen=True)
class SourceImage:
    key: str  # where the image is, for reports: a path or a URL
    read: Callable[[], Awaitable[bytes]]


@dataclass(frozen=True)
class SourcePerformer:
    record: PerformerRecord
    images: Sequence[SourceImage]


class FaceSource(Protocol):
    kind: str  # "folder", "stash", "stash-box", "release"
    name: str  # shown in reports and the index manifest, e.g. "folder:/photos"

    def performers(self) -> AsyncIterator[SourcePerformer]:
        """Every performer with at least one image; SourceError when the source cannot be read."""
        ...

    async def aclose(self) -> None:
        """Closes the source's connections, if any."""
        ...
