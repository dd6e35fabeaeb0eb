"""Frames of a performer's solo scenes (the only performer tagged: every face in them is theirs) as
face-source images, for performers with few photos but many scenes.

A scene gives a few evenly spaced frames (5 % to 95 % of its duration), read with the reader scene
identification uses (server/faces/scene_frames.py) from the file when it is readable here, else
from Stash's stream with the key (PyAV over HTTP with Range). The frames of one scene are read in
one pass, in a worker thread, the first time the build asks for any of them; the others wait on
that read instead of opening the video again.

Each frame is handed over JPEG-encoded, because the build identifies an image by the hash of its
bytes (its embedding cache): the same file decodes to the same pixels and libjpeg encodes them to
the same bytes, so a rebuild answers these frames from the cache too. A frame's key names the scene
and the target time (known before reading), so it is stable across builds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import cv2

from stash_vision.server.connections.errors import SourceBadContent
from stash_vision.server.connections.stash import Remote, StashConnection, StashScene
from stash_vision.server.faces.scene_frames import FrameReport, evenly_spaced, read_frames
from stash_vision.server.faces.stash_media import stream_info, stream_options
from stash_vision.server.media.video import probe

from .base import SourceImage

_START, _END = 0.05, 0.95
_JPEG_QUALITY = 95


def scene_images(connection: StashConnection, scene: StashScene, count: int) -> list[SourceImage]:
    """`count` frame images of the scene (none when Stash knows no duration for it)."""
    times = evenly_spaced(scene.duration or 0.0, count, _START, _END)
    if not times:
        return []
    frames = _SceneFrames(connection, scene, times)
    return [SourceImage(f"stash scene {scene.id} at {t:.2f}s", frames.reader(i)) for i, t in enumerate(times)]


class _SceneFrames:
    """The encoded frames of one scene, read once on first demand."""

    def __init__(self, connection: StashConnection, scene: StashScene, times: list[float]) -> None:
        self.connection = connection
        self.scene = scene
        self.times = times
        self._read: asyncio.Task[dict[int, bytes]] | None = None

    def reader(self, index: int) -> Callable[[], Awaitable[bytes]]:
        async def read() -> bytes:
            if self._read is None:
                self._read = asyncio.ensure_future(self._read_all())
            frames = await asyncio.shield(self._read)
            if index not in frames:
                raise SourceBadContent(
                    self.connection.name,
                    f"scene {self.scene.id} of {self.connection.name} gave no frame at {self.times[index]:.2f}s",
                )
            return frames[index]

        return read

    async def _read_all(self) -> dict[int, bytes]:
        where = self.connection.locate_scene(self.scene)  # SourceNotFound: no file and no stream
        return await asyncio.to_thread(_read_encoded, where, self.scene, self.times)


def _read_encoded(where: Path | Remote, scene: StashScene, times: list[float]) -> dict[int, bytes]:
    """Blocking: frame index -> JPEG bytes, for every target the video could give."""
    report = FrameReport(requested=len(times))
    if isinstance(where, Path):
        info = probe(where)
        frames = read_frames(where, info, times, report)
    else:
        frames = read_frames(where.url, stream_info(scene), times, report, options=stream_options(where))
    encoded: dict[int, bytes] = {}
    for frame in frames:
        ok, data = cv2.imencode(".jpg", frame.image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
        if ok:
            encoded[frame.index] = data.tobytes()
    if not encoded and report.errors:
        raise SourceBadContent("stash", f"scene {scene.id}: {'; '.join(report.errors[:3])}")
    return encoded
