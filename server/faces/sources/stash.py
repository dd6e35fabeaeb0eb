"""The user's own Stash as a face source: every performer with its profile image and, optionally,
the images where it is the only performer tagged (`findImages` with `performer_count` 1: no co-star
to confuse). An image is read from its file when the path (after path mappings) is readable here,
otherwise downloaded from Stash with the key. The universal id is the performer's first stash-box id
(`stashdb.org:<uuid>`), so it pools with the same person from a stash-box source; `stash:<id>`
otherwise.

With `scene_frames` > 0, a few frames of each scene where the performer is the only one tagged
(`findScenes` with `performer_count` 1, up to `max_scenes` scenes) join its images
(stash_scenes.py); `max_images` bounds the photos, the scenes have their own bound."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

from stash_vision.server.connections.errors import SourceNotFound
from stash_vision.server.connections.stash import StashConnection, StashImage, StashPerformer
from stash_vision.server.faces.index.records import PerformerRecord
from stash_vision.server.media.images import ImageLimits, read_archive_member, read_image_file

from .base import SourceImage, SourcePerformer
from .stash_scenes import scene_images


class StashSource:
    kind = "stash"

    def __init__(
        self,
        connection: StashConnection,
        limits: ImageLimits,
        *,
        solo_images: bool,
        max_images: int,
        scene_frames: int = 0,
        max_scenes: int = 3,
    ) -> None:
        self.connection = connection
        self.limits = limits
        self.solo_images = solo_images
        self.max_images = max_images
        self.scene_frames = scene_frames
        self.max_scenes = max_scenes
        self.name = f"stash:{connection.name}"

    async def aclose(self) -> None:
        await self.connection.aclose()

    async def performers(self) -> AsyncIterator[SourcePerformer]:
        async for performer in self.connection.performers():
            images = [self._download(performer.image_url)] if performer.image_url else []
            if self.solo_images:
                async for image in self.connection.solo_images(performer.id):
                    if len(images) >= self.max_images:
                        break
                    images.append(self._image(image))
            images = images[: self.max_images]
            if self.scene_frames > 0:
                images.extend(await self._scene_frames(performer.id))
            if images:
                yield SourcePerformer(_record(performer), images)

    async def _scene_frames(self, performer_id: str) -> list[SourceImage]:
        frames: list[SourceImage] = []
        scenes = 0
        async for scene in self.connection.solo_scenes(performer_id):
            if scenes >= self.max_scenes:
                break
            found = scene_images(self.connection, scene, self.scene_frames)
            scenes += bool(found)
            frames.extend(found)
        return frames

    def _download(self, url: str) -> SourceImage:
        async def read() -> bytes:
            return await self.connection.fetch_bytes(url, max_bytes=self.limits.max_file_bytes)

        return SourceImage(url, read)

    def _image(self, image: StashImage) -> SourceImage:
        local = self.connection.local(image.path)
        if local is None:
            if not image.url:
                return SourceImage(f"stash image {image.id}", _missing(image.id))
            return self._download(image.url)

        async def read() -> bytes:
            if local.member is not None:
                return await asyncio.to_thread(read_archive_member, local.path, local.member, self.limits)
            return await asyncio.to_thread(read_image_file, local.path, self.limits)

        return SourceImage(str(local.path) + (f"/{local.member}" if local.member else ""), read)


def _missing(image_id: str) -> Callable[[], Awaitable[bytes]]:
    async def read() -> bytes:
        raise SourceNotFound("stash", f"stash image {image_id} has no file here and no URL")

    return read


def _record(performer: StashPerformer) -> PerformerRecord:
    return PerformerRecord(
        id=performer.universal_ids[0],
        name=performer.name,
        aliases=tuple(performer.aliases),
        stash_ids=tuple(performer.stash_ids),
        image_url=performer.image_url or "",
        face_count=0,
    )
