"""Video probing: what a file holds before any frame is decoded. `probe` reads the container
header and a bounded run of demuxed packets (never decoding them) and returns `VideoInfo`: duration,
frame rate, frame count, size, keyframe spacing (from the seek index, else from the first packets),
B-frames, whether timestamps identify frames, and whether x264's settings (written into the stream)
allow skipping every B-frame. The same opening and stream checks serve the sampler, so every bad
file is refused here with a message saying what is wrong with it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import av
import av.error
from av.container import InputContainer
from av.stream import Discard, Disposition
from av.video.stream import VideoStream

from stash_vision.server.errors import InvalidInput, MediaNotFound

# Keyframe spacing comes from the container's seek index when it has one (no reading at all),
# probed at this many points spread over the file.
_INDEX_PROBES: Final = 16
# Otherwise from the first packets, demuxed only (never decoded), within these bounds.
_PROBE_MAX_PACKETS: Final = 2000
_PROBE_MAX_BYTES: Final = 64 * 2**20
_PROBE_KEYFRAMES: Final = 5
# Enough packets to see B-frame reordering in the timestamps (it shows from the second packet).
_PROBE_EVIDENCE_PACKETS: Final = 120

# x264's settings come first in the first frame (before its slices), within these bytes.
_ENCODER_SETTINGS_MAX_BYTES: Final = 8192
_X264_SIGNATURE: Final = b"x264 - core "

# Containers whose timestamps are presentation times written by the muxer (not made up by the
# demuxer as for AVI), so a frame can be found by its timestamp.
_TIMESTAMPED_FORMATS: Final = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
# Average and nominal frame rates further apart than this mean variable frame rate, where a frame
# index computed from a timestamp is not FFmpeg's frame count.
_VFR_TOLERANCE: Final = 0.01


@dataclass(frozen=True)
class VideoInfo:
    duration_s: float
    """Container duration, else stream duration, else frames / fps (contract §3.4)."""
    fps: float
    """Average frame rate, the rate FFmpeg reports and the contract's step uses."""
    frame_count_estimate: int
    """Frames announced by the header, else round(duration × fps)."""
    width: int
    height: int
    """Coded size; a frame with a 90° display rotation comes out height × width."""
    codec: str
    keyframe_interval_s: float | None
    """Mean keyframe spacing: from the seek index around points spread over the file, else from
    the first packets (bounded read, no decoding); None when fewer than two keyframes were found
    (keyframes at least that sparse)."""
    has_b_frames: bool
    container_format: str
    header_frames: int
    """Frame count written in the container (0: the container does not say)."""
    timestamps_reliable: bool
    """Whether frames can be identified by timestamp (see `_timestamps_reliable`)."""
    indexed: bool
    """Whether the container's seek index knows keyframes (positions known without reading)."""
    bidir_skippable: bool = False
    """Whether no I- or P-frame refers to a B-frame, so that decoding without the B-frames gives
    every other frame exactly (SKIP_BIDIR). Known only from x264's settings in the stream."""

    @property
    def keyframe_interval_frames(self) -> float | None:
        return None if self.keyframe_interval_s is None else self.keyframe_interval_s * self.fps


def probe(path: Path | str) -> VideoInfo:
    """Reads the header and a bounded run of packets (no decoding). Raises MediaNotFound or
    InvalidInput with a message saying what is wrong with the file."""
    file = Path(path)
    with open_input(file) as container:
        stream = video_stream(container, file)
        return _probe_stream(container, stream, file)


def open_input(file: Path) -> InputContainer:
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise MediaNotFound(
            f"video file not found: {file} (as the server sees it; if Stash runs on another machine or in "
            "Docker, set STASH_VISION_PATH_MAPPINGS)"
        ) from None
    except PermissionError:
        raise InvalidInput(f"{file} is not readable by the server (permission denied)") from None
    except OSError as error:
        raise InvalidInput(f"cannot read {file}: {error.strerror or error}") from None
    if file.is_dir():
        raise InvalidInput(f"{file} is a directory, not a video file")
    if size == 0:
        raise InvalidInput(f"{file} is empty (0 bytes), not a video")
    try:
        return av.open(str(file), mode="r", metadata_errors="ignore")
    except av.error.FileNotFoundError:
        raise MediaNotFound(f"video file not found: {file}") from None
    except av.error.PermissionError:
        raise InvalidInput(f"{file} is not readable by the server (permission denied)") from None
    except av.error.InvalidDataError:
        raise InvalidInput(
            f"{file} is not a video FFmpeg can read (unrecognised or corrupt container)"
        ) from None
    except av.error.FFmpegError as error:
        raise InvalidInput(f"cannot open {file} as a video: {error.strerror or error}") from None
    except OSError as error:
        raise InvalidInput(f"cannot read {file}: {error.strerror or error}") from None


def video_stream(container: InputContainer, file: Path) -> VideoStream:
    fmt = container.format.name
    # FFmpeg opens a JPEG or PNG as a one-frame "video"; that is an image request sent to the wrong
    # endpoint, and saying so is more useful than tagging one frame.
    if fmt == "image2" or fmt.endswith("_pipe"):
        raise InvalidInput(f"{file} is a still image ({fmt}), not a video")
    # Cover art in audio files is a video stream flagged attached_pic: not a video.
    streams = [s for s in container.streams.video if not s.disposition & Disposition.attached_pic]
    if not streams:
        raise InvalidInput(f"{file} has no video stream (audio-only or data file, format {fmt})")
    stream = streams[0]
    if stream.codec_context is None:
        raise InvalidInput(f"{file}: no decoder for its video codec")
    return stream


def _probe_stream(container: InputContainer, stream: VideoStream, file: Path) -> VideoInfo:
    context = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    if not rate or rate <= 0:
        raise InvalidInput(f"{file}: the video stream has no frame rate (unreadable stream header)")
    fps = float(rate)
    if context.width <= 0 or context.height <= 0:
        raise InvalidInput(f"{file}: the video stream has no frame size (unreadable stream header)")

    load_seek_index(container, stream)
    indexed_interval = _index_keyframe_interval(stream)
    window = _read_packet_window(container, stream, want_keyframes=indexed_interval is None)
    if window.packets == 0:
        detail = f": {window.error}" if window.error else ""
        raise InvalidInput(f"{file} contains no video frames (zero-length or truncated video){detail}")

    header_frames = max(stream.frames, 0)
    duration = _header_duration(container, stream)
    if duration is None:
        if header_frames:
            duration = header_frames / fps
        else:
            # Only headerless streams (raw H.264 and the like) get here: count their packets.
            header_frames = window.packets if window.complete else _count_packets(file)
            duration = header_frames / fps
    if duration <= 0:
        raise InvalidInput(f"{file} is a zero-length video (duration 0)")
    estimate = header_frames or max(1, round(duration * fps))

    keyframe_interval = indexed_interval
    if keyframe_interval is None and len(window.keyframe_times) >= 2:
        span = window.keyframe_times[-1] - window.keyframe_times[0]
        keyframe_interval = span / (len(window.keyframe_times) - 1)
    has_b_frames = bool(context.has_b_frames) or window.reordered
    return VideoInfo(
        duration_s=duration,
        fps=fps,
        frame_count_estimate=estimate,
        width=context.width,
        height=context.height,
        codec=context.name,
        keyframe_interval_s=keyframe_interval,
        has_b_frames=has_b_frames,
        container_format=container.format.name,
        header_frames=header_frames,
        timestamps_reliable=_timestamps_reliable(container, stream, window, has_b_frames),
        indexed=indexed_interval is not None,
        bidir_skippable=has_b_frames and _bidir_skippable(context.name, window.first_packet_head),
    )


def _header_duration(container: InputContainer, stream: VideoStream) -> float | None:
    if container.duration and container.duration > 0:
        return container.duration / av.time_base
    if stream.duration and stream.duration > 0 and stream.time_base:
        return float(stream.duration * stream.time_base)
    return None


@dataclass
class _PacketWindow:
    packets: int = 0
    keyframe_times: tuple[float, ...] = ()
    reordered: bool = False
    missing_timestamps: bool = False
    complete: bool = False
    """The whole stream fitted in the window."""
    error: str | None = None
    first_packet_head: bytes = b""
    """The start of the first packet, where x264 writes its settings."""


def load_seek_index(container: InputContainer, stream: VideoStream) -> None:
    """Matroska reads its cues (the seek index) only on the first seek; seeking to the start loads
    them, and costs nothing where the index is already there or absent."""
    if len(stream.index_entries) < 2:
        with contextlib.suppress(av.error.FFmpegError):
            container.seek(stream.start_time or 0, stream=stream, backward=True)


def _index_keyframe_interval(stream: VideoStream) -> float | None:
    """Mean keyframe spacing from the seek index (MP4 sample table, AVI idx1, Matroska cues), or
    None when the index knows fewer than two keyframes. Measured around evenly spread points, so
    it is the spacing of the GOP a random sample falls in (long GOPs weigh more), which is what a
    seek costs. Matroska indexes cues, not every keyframe: that is also where its seeks land."""
    entries = stream.index_entries
    if len(entries) < 2 or not stream.time_base:
        return None
    first, last = entries[0].timestamp, entries[len(entries) - 1].timestamp
    spans: list[int] = []
    for probe_point in range(_INDEX_PROBES):
        at = first + (last - first) * (2 * probe_point + 1) // (2 * _INDEX_PROBES)
        before = entries.search_timestamp(at, backward=True)
        after = entries.search_timestamp(at + 1, backward=False)
        if 0 <= before < after:
            spans.append(entries[after].timestamp - entries[before].timestamp)
    if not spans:
        # A full index (one entry per frame) with a single keyframe: one GOP spans the file.
        return float((last - first) * stream.time_base) if len(entries) >= stream.frames > 1 else None
    return float(sum(spans) * stream.time_base) / len(spans)


def _read_packet_window(
    container: InputContainer, stream: VideoStream, *, want_keyframes: bool
) -> _PacketWindow:
    """Demuxes (never decodes) the first packets: whether the timestamps show B-frame reordering,
    and the keyframe spacing when the index did not give it."""
    window = _PacketWindow()
    discard_other_streams(container, stream)
    time_base = float(stream.time_base or 0)
    keyframes: list[float] = []
    size = 0
    last_pts: int | None = None
    try:
        for packet in container.demux(stream):
            if packet.size == 0:  # the demuxer's end-of-stream marker (and AVI's empty chunks)
                continue
            window.packets += 1
            size += packet.size
            if window.packets == 1:
                window.first_packet_head = bytes(packet)[:_ENCODER_SETTINGS_MAX_BYTES]
            if packet.pts is None:
                window.missing_timestamps = True
            else:
                if packet.is_keyframe:
                    keyframes.append(packet.pts * time_base)
                if (packet.dts is not None and packet.pts != packet.dts) or (
                    last_pts is not None and packet.pts < last_pts
                ):
                    window.reordered = True
                last_pts = packet.pts
            if window.packets >= _PROBE_MAX_PACKETS or size >= _PROBE_MAX_BYTES:
                break
            if window.packets >= _PROBE_EVIDENCE_PACKETS and (
                not want_keyframes or len(keyframes) >= _PROBE_KEYFRAMES
            ):
                break
        else:
            window.complete = True
    except av.error.FFmpegError as error:
        window.error = str(error)
    window.keyframe_times = tuple(keyframes)
    return window


def _x264_settings(head: bytes) -> dict[str, str] | None:
    """The settings x264 writes (as text, in an SEI message) into the first frame of every stream it
    encodes: `x264 - core 164 - ... - options: cabac=1 ref=3 ... b_pyramid=2 ...`. None for other
    encoders."""
    start = head.find(_X264_SIGNATURE)
    if start < 0:
        return None
    options = head.find(b"options: ", start)
    if options < 0:
        return None
    end = head.find(b"\x00", options)
    text = head[options + len(b"options: ") : end if end >= 0 else len(head)].decode("ascii", "replace")
    return dict(item.split("=", 1) for item in text.split() if "=" in item)


def _bidir_skippable(codec: str, head: bytes) -> bool:
    """Whether every I- and P-frame decodes exactly without the B-frames. In H.264 a B-frame may be
    a reference (x264's B-pyramid, on by default): with `b_pyramid=2` (normal) and more than one
    reference frame, P-frames are predicted from it too, and skipping it damages them up to the next
    keyframe (measured: mean error growing to 13 grey levels over 300 frames at x264's `ref=3`).
    Without a pyramid no B-frame is a reference; with `b_pyramid=1` (strict, Blu-ray) only B-frames
    refer to B-frames; with `ref=1` a P-frame refers only to the I/P frame just before it. Which
    frames other encoders refer to cannot be told without decoding: they are not skipped."""
    if codec != "h264":
        return False
    settings = _x264_settings(head)
    if settings is None:
        return False
    return settings.get("b_pyramid") in {"0", "1"} or settings.get("ref") == "1"


def _count_packets(file: Path) -> int:
    with open_input(file) as container:
        stream = video_stream(container, file)
        discard_other_streams(container, stream)
        count = 0
        try:
            for packet in container.demux(stream):
                count += packet.size > 0
        except av.error.FFmpegError:
            pass
        return count


def _timestamps_reliable(
    container: InputContainer, stream: VideoStream, window: _PacketWindow, has_b_frames: bool
) -> bool:
    """Whether a frame's index can be computed from its timestamp. AVI has no presentation
    timestamps (the demuxer makes them up, and packed B-frames come out of order); an MP4 with
    B-frames but no composition offsets (pts == dts everywhere, as box.mp4) labels frames with
    their decode times; under variable frame rate, time and FFmpeg's frame count disagree."""
    if container.format.name not in _TIMESTAMPED_FORMATS or window.missing_timestamps:
        return False
    if has_b_frames and not window.reordered:
        return False
    average, nominal = stream.average_rate, stream.base_rate
    if not average or not nominal:
        return False
    return abs(float(average) / float(nominal) - 1) <= _VFR_TOLERANCE


def discard_other_streams(container: InputContainer, stream: VideoStream) -> None:
    # Audio and subtitle packets would otherwise be read (and, in some demuxers, parsed) for nothing.
    for other in container.streams:
        if other.index != stream.index:
            other.discard = Discard.all
