"""Stash ids as media for face identification (the Stash Sense plugin sends only ids).

An image resolves to its file when the path Stash reports is readable here (after
STASH_VISION_PATH_MAPPINGS; zip members too), else to its bytes downloaded from Stash with the key.
A scene resolves to its file, else to its stream URL with the key (PyAV over HTTP, seeking with
Range), with what Stash reports of it standing in for a probe; its screenshot is an optional cover
frame. A gallery's images are all listed, a page at a time, and at most `max_images` of them,
chosen evenly, identified: a gallery of thousands still answers inside the plugin's 300 s."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from stash_vision.server.connections.errors import (
    SourceBadContent,
    SourceError,
    SourceNotConfigured,
    SourceNotFound,
    SourceUnreachable,
)
from stash_vision.server.connections.stash import Remote, StashConnection, StashImage, StashScene
from stash_vision.server.errors import InvalidInput
from stash_vision.server.image_source import ImageBytes, ImagePath, ImageRef
from stash_vision.server.media.video import VideoInfo, probe

log = logging.getLogger("stash_vision.server")

_URL_SETTING = "STASH_VISION_STASH_URL"
# A stalled stream must not hold a decode thread for ever (the original waits 30 s per frame).
_STREAM_READ_TIMEOUT_US = str(30_000_000)


@dataclass(frozen=True)
class StashImageRef:
    """An image of the user's Stash by its id; `known` when a listing already gave its record (a
    gallery), so it is not looked up again."""

    id: str
    known: StashImage | None = None


FaceImageRef = ImageRef | StashImageRef


@dataclass(frozen=True)
class SceneVideo:
    """Where a Stash scene's frames are read from: a file here, or a stream with FFmpeg `options`
    (the ApiKey header, a read timeout)."""

    scene_id: str
    source: Path | str
    info: VideoInfo
    options: dict[str, str] = field(default_factory=dict)
    screenshot_url: str | None = None

    @property
    def streamed(self) -> bool:
        return isinstance(self.source, str)

    @property
    def label(self) -> str:
        if isinstance(self.source, Path):
            return f"Stash scene {self.scene_id} ({self.source})"
        return f"Stash scene {self.scene_id} (streamed from {_without_query(self.source)})"

    def redact(self, text: str) -> str:
        """`text` without the stream URL's query (Stash puts the API key there)."""
        if isinstance(self.source, Path):
            return text
        return text.replace(self.source, _without_query(self.source))


@dataclass(frozen=True)
class StashGallery:
    gallery_id: str
    total: int
    chosen: list[StashImage]


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


def evenly_chosen(total: int, count: int) -> list[int]:
    """`count` indexes of `total` spread evenly from the first (all of them when count >= total)."""
    if count >= total:
        return list(range(total))
    return [i * total // count for i in range(count)]


def stream_info(scene: StashScene) -> VideoInfo:
    """What the frame reader needs of a stream only Stash can read, from what Stash reports (no
    probing over the network): the duration and frame rate; keyframe spacing unknown."""
    return VideoInfo(
        duration_s=scene.duration or 0.0,
        fps=scene.frame_rate or 0.0,
        frame_count_estimate=0,
        width=scene.width or 0,
        height=0,
        codec="",
        keyframe_interval_s=None,
        has_b_frames=False,
        container_format="",
        header_frames=0,
        timestamps_reliable=False,
        indexed=False,
    )


def stream_options(remote: Remote) -> dict[str, str]:
    """FFmpeg options for a stream only Stash can read: its headers (the key) as CRLF-terminated
    lines, and a read timeout."""
    headers = "".join(f"{name}: {value}\r\n" for name, value in remote.headers.items())
    return {"headers": headers, "rw_timeout": _STREAM_READ_TIMEOUT_US}


@contextmanager
def _url_hint() -> Iterator[None]:
    """An unreachable Stash names the setting that points at it."""
    try:
        yield
    except SourceUnreachable as error:
        if _URL_SETTING in str(error):
            raise
        raise SourceUnreachable(error.source, f"{error} ({_URL_SETTING})") from error


class StashMedia:
    def __init__(self, connection: StashConnection | None) -> None:
        self._stash = connection

    async def aclose(self) -> None:
        """Closes the connection's HTTP client (server shutdown)."""
        if self._stash is not None:
            await self._stash.aclose()

    @property
    def connection(self) -> StashConnection:
        if self._stash is None:
            raise SourceNotConfigured(
                "Stash",
                f"no Stash is configured: set {_URL_SETTING} (and STASH_VISION_STASH_API_KEY when "
                "Stash asks for a key) to identify Stash scenes, images and galleries by id",
            )
        return self._stash

    async def image(self, ref: StashImageRef) -> ImageRef:
        connection = self.connection
        with _url_hint():
            image = ref.known or await connection.find_image(ref.id)
            if connection.local(image.path) is not None:
                # The loader applies the same path mappings and library roots.
                return ImagePath(image.path or "")
            if not image.url:
                raise SourceNotFound(
                    connection.name, f"image {image.id} of {connection.name} has no readable file and no URL"
                )
            return ImageBytes(await connection.fetch_bytes(image.url))

    async def scene(self, scene_id: str) -> SceneVideo:
        connection = self.connection
        with _url_hint():
            scene = await connection.find_scene(scene_id)
            if scene.path is None:
                raise SourceNotFound(connection.name, f"scene {scene_id} of {connection.name} has no file")
            where = connection.locate_scene(scene)
        if isinstance(where, Path):
            info = await asyncio.to_thread(probe, where)
            return SceneVideo(scene.id, where, info, screenshot_url=scene.screenshot_url)
        if not scene.duration:
            raise InvalidInput(
                f"{connection.name} reports no duration for scene {scene_id}, and its file "
                f"{scene.path} is not readable here (STASH_VISION_PATH_MAPPINGS); run a scan in Stash"
            )
        return SceneVideo(
            scene.id, where.url, stream_info(scene), stream_options(where), scene.screenshot_url
        )

    async def screenshot(self, video: SceneVideo) -> ImageRef | None:
        """The scene's screenshot as a cover frame; a failure is only logged (as the original)."""
        if not video.screenshot_url:
            return None
        try:
            return ImageBytes(await self.connection.fetch_bytes(video.screenshot_url))
        except SourceError as error:
            log.warning("%s: screenshot not used as a cover frame: %s", video.label, error)
            return None

    def stream_failed(self, label: str, errors: list[str]) -> SourceError:
        """No frame of a streamed scene could be read (and no screenshot stood in); `errors` are
        the reader's, already redacted."""
        reason = errors[0] if errors else "the stream gave no frame"
        return SourceUnreachable(
            self.connection.name,
            f"no frame of {label} could be read: {reason}; check that Stash can play the "
            f"scene, or make its file readable here (STASH_VISION_PATH_MAPPINGS)",
        )

    async def gallery(self, gallery_id: str, max_images: int) -> StashGallery:
        connection = self.connection
        with _url_hint():
            await connection.gallery_image_count(gallery_id)  # SourceNotFound for an unknown id
            images = [image async for image in connection.gallery_images(gallery_id)]
        chosen = [images[i] for i in evenly_chosen(len(images), max_images)]
        return StashGallery(gallery_id, len(images), chosen)


def is_image_problem(error: Exception) -> bool:
    """Errors that spoil one image of a gallery, not the whole request (Stash itself answers)."""
    return isinstance(error, SourceNotFound | SourceBadContent)
