"""The user's own Stash: its status for /health, and ids resolved to media.

A scene resolves to its file when the path Stash reports (after STASH_VISION_PATH_MAPPINGS) is
readable here — the cheap case, no bytes through Stash — and otherwise to Stash's stream URL with
the key, so a stash-vision on another machine still works. Images likewise (zip members as
`archive.zip/inner/path`, which the media layer reads). Lists (performers, a gallery's images)
are paged so a library of any size never sits in one answer."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from PIL import Image as PILImage

from stash_vision.server.connections.errors import (
    SourceBadContent,
    SourceNotFound,
)
from stash_vision.server.connections.graphql import GraphQLClient
from stash_vision.server.connections.status import SourceStatus as StashStatus
from stash_vision.server.connections.status import probe
from stash_vision.server.errors import AccessDenied, InvalidInput, MediaNotFound
from stash_vision.server.media.paths import MediaLocation, MediaPaths

_SCENE_FIELDS = """id files { path duration width height frame_rate } paths { stream screenshot }
  performers { id name stash_ids { endpoint stash_id } }"""
_SCENE = f"query Scene($id: ID!) {{ findScene(id: $id) {{ {_SCENE_FIELDS} }} }}"
_SCENES = f"""query Scenes($scene_filter: SceneFilterType, $filter: FindFilterType) {{
  findScenes(scene_filter: $scene_filter, filter: $filter) {{ count scenes {{ {_SCENE_FIELDS} }} }} }}"""
_IMAGE_FIELDS = """id visual_files { ... on ImageFile { path width height zip_file { path } } }
  paths { image } performers { id }"""
_IMAGE = f"query Image($id: ID!) {{ findImage(id: $id) {{ {_IMAGE_FIELDS} }} }}"
_IMAGES = f"""query Images($image_filter: ImageFilterType, $filter: FindFilterType) {{
  findImages(image_filter: $image_filter, filter: $filter) {{ count images {{ {_IMAGE_FIELDS} }} }} }}"""
_GALLERY = "query Gallery($id: ID!) { findGallery(id: $id) { id image_count } }"
_PERFORMERS = """query Performers($filter: FindFilterType) { findPerformers(filter: $filter) {
  count performers { id name disambiguation alias_list image_path stash_ids { endpoint stash_id } } } }"""


def endpoint_domain(endpoint: str) -> str:
    """`https://stashdb.org/graphql` → `stashdb.org`: the prefix of universal performer ids."""
    return (urlsplit(endpoint).hostname or endpoint).lower()


@dataclass(frozen=True)
class Remote:
    """Media only Stash can read: GET `url` with `headers` (HTTP Range works for streams)."""

    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class StashPerformer:
    id: str
    name: str
    disambiguation: str | None
    aliases: list[str]
    image_url: str | None  # None when Stash has no image (it would answer a placeholder)
    stash_ids: list[tuple[str, str]]  # (endpoint, stash_id)

    @property
    def universal_ids(self) -> list[str]:
        """`<domain>:<uuid>` per stash-box id, else `stash:<id>`: the same person found through
        StashDB and through this Stash gets one identity."""
        ids = [f"{endpoint_domain(e)}:{s}" for e, s in self.stash_ids]
        return ids or [f"stash:{self.id}"]


@dataclass(frozen=True)
class StashImage:
    id: str
    path: str | None  # as Stash sees it; zip members as `archive.zip/member`
    url: str | None
    performer_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StashScene:
    id: str
    path: str | None
    duration: float | None
    stream_url: str | None
    performers: list[StashPerformer]
    frame_rate: float | None = None
    screenshot_url: str | None = None
    width: int | None = None


def _scene(raw: dict[str, Any]) -> StashScene:
    files = raw.get("files") or []
    return StashScene(
        id=str(raw["id"]),
        path=files[0]["path"] if files else None,
        duration=files[0].get("duration") if files else None,
        stream_url=(raw.get("paths") or {}).get("stream"),
        performers=[_performer(p) for p in raw.get("performers") or []],
        frame_rate=files[0].get("frame_rate") if files else None,
        screenshot_url=(raw.get("paths") or {}).get("screenshot"),
        width=files[0].get("width") if files else None,
    )


def _image(raw: dict[str, Any]) -> StashImage:
    files = [f for f in raw.get("visual_files") or [] if f and "path" in f]
    return StashImage(
        id=str(raw["id"]),
        path=files[0]["path"] if files else None,
        url=(raw.get("paths") or {}).get("image"),
        performer_ids=[str(p["id"]) for p in raw.get("performers") or []],
    )


def _performer(raw: dict[str, Any]) -> StashPerformer:
    image = raw.get("image_path")
    return StashPerformer(
        id=str(raw["id"]),
        name=raw.get("name") or "",
        disambiguation=raw.get("disambiguation"),
        aliases=list(raw.get("alias_list") or []),
        image_url=None if not image or "default=true" in image else image,
        stash_ids=[(s["endpoint"], s["stash_id"]) for s in raw.get("stash_ids") or []],
    )


def _solo(performer_id: str) -> dict[str, Any]:
    """The filter for what this performer is the only one tagged in (scenes or images)."""
    return {
        "performers": {"value": [performer_id], "modifier": "INCLUDES"},
        "performer_count": {"value": 1, "modifier": "EQUALS"},
    }


class StashConnection:
    def __init__(
        self,
        url: str,
        api_key: str | None,
        media_paths: MediaPaths,
        *,
        timeout_s: float = 10.0,
        retries: int = 3,
        page_size: int = 100,
        client: GraphQLClient | None = None,
    ) -> None:
        self.base = url.rstrip("/")
        self.name = f"Stash at {self.base}"
        self.paths = media_paths
        self.page_size = page_size
        self.client = client or GraphQLClient(
            self.name,
            f"{self.base}/graphql",
            api_key,
            key_hint="STASH_VISION_STASH_API_KEY",
            timeout_s=timeout_s,
            retries=retries,
        )

    @classmethod
    def from_settings(cls, settings: Any, **options: Any) -> StashConnection | None:
        """None when STASH_VISION_STASH_URL is unset."""
        if not settings.stash_url:
            return None
        paths = MediaPaths(settings.library_roots, settings.path_mappings)
        return cls(settings.stash_url, settings.stash_api_key, paths, **options)

    async def aclose(self) -> None:
        await self.client.aclose()

    async def status(self) -> StashStatus:
        """Reachable, its version, and whether the key works."""
        return await probe(self.client)

    async def find_scene(self, scene_id: str) -> StashScene:
        data = await self.client.execute(_SCENE, {"id": scene_id})
        raw = data.get("findScene")
        if raw is None:
            raise SourceNotFound(self.name, f"{self.name} has no scene {scene_id}")
        return _scene(raw)

    async def solo_scenes(self, performer_id: str) -> AsyncIterator[StashScene]:
        """Scenes where this performer is the only one tagged, a page at a time: every face in
        them is theirs (a face-index source takes a few frames of each)."""
        variables = {"scene_filter": _solo(performer_id)}
        async for raw in self._paged(_SCENES, variables, "findScenes", "scenes"):
            yield _scene(raw)

    async def find_image(self, image_id: str) -> StashImage:
        data = await self.client.execute(_IMAGE, {"id": image_id})
        raw = data.get("findImage")
        if raw is None:
            raise SourceNotFound(self.name, f"{self.name} has no image {image_id}")
        return _image(raw)

    async def _images(self, image_filter: dict[str, Any]) -> AsyncIterator[StashImage]:
        async for raw in self._paged(_IMAGES, {"image_filter": image_filter}, "findImages", "images"):
            yield _image(raw)

    async def _paged(
        self, query: str, variables: dict[str, Any], field: str, items: str
    ) -> AsyncIterator[dict[str, Any]]:
        """Every item of a `find…` list, a page at a time (sorted by id so pages do not overlap)."""
        page = 1
        while True:
            flt = {"page": page, "per_page": self.page_size, "sort": "id", "direction": "ASC"}
            result = (await self.client.execute(query, {**variables, "filter": flt}))[field]
            for raw in result[items]:
                yield raw
            if page * self.page_size >= result["count"] or not result[items]:
                return
            page += 1

    async def gallery_image_count(self, gallery_id: str) -> int:
        """The number of images in the gallery; SourceNotFound when Stash has no such gallery."""
        data = await self.client.execute(_GALLERY, {"id": gallery_id})
        raw = data.get("findGallery")
        if raw is None:
            raise SourceNotFound(self.name, f"{self.name} has no gallery {gallery_id}")
        return int(raw.get("image_count") or 0)

    def gallery_images(self, gallery_id: str) -> AsyncIterator[StashImage]:
        return self._images({"galleries": {"value": [gallery_id], "modifier": "INCLUDES"}})

    def solo_images(self, performer_id: str) -> AsyncIterator[StashImage]:
        """Images where this performer is the only one tagged: every face in them is theirs."""
        return self._images(_solo(performer_id))

    async def performers(self) -> AsyncIterator[StashPerformer]:
        """Every performer, a page at a time."""
        async for raw in self._paged(_PERFORMERS, {}, "findPerformers", "performers"):
            yield _performer(raw)

    def local(self, path: str | None) -> MediaLocation | None:
        """The file here, when the path (after mappings) is readable; None to go through Stash."""
        if not path:
            return None
        try:
            return self.paths.locate(path)
        except (MediaNotFound, AccessDenied, InvalidInput, PermissionError):
            return None

    async def resolve_scene(self, scene_id: str) -> Path | Remote:
        return self.locate_scene(await self.find_scene(scene_id))

    def locate_scene(self, scene: StashScene) -> Path | Remote:
        """The scene's file here when readable, else its stream with the key."""
        scene_id = scene.id
        local = self.local(scene.path)
        if local is not None and local.member is None:
            return local.path
        if not scene.stream_url:
            raise SourceNotFound(self.name, f"scene {scene_id} of {self.name} has no file and no stream")
        self.client.check_url(scene.stream_url)  # FFmpeg opens it: only Stash's own URLs
        return Remote(scene.stream_url, self.client.headers_for(scene.stream_url))

    async def resolve_image(self, image_id: str) -> MediaLocation | Remote:
        image = await self.find_image(image_id)
        local = self.local(image.path)
        if local is not None:
            return local
        if not image.url:
            raise SourceNotFound(self.name, f"image {image_id} of {self.name} has no file and no URL")
        self.client.check_url(image.url)
        return Remote(image.url, self.client.headers_for(image.url))

    async def fetch_bytes(
        self, url: str, *, max_bytes: int = 64 * 1024 * 1024, max_pixels: int = 100_000_000
    ) -> bytes:
        """An image's bytes, refused when too large, not an image, or undecodable (checked from the
        header, in a thread, before anything decodes the pixels)."""
        response = await self.client.download(url, max_bytes=max_bytes)
        return await asyncio.to_thread(
            check_image,
            self.name,
            url,
            response.content,
            response.headers.get("content-type", ""),
            max_pixels,
        )


def check_image(source: str, url: str, content: bytes, content_type: str, max_pixels: int) -> bytes:
    kind = content_type.split(";")[0].strip().lower()
    if kind and not kind.startswith("image/") and kind != "application/octet-stream":
        raise SourceBadContent(source, f"{url} from {source} is not an image ({kind})")
    try:
        with PILImage.open(io.BytesIO(content)) as image:
            width, height = image.size
            image.verify()
    except Exception as error:
        raise SourceBadContent(source, f"{url} from {source} is not a readable image ({error})") from error
    if width * height > max_pixels:
        raise SourceBadContent(source, f"{url} from {source} has {width}x{height} pixels, above {max_pixels}")
    return content
