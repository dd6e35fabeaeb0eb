"""A stash-box endpoint (StashDB, FansDB, PMVStash, JAVStash, any stash-box) as a face source: its
performers, a page at a time within the endpoint's request budget, each with up to `max_images`
of its images at a configured size (stash-box scales them). Deleted and merged performers are
left out. Universal ids are `<domain>:<uuid>`, the same a user's Stash links performers with.

Incremental builds (server/faces/enrolment/incremental.py) set `since` to the parent version's
watermark, so the walk stops at the first performer not updated after it; the source notes the
newest `updated` it saw (the next watermark) and every performer it met, deleted and merged ones
included (the build drops those from what it carries over)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

from stash_vision.server.connections.stashbox import BoxImage, BoxPerformer, StashBoxConnection
from stash_vision.server.faces.index.records import PerformerRecord

from .base import SourceImage, SourcePerformer


class StashBoxSource:
    kind = "stash-box"

    def __init__(self, connection: StashBoxConnection, *, size: str, max_images: int, max_bytes: int) -> None:
        self.connection = connection
        self.size = size
        self.max_images = max_images
        self.max_bytes = max_bytes
        self.name = f"stash-box:{connection.name}"
        self.since: datetime | None = None  # only performers updated after this (None: all)
        self.newest: datetime | None = None  # the newest `updated` the walk saw
        self.changed: set[str] = set()  # universal ids the walk met, deleted and merged included

    def settings(self) -> dict[str, Any]:
        """What the faces of a performer depend on: a parent version built otherwise is no base."""
        return {"endpoint": self.connection.config.endpoint, "size": self.size, "max_images": self.max_images}

    async def aclose(self) -> None:
        await self.connection.aclose()

    async def performers(self) -> AsyncIterator[SourcePerformer]:
        async for performer in self.connection.performers_updated_since(self.since):
            self.changed.add(performer.universal_id)
            if self.newest is None or performer.updated > self.newest:
                self.newest = performer.updated
            if performer.deleted or performer.merged_into_id or not performer.images:
                continue
            images = [self._image(image) for image in performer.images[: self.max_images]]
            yield SourcePerformer(_record(performer, self.connection.config.endpoint), images)

    def _image(self, image: BoxImage) -> SourceImage:
        async def read() -> bytes:
            return await self.connection.fetch_image(image, self.size, max_bytes=self.max_bytes)

        return SourceImage(self.connection.image_url(image, self.size), read)


def _record(performer: BoxPerformer, endpoint: str) -> PerformerRecord:
    return PerformerRecord(
        id=performer.universal_id,
        name=performer.name,
        aliases=tuple(performer.aliases),
        stash_ids=((endpoint, performer.id),),
        country=performer.country or "",
        image_url=performer.images[0].url if performer.images else "",
        face_count=0,
    )
