"""Frames of a scene at chosen times (evenly spaced between 5 % and 95 % of the duration), for face
identification. Blocking (PyAV): run it in a thread.

Targets are visited in order. Where the next target is farther ahead than the keyframe spacing, the
reader seeks to the keyframe before it (decoding through would cost more); otherwise it decodes on.
It never goes back. Each target takes the first frame at or after it (within half a frame), so the
reported time is the frame's own. Only taken frames are converted to pixels."""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import av.error
import numpy as np

from stash_vision.server.arrays import BgrImage
from stash_vision.server.media.video import VideoInfo, upright_bgr

# Decoding through is cheaper than a seek unless the gap exceeds the keyframe spacing; unknown
# spacing (no index) is assumed to be this.
_DEFAULT_KEYFRAME_SPACING_S = 2.0
_MAX_CONSECUTIVE_ERRORS = 50


def evenly_spaced(duration_s: float, count: int, start_fraction: float, end_fraction: float) -> list[float]:
    if count <= 0 or duration_s <= 0:
        return []
    start, end = duration_s * start_fraction, duration_s * end_fraction
    if count == 1:
        return [(start + end) / 2.0]
    return [float(t) for t in np.linspace(start, end, count)]


@dataclass(frozen=True)
class SceneFrame:
    index: int
    time_s: float
    image: BgrImage


@dataclass
class FrameReport:
    requested: int
    # Distinct frames handed out.
    decoded: int = 0
    # Targets that got a frame (a sparse stream serves several targets with one frame).
    served: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def partial(self) -> bool:
        return self.served < self.requested


def read_frames(
    path: Path | str,
    info: VideoInfo,
    times: list[float],
    report: FrameReport,
    *,
    options: dict[str, str] | None = None,
) -> Generator[SceneFrame, None, None]:
    """Yields one frame per target time that the file can give; `report` says how many it could.
    `path` may be an HTTP URL (a stream only Stash can read), with FFmpeg `options` such as
    `headers` (CRLF-terminated header lines, e.g. the ApiKey); seeking then uses HTTP Range."""
    spacing = info.keyframe_interval_s or _DEFAULT_KEYFRAME_SPACING_S
    half_frame = 0.5 / info.fps if info.fps > 0 else 0.02
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore", options=options or {})
    except (av.error.FFmpegError, OSError) as error:
        report.errors.append(f"cannot open {path}: {error}")
        return
    with container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        frames: Iterator[av.VideoFrame] | None = None
        last_time = -1.0
        # The last frame taken, so a sparse stream (fewer frames than targets) serves several
        # targets with one frame instead of running ahead of them.
        held: tuple[float, av.VideoFrame] | None = None
        used = False
        for index, target in enumerate(times):
            if held is not None and held[0] >= target - half_frame:
                report.served += 1
                if not used:
                    used = True
                    report.decoded += 1
                    yield SceneFrame(index, held[0], upright_bgr(held[1]))
                continue
            if frames is None or target - last_time > spacing:
                frames = _in_time_order(_decode_from(container, stream, target, report))
            held = None
            for candidate in frames:
                t = candidate.time if candidate.time is not None else last_time + half_frame * 2
                last_time = t
                if t >= target - half_frame:
                    held, used = (t, candidate), False
                    break
            if held is None:
                # The stream ended (or broke) before this target: later targets cannot be reached either.
                frames = iter(())
                continue
            report.decoded += 1
            report.served += 1
            used = True
            yield SceneFrame(index, held[0], upright_bgr(held[1]))


def _in_time_order(frames: Iterator[av.VideoFrame], depth: int = 4) -> Iterator[av.VideoFrame]:
    """Some files (AVI with packed B-frames, odd MP4 edits) hand frames out slightly out of
    presentation order; a few frames of look-ahead put them back in order."""
    buffer: list[tuple[float, int, av.VideoFrame]] = []
    for counter, frame in enumerate(frames):
        key = frame.time if frame.time is not None else (buffer[-1][0] if buffer else 0.0)
        buffer.append((key, counter, frame))
        if len(buffer) > depth:
            buffer.sort(key=lambda item: (item[0], item[1]))
            yield buffer.pop(0)[2]
    buffer.sort(key=lambda item: (item[0], item[1]))
    for _, _, frame in buffer:
        yield frame


def _decode_from(
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    target: float,
    report: FrameReport,
) -> Iterator[av.VideoFrame]:
    if target > 0 and stream.time_base is not None:
        try:
            container.seek(int(target / stream.time_base), stream=stream, backward=True, any_frame=False)
        except av.error.FFmpegError as error:
            report.errors.append(f"seek to {target:.2f}s failed: {error}")
    return _frames(container, stream, report)


def _frames(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream, report: FrameReport
) -> Iterator[av.VideoFrame]:
    errors = 0
    demuxer = container.demux(stream)
    while True:
        try:
            packet = next(demuxer)
        except StopIteration:
            return
        except av.error.FFmpegError as error:
            report.errors.append(f"demuxing failed: {error}")
            return
        try:
            decoded = packet.decode()
            errors = 0
        except av.error.FFmpegError as error:
            errors += 1
            if errors >= _MAX_CONSECUTIVE_ERRORS:
                report.errors.append(f"decoding failed {errors} times in a row: {error}")
                return
            continue
        yield from decoded
