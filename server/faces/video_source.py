"""Where a scene's frames come from, for face identification: a server-side path (probed here),
or a scene of the user's Stash read from its file or its stream (stash_media); and its cover
frame: the one the caller gave, else a Stash scene's screenshot."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import cv2

from stash_vision.server.arrays import BgrImage
from stash_vision.server.errors import InvalidInput
from stash_vision.server.faces.results import VideoRequest
from stash_vision.server.faces.stash_media import FaceImageRef, StashMedia
from stash_vision.server.image_source import ImageRef
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.media.video import VideoInfo, probe
from stash_vision.server.workers import CpuPool


@dataclass(frozen=True)
class VideoSource:
    source: Path | str  # a file here, or a stream URL read with FFmpeg `options`
    info: VideoInfo
    label: str  # names the video in messages (never with the API key)
    cover: ImageRef | None
    options: dict[str, str] | None = None
    redact: Callable[[str], str] = str  # a reader's error text, safe to show

    @property
    def streamed(self) -> bool:
        return isinstance(self.source, str)


async def open_video(
    request: VideoRequest,
    paths: MediaPaths,
    pool: CpuPool,
    stash: StashMedia,
    resolve: Callable[[FaceImageRef], Awaitable[ImageRef]],
) -> VideoSource:
    if bool(request.path) == bool(request.stash_scene_id):
        raise InvalidInput("give exactly one of path (a server-side video) and stash_scene_id")
    cover = await resolve(request.cover) if request.cover is not None else None
    if request.path:
        path = paths.resolve(request.path)
        return VideoSource(path, await pool.run(probe, path), request.path, cover)
    video = await stash.scene(request.stash_scene_id)
    if cover is None:
        cover = await stash.screenshot(video)
    return VideoSource(video.source, video.info, video.label, cover, video.options, video.redact)


def cover_at_video_width(cover: BgrImage, video_width: int) -> BgrImage:
    """Stash Sense's rule for the screenshot: one narrower than 80 % of the video is upscaled to
    the video's width, so its faces are as large as in the frames (and pass the same size gate).
    Blocking (run in the CPU pool)."""
    height, width = cover.shape[:2]
    if video_width <= 0 or width <= 0 or width >= 0.8 * video_width:
        return cover
    size = (video_width, max(1, round(height * video_width / width)))
    return cast(BgrImage, cv2.resize(cover, size, interpolation=cv2.INTER_LINEAR))
