"""A stash-box endpoint (StashDB, FansDB, PMVStash, JAVStash, any stash-box) as a face source: its
performers, a page at a time within the endpoint's request budget, each with up to `max_images`
of its images at a configured size (stash-box scales them). Deleted and merged performers are
left out. Universal ids are `<domain>:<uuid>`, the same a user's Stash links performers with."""

from __future__ import annotations

from collections.abc import AsyncIterator

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

    async def aclose(self) -> None:
        await self.connection.aclose()

    async def performers(self) -> AsyncIterator[SourcePerformer]:
        async for performer in self.connection.performers_updated_since(None):
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
