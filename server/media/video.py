"""Samples frames from a video file the way the original AITagger server does (contract §3.4), with
PyAV (FFmpeg ships inside its wheel).

Sampling contract: `step = max(1, round(fps × frame_interval))`, frames n = 0, step, 2·step, … in the
decoder's output order, and the k-th sample is reported at `k × frame_interval` (a nominal grid: at
29.97 fps and step 60 it drifts from true time by 0.1 %, 3.6 s over an hour). VR frames are cropped
before any resize; frames carrying a display rotation are turned upright like FFmpeg's CLI does.

Four ways to get those frames (`Strategy`), chosen per file by `sample_plan`:

* SEQUENTIAL decodes every frame and counts them: exactly FFmpeg's `select='not(mod(n,step))'`. It
  is the only one that does not trust timestamps, so it is used for every file whose timestamps
  are not trustworthy (AVI, B-frames without composition offsets, variable frame rate).
* SKIP_NONREF decodes every packet but lets the decoder drop non-reference frames (usually the
  B-frames: about half the decoding work) and takes, for each sample, the nearest decoded frame by
  presentation time.
* SKIP_BIDIR lets the decoder drop every B-frame, reference or not, and decodes only I- and
  P-frames (with 3 B-frames, a quarter of the frames). That is exact only where no I- or P-frame
  refers to a B-frame: x264 with `b-pyramid` none or strict, or a single reference frame, which
  `probe` reads from the settings x264 writes into the stream. Elsewhere (x264's default of 3
  references with a normal pyramid, other encoders) P-frames predicted from skipped B-frames
  would come out damaged, and SKIP_NONREF is used instead.
* SEEK jumps to the keyframe before a sample whenever the container's index shows one ahead of
  the current position, then decodes forward to the exact frame. It never goes back, so it is
  never slower than decoding through by more than the cost of the seeks themselves.

The tolerance of the timestamp-based strategies is TOLERANCE_FRAMES: a sample may come from a frame
up to 2 frames (≤ 83 ms at 24 fps) away from frame k·step, far below the grid's own drift above.
SEEK decodes every frame from the keyframe on, so it finds the exact frame unless the stream lacks
it. The skipping strategies rely on the tolerance (x264's B-pyramid leaves single non-reference
frames between references, 1 frame away; 3 B-frames leave I/P frames 4 apart, at most 2 frames
from any target); where a run of skipped frames is longer, they decode that stretch again from its
keyframe skipping less (SKIP_BIDIR continues as SKIP_NONREF, SKIP_NONREF without skipping) for the
rest of the file. Any sign that the timestamps do not match the frame order (a frame going
backwards, sample 0 missing) restarts the file as SEQUENTIAL.

Only sampled frames are converted to arrays (`to_ndarray` on a PyAV frame); everything else stays
inside FFmpeg. The iterator holds at most two decoded frames besides FFmpeg's own thread buffers, so
memory does not grow with the file's length. All of it is blocking: callers run it in a thread.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from types import TracebackType
from typing import Final, Literal, cast

import av
import av.error
import numpy as np
from av.container import InputContainer
from av.index import IndexEntries
from av.stream import Discard, Disposition
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from stash_vision.server.arrays import BgrImage
from stash_vision.server.errors import InvalidInput, MediaNotFound

TOLERANCE_FRAMES: Final = 2
"""How far (in frames) a timestamp-based strategy may stray from frame k·step for sample k."""

# Below this step nearly every frame is a sample, so there is nothing to skip, and with the
# tolerance two samples could land on one frame.
_MIN_STEP_FOR_SKIPPING: Final = 2 * TOLERANCE_FRAMES + 1

# Seek-per-sample is chosen when keyframes are at most this many steps apart. Measured on 60 s of
# 1080p H.264 with 3 B-frames, 2 cores (CPU seconds): SKIP_NONREF costs 0.65 of a full decode; with
# 1 s GOPs SEEK beat it at step 1.1 GOP (7.5 vs 8.6 s) and lost at step 0.7 GOP (9.3 vs 8.6 s).
# Without B-frames there is nothing cheaper than a full decode to compare with, and SEEK, which
# only seeks when the index shows a keyframe ahead, skips every GOP that holds no sample.
_SEEK_MAX_GOP_STEPS_WITH_B_FRAMES: Final = 1.0
_SEEK_MAX_GOP_STEPS: Final = 2.0
# SKIP_BIDIR decodes only the I- and P-frames (0.3 of the frames with 3 B-frames), so seeking must
# skip more to win. Measured on 20 s of 1080p H.264 (3 B-frames, 1 s GOPs), process CPU seconds,
# SKIP_BIDIR against SEEK: 1.17 vs 1.45 at step 1.3 GOP, 1.25 vs 1.0 at 1.5, 1.2 vs 1.15 at 1.7,
# 1.15 vs 0.44 at 2.0 (samples on keyframes); SKIP_BIDIR won every step below 1.3 GOP.
_SEEK_MAX_GOP_STEPS_WITH_BIDIR: Final = 0.7
# A seek flushes the decoder's frame threads and re-reads from a keyframe; it is only worth it
# when it skips more frames than that costs.
_SEEK_MIN_GAIN_FRAMES: Final = 12
# MP4's index holds decode timestamps, which run ahead of presentation by the B-frame reorder
# delay; the delay is read off the first keyframe and trusted up to this many frames.
_MAX_INDEX_OFFSET_FRAMES: Final = 16

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

# A decoder that fails on this many packets in a row is not going to recover.
_MAX_CONSECUTIVE_DECODE_ERRORS: Final = 100

# Containers whose timestamps are presentation times written by the muxer (not made up by the
# demuxer as for AVI), so a frame can be found by its timestamp.
_TIMESTAMPED_FORMATS: Final = frozenset({"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"})
# Average and nominal frame rates further apart than this mean variable frame rate, where a frame
# index computed from a timestamp is not FFmpeg's frame count.
_VFR_TOLERANCE: Final = 0.01


class Strategy(StrEnum):
    SEQUENTIAL = "sequential"
    SKIP_NONREF = "skip_nonref"
    SKIP_BIDIR = "skip_bidir"
    SEEK = "seek"


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


@dataclass(frozen=True)
class SamplePlan:
    frame_interval: float
    step: int
    frame_indices: range
    """Frames the contract samples: 0, step, 2·step, … below frame_count_estimate."""
    expected_samples: int
    strategy: Strategy
    tolerance_frames: int
    """0 for SEQUENTIAL (frames counted, exact); TOLERANCE_FRAMES for the timestamp strategies."""
    reason: str
    """Why this strategy, for logs."""

    def time_of(self, k: int) -> float:
        return k * self.frame_interval


@dataclass(frozen=True)
class Sample:
    k: int
    time_s: float
    """k × frame_interval: the nominal time the contract reports."""
    frame: BgrImage
    """HxWx3 BGR uint8, upright, VR-cropped when asked."""
    source_frame_index: int
    """Decoder output index (SEQUENTIAL) or index from the timestamp (other strategies)."""
    pts_s: float | None
    """The frame's own presentation time, for diagnostics."""


@dataclass(frozen=True)
class DecodeReport:
    samples: int
    expected_samples: int
    """From the header; the last one may legitimately be missing when the header overstates the
    stream by less than a second (or 2 %), which is not reported as partial."""
    decoded_frames: int
    partial: bool
    error: str | None
    """Why the result is partial (None when it is not)."""
    strategy: Strategy
    """The strategy that produced the samples (after any fallback)."""
    warnings: tuple[str, ...]
    """Problems that cost no sample: packets the decoder rejected, a strategy abandoned."""
    elapsed_s: float


# --------------------------------------------------------------------------------------------- probe


def probe(path: Path | str) -> VideoInfo:
    """Reads the header and a bounded run of packets (no decoding). Raises MediaNotFound or
    InvalidInput with a message saying what is wrong with the file."""
    file = Path(path)
    with _open_input(file) as container:
        stream = _video_stream(container, file)
        return _probe_stream(container, stream, file)


def _open_input(file: Path) -> InputContainer:
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


def _video_stream(container: InputContainer, file: Path) -> VideoStream:
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

    _load_index(container, stream)
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


def _load_index(container: InputContainer, stream: VideoStream) -> None:
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
    _discard_other_streams(container, stream)
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
    with _open_input(file) as container:
        stream = _video_stream(container, file)
        _discard_other_streams(container, stream)
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


def _discard_other_streams(container: InputContainer, stream: VideoStream) -> None:
    # Audio and subtitle packets would otherwise be read (and, in some demuxers, parsed) for nothing.
    for other in container.streams:
        if other.index != stream.index:
            other.discard = Discard.all


# ---------------------------------------------------------------------------------------------- plan


def sample_plan(info: VideoInfo, frame_interval: float, *, strategy: Strategy | None = None) -> SamplePlan:
    """The frames to sample and how to reach them. `strategy` overrides the choice (tests and
    measurements), except that steps below 5 are always counted; an override that needs
    timestamps still falls back to SEQUENTIAL at decode time if the timestamps turn out unusable.

    frame_interval must be a finite number of seconds > 0. One larger than the video gives exactly
    one sample, at 0 s: step exceeds the frame count, so only frame 0 qualifies, as with FFmpeg's
    select filter (a short clip still gets tagged instead of refused)."""
    if (
        not isinstance(frame_interval, int | float)
        or not math.isfinite(frame_interval)
        or frame_interval <= 0
    ):
        raise InvalidInput(f"frame_interval must be a number of seconds > 0, got {frame_interval!r}")
    step = max(1, round(info.fps * frame_interval))
    expected = max(1, math.ceil(info.frame_count_estimate / step))
    if strategy is None:
        chosen, reason = _choose_strategy(info, step)
    elif strategy is not Strategy.SEQUENTIAL and step < _MIN_STEP_FOR_SKIPPING:
        # With the tolerance, neighbouring samples could share a frame: counting is the only way.
        chosen, reason = Strategy.SEQUENTIAL, f"{strategy} requested, but step {step} needs counting"
    elif strategy is Strategy.SKIP_BIDIR and not info.bidir_skippable:
        # Skipping B-frames that P-frames refer to would damage the pictures, not just move samples.
        chosen, reason = Strategy.SKIP_NONREF, f"{strategy} requested, but P-frames may refer to B-frames"
    else:
        chosen, reason = strategy, "requested"
    return SamplePlan(
        frame_interval=float(frame_interval),
        step=step,
        frame_indices=range(0, expected * step, step),
        expected_samples=expected,
        strategy=chosen,
        tolerance_frames=0 if chosen is Strategy.SEQUENTIAL else TOLERANCE_FRAMES,
        reason=reason,
    )


def _choose_strategy(info: VideoInfo, step: int) -> tuple[Strategy, str]:
    """The rule, in order:
    1. timestamps not usable to identify frames → SEQUENTIAL (counting is the only exact way);
    2. step < 5 → SEQUENTIAL (almost every frame is a sample: nothing to skip);
    3. a seek index and keyframes at most one step apart (0.7 of a step where only I- and P-frames
       need decoding, two without B-frames) → SEEK;
    4. B-frames that no I- or P-frame refers to → SKIP_BIDIR;
    5. other B-frames → SKIP_NONREF;
    6. otherwise SEQUENTIAL."""
    if not info.timestamps_reliable:
        return Strategy.SEQUENTIAL, "frames must be counted (timestamps not usable to identify frames)"
    if step < _MIN_STEP_FOR_SKIPPING:
        return Strategy.SEQUENTIAL, f"step {step} < {_MIN_STEP_FOR_SKIPPING}: nearly every frame is sampled"
    gop = info.keyframe_interval_frames
    bidir = info.has_b_frames and info.bidir_skippable
    if not info.has_b_frames:
        limit = _SEEK_MAX_GOP_STEPS
    elif bidir:
        limit = _SEEK_MAX_GOP_STEPS_WITH_BIDIR
    else:
        limit = _SEEK_MAX_GOP_STEPS_WITH_B_FRAMES
    if info.indexed and gop is not None and gop <= limit * step:
        return Strategy.SEEK, f"keyframes every {gop:.0f} frames, step {step}: seeking skips whole GOPs"
    if bidir:
        return Strategy.SKIP_BIDIR, "B-frames no I/P frame refers to: the decoder skips every B-frame"
    if info.has_b_frames:
        return Strategy.SKIP_NONREF, "B-frames: the decoder skips non-reference frames"
    return Strategy.SEQUENTIAL, "keyframes too sparse to seek and no B-frames to skip"


# -------------------------------------------------------------------------------------------- decode


def upright_bgr(frame: VideoFrame) -> BgrImage:
    """A decoded frame as HxWx3 BGR, turned upright like FFmpeg's CLI (which autorotates by
    default): a display rotation of +90° is counter-clockwise, as np.rot90 turns."""
    image = cast(BgrImage, frame.to_ndarray(format="bgr24"))
    quarter_turns = round(frame.rotation / 90) % 4
    if quarter_turns:
        image = np.ascontiguousarray(np.rot90(image, quarter_turns))
    return image


def vr_crop(frame: BgrImage) -> BgrImage:
    """Contract §3.4: side-by-side 180° (width/height > 1.5) keeps the right half; otherwise
    over-under 360° keeps the top half's centre 50 % of the width."""
    height, width = frame.shape[:2]
    side_by_side = width / height > 1.5
    crop = frame[:, width // 2 :] if side_by_side else frame[: height // 2, width // 4 : 3 * width // 4]
    # Contiguous, so the caller's resize and tensor code need not care about strides.
    return np.ascontiguousarray(crop)


def iter_samples(
    path: Path | str,
    frame_interval: float,
    *,
    vr: bool = False,
    info: VideoInfo | None = None,
    strategy: Strategy | None = None,
) -> SampleIterator:
    """Probes the file (raising for bad input before any decoding; pass `info` from an earlier
    `probe` to skip that) and returns an iterator over its samples. The iterator's `report` is
    available once iteration has ended or `close()` was called."""
    file = Path(path)
    if info is None:
        info = probe(file)
    return SampleIterator(file, info, sample_plan(info, frame_interval, strategy=strategy), vr=vr)


# The decoder's skip_frame levels of each skipping strategy, from the most skipping.
_SkipLevel = Literal["BIDIR", "NONREF"]
_SKIP_LEVELS: Final[dict[Strategy, tuple[_SkipLevel, ...]]] = {
    Strategy.SKIP_BIDIR: ("BIDIR", "NONREF"),
    Strategy.SKIP_NONREF: ("NONREF",),
}
_SKIPPED_FRAMES: Final[dict[_SkipLevel, str]] = {"BIDIR": "B-frames", "NONREF": "non-reference frames"}


class _TimestampsUnusable(Exception):
    """Raised inside a timestamp-based strategy when the frames contradict the probe."""


class SampleIterator(Iterator[Sample]):
    """One sample at a time, pulled by the caller (who bounds its own queue). A file that decodes
    partly yields what decodes and reports partial=True; it never raises after yielding a sample.
    A file where nothing decodes raises InvalidInput on the first `next`."""

    def __init__(self, path: Path, info: VideoInfo, plan: SamplePlan, *, vr: bool = False) -> None:
        self.path = path
        self.info = info
        self.plan = plan
        self.vr = vr
        self._report: DecodeReport | None = None
        self._strategy = plan.strategy
        self._samples = 0
        self._next_k = 0
        self._decoded = 0
        self._last_index = -1
        self._last_time: float | None = None
        self._missing = 0
        self._complete_by_header = False
        self._stop_error: str | None = None
        self._decode_errors = 0
        self._first_decode_error: str | None = None
        self._warnings: list[str] = []
        self._started = time.perf_counter()
        self._generator = self._run()

    @property
    def expected_samples(self) -> int:
        return self.plan.expected_samples

    @property
    def report(self) -> DecodeReport:
        """How the decoding went; available once iteration has ended or `close()` was called."""
        if self._report is None:
            raise RuntimeError("the decode report exists once iteration has ended or close() was called")
        return self._report

    def __iter__(self) -> SampleIterator:
        return self

    def __next__(self) -> Sample:
        return next(self._generator)

    def close(self) -> None:
        """Stops decoding and releases the file; `report` then says how far it got."""
        self._generator.close()
        if self._report is None:
            self._finish(stopped=True)

    def __enter__(self) -> SampleIterator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- driver

    def _run(self) -> Generator[Sample, None, None]:
        try:
            if self._strategy is Strategy.SEQUENTIAL:
                yield from self._by_count()
            else:
                try:
                    yield from self._by_timestamp()
                except _TimestampsUnusable as why:
                    self._warnings.append(f"{self._strategy} abandoned ({why}); decoded every frame instead")
                    self._strategy = Strategy.SEQUENTIAL
                    self._last_index, self._last_time = -1, None
                    self._missing = 0
                    self._stop_error = None
                    yield from self._by_count()
        except Exception as error:
            # Not expected (packet-level failures are handled in _frames), but a sampled frame that
            # cannot be converted, or the file vanishing before a fallback reopens it, must end as a
            # partial result once samples went out: the caller has already used them.
            failure = f"{type(error).__name__}: {error}"
            if self._samples == 0:
                if isinstance(error, av.error.FFmpegError | ValueError):
                    self._finish(failure=failure)  # raises InvalidInput: no decodable frames
                self._finish(failure=failure, raise_if_empty=False)
                raise
            self._stop_error = f"decoding failed after frame {self._last_index}: {failure}"
        self._finish()

    def _open(self) -> tuple[InputContainer, VideoStream]:
        container = _open_input(self.path)
        try:
            stream = _video_stream(container, self.path)
            _discard_other_streams(container, stream)
            # Frame and slice threads; FFmpeg picks the thread count from the cores.
            stream.codec_context.thread_type = "AUTO"
        except BaseException:
            container.close()
            raise
        return container, stream

    def _frames(self, container: InputContainer, stream: VideoStream) -> Generator[VideoFrame, None, None]:
        """Decoded frames in output order. Packets the decoder rejects are skipped (as FFmpeg's CLI
        does); a demuxer failure or a decoder that keeps failing ends the stream early, recorded in
        `_stop_error` for the report."""
        packets = container.demux(stream)
        failures = 0
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                return
            except av.error.FFmpegError as error:
                self._stop_error = f"reading the file failed after frame {self._last_index}: {error}"
                yield from self._flush(stream)
                return
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError as error:
                self._decode_errors += 1
                self._first_decode_error = self._first_decode_error or str(error)
                failures += 1
                if failures >= _MAX_CONSECUTIVE_DECODE_ERRORS:
                    self._stop_error = (
                        f"decoding stopped after {failures} consecutive undecodable packets "
                        f"(last good frame {self._last_index}): {error}"
                    )
                    return
                continue
            failures = 0
            yield from frames

    def _flush(self, stream: VideoStream) -> Iterator[VideoFrame]:
        try:
            yield from stream.decode(None)
        except av.error.FFmpegError:
            return

    def _sample(self, k: int, frame: VideoFrame, index: int) -> Sample:
        image = upright_bgr(frame)
        if self.vr:
            image = vr_crop(image)
        self._samples += 1
        self._next_k = k + 1
        return Sample(
            k=k,
            time_s=self.plan.time_of(k),
            frame=image,
            source_frame_index=index,
            pts_s=None if frame.pts is None else frame.time,
        )

    # -- SEQUENTIAL: every frame decoded and counted

    def _by_count(self) -> Iterator[Sample]:
        step = self.plan.step
        container, stream = self._open()
        with container:
            for index, frame in enumerate(self._frames(container, stream)):
                self._decoded += 1
                self._last_index = index
                if frame.pts is not None:
                    self._last_time = frame.time
                # Frames that are not sampled are never converted; after a fallback, samples the
                # timestamp pass already yielded are not yielded again.
                if index % step == 0 and index // step >= self._next_k:
                    yield self._sample(index // step, frame, index)

    # -- SKIP_BIDIR, SKIP_NONREF and SEEK: frames identified by timestamp

    def _by_timestamp(self) -> Iterator[Sample]:
        step = self.plan.step
        seeking = self._strategy is Strategy.SEEK
        # The decoder's skip_frame levels still to use, the current one first: where the frames it
        # leaves are too far apart for a sample, the next one takes over (from the keyframe before).
        skip_levels = list(_SKIP_LEVELS.get(self._strategy, ()))
        # SEEK decodes every frame from the keyframe on, so the nearest frame is the exact one; the
        # tolerance only matters where frames are skipped or missing from the stream.
        tolerance = TOLERANCE_FRAMES
        container, stream = self._open()
        with container:
            context = stream.codec_context
            if skip_levels:
                context.skip_frame = skip_levels[0]
            time_base = float(stream.time_base or 0)
            if time_base <= 0:
                raise _TimestampsUnusable("the stream has no time base")
            ticks_per_frame = 1 / (time_base * self.info.fps)
            origin: int | None = stream.start_time
            if seeking:
                _load_index(container, stream)
            index_entries = stream.index_entries if seeking and len(stream.index_entries) else None
            index_offset = 0
            if index_entries is not None and origin is not None and index_entries[0].is_keyframe:
                # Presentation minus index time of the first keyframe: 0 where the index holds
                # presentation times (Matroska cues), the reorder delay where it holds decode times.
                offset = origin - index_entries[0].timestamp
                if 0 <= offset <= _MAX_INDEX_OFFSET_FRAMES * ticks_per_frame:
                    index_offset = offset

            def pts_of(index: int) -> int:
                return (origin or 0) + round(index * ticks_per_frame)

            frames = self._frames(container, stream)
            previous: tuple[int, VideoFrame] | None = None
            last = -1  # index of the latest frame since decoding (re)started, to catch disorder
            k = self._next_k
            consider_seek = seeking
            while True:
                target = k * step
                if seeking and 0 < self.info.header_frames <= target:
                    # The container counts its frames exactly (MP4's sample table): nothing to seek
                    # to past the last one, and no reason to decode the last GOP through to its end.
                    self._complete_by_header = True
                    break
                if consider_seek and index_entries is not None and origin is not None:
                    consider_seek = False
                    if self._keyframe_ahead(
                        index_entries,
                        pts_of(target) - index_offset,
                        origin - index_offset,
                        ticks_per_frame,
                        self._last_index,
                    ):
                        try:
                            container.seek(pts_of(target), stream=stream, backward=True)
                        except av.error.FFmpegError as error:
                            self._warnings.append(f"seeking failed ({error}); decoding through instead")
                            index_entries = None
                        else:
                            frames.close()
                            frames = self._frames(container, stream)
                            previous, last = None, -1
                frame = next(frames, None)
                if frame is None:
                    break
                if frame.pts is None:
                    raise _TimestampsUnusable("a decoded frame has no timestamp")
                if origin is None:
                    origin = frame.pts
                index = round((frame.pts - origin) / ticks_per_frame)
                if index < last:
                    raise _TimestampsUnusable(f"frame timestamps go backwards (frame {index} after {last})")
                last = index
                self._decoded += 1
                if index > self._last_index:
                    self._last_index, self._last_time = index, frame.time
                restart = False
                while index >= target:
                    # The first frame at or after the target: it or the one before, whichever is nearer.
                    best_index, best = index, frame
                    if previous is not None and target - previous[0] <= index - target:
                        best_index, best = previous
                    if abs(best_index - target) <= tolerance:
                        yield self._sample(k, best, best_index)
                    elif skip_levels:
                        # A run of skipped frames longer than the tolerance: this file's structure does
                        # not suit this level of skipping, so decode from the keyframe before the target
                        # skipping less (B-frames resting on skipped ones need that keyframe anyway).
                        skipped = skip_levels.pop(0)
                        context.skip_frame = skip_levels[0] if skip_levels else "DEFAULT"
                        instead = "skipping only non-reference frames" if skip_levels else "in full"
                        self._warnings.append(
                            f"{_SKIPPED_FRAMES[skipped]} around frame {target} span more than {TOLERANCE_FRAMES} "
                            f"frames; decoded the rest {instead}"
                        )
                        try:
                            container.seek(pts_of(target), stream=stream, backward=True)
                        except av.error.FFmpegError as error:
                            raise _TimestampsUnusable(
                                f"cannot seek back to frame {target}: {error}"
                            ) from None
                        frames.close()
                        frames = self._frames(container, stream)
                        previous, last, restart = None, -1, True
                        break
                    elif self._samples == 0:
                        # Sample 0 missed although frames decode: the timestamps do not start where the
                        # header says; counting frames is the safe reading of such a file.
                        raise _TimestampsUnusable(f"the first frame is at index {best_index}, not 0")
                    else:
                        self._missing += 1
                    k += 1
                    target = k * step
                    consider_seek = seeking
                if not restart:
                    previous = (index, frame)
            # A target after the last decoded frame is past the end, as it is for counting: no sample
            # from the frame before it. (Encoders end on a P-frame, so skipping never drops the last
            # frame a target could need.)

    @staticmethod
    def _keyframe_ahead(
        index_entries: IndexEntries, pts: float, origin: int, ticks_per_frame: float, position: int
    ) -> bool:
        """Whether the index has a keyframe at or before `pts` far enough past `position` (the
        latest frame decoded) for a seek to save work."""
        entry = index_entries.search_timestamp(int(pts), backward=True)
        if entry < 0:
            return False
        keyframe = (index_entries[entry].timestamp - origin) / ticks_per_frame
        return keyframe > position + _SEEK_MIN_GAIN_FRAMES

    # -- report

    def _finish(
        self, *, stopped: bool = False, failure: str | None = None, raise_if_empty: bool = True
    ) -> None:
        info, plan = self.info, self.plan
        problems: list[str] = [failure] if failure else []
        if stopped:
            problems.append(f"stopped by the caller after {self._samples} samples")
        if self._stop_error:
            problems.append(self._stop_error)
        if self._missing:
            problems.append(
                f"{self._missing} samples had no decodable frame within {TOLERANCE_FRAMES} frames of their position"
            )
        # A header that overstates the stream by up to a second (or 2 %) is common (audio longer
        # than video, rounding); beyond that the file ends or stops decoding early.
        margin = max(round(info.fps), math.ceil(0.02 * info.frame_count_estimate))
        ended_early = self._last_index < info.frame_count_estimate - 1 - margin
        if not stopped and not self._complete_by_header and ended_early:
            reached = "" if self._last_time is None else f", the last at {self._last_time:.1f} s"
            problems.append(
                f"only {self._last_index + 1} of the {info.frame_count_estimate} frames the header announces "
                f"could be decoded{reached} of {info.duration_s:.1f} s; "
                f"{self._samples} of {plan.expected_samples} samples"
            )
        warnings = list(self._warnings)
        if self._decode_errors:
            warnings.append(
                f"{self._decode_errors} packets could not be decoded (first: {self._first_decode_error})"
            )
        self._report = DecodeReport(
            samples=self._samples,
            expected_samples=plan.expected_samples,
            decoded_frames=self._decoded,
            partial=bool(problems),
            error="; ".join(problems) or None,
            strategy=self._strategy,
            warnings=tuple(warnings),
            elapsed_s=time.perf_counter() - self._started,
        )
        if self._samples == 0 and not stopped and raise_if_empty:
            raise InvalidInput(
                f"no decodable video frames in {self.path}"
                + (f" ({self._report.error})" if self._report.error else "")
            )
