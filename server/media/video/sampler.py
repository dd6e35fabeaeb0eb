"""The sample iterator: decodes a probed file with the planned `Strategy` and yields one `Sample`
per contract position, then a `DecodeReport` saying how it went. Where a timestamp-based strategy
finds the file does not suit it, it continues skipping less or restarts as SEQUENTIAL (the rules are
in `strategy`).

Only sampled frames are converted to arrays (`to_ndarray` on a PyAV frame); everything else stays
inside FFmpeg. The iterator holds at most two decoded frames besides FFmpeg's own thread buffers, so
memory does not grow with the file's length. All of it is blocking: callers run it in a thread.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

import av
import av.error
from av.container import InputContainer
from av.index import IndexEntries
from av.video.frame import VideoFrame
from av.video.stream import VideoStream

from stash_vision.server.arrays import BgrImage
from stash_vision.server.errors import InvalidInput

from .frames import upright_bgr, vr_crop
from .probing import VideoInfo, discard_other_streams, load_seek_index, open_input, probe, video_stream
from .report import DecodeReport, DecodeTally
from .strategy import SKIP_LEVELS, SKIPPED_FRAMES, TOLERANCE_FRAMES, SamplePlan, Strategy, sample_plan

# A seek flushes the decoder's frame threads and re-reads from a keyframe; it is only worth it
# when it skips more frames than that costs.
_SEEK_MIN_GAIN_FRAMES: Final = 12
# MP4's index holds decode timestamps, which run ahead of presentation by the B-frame reorder
# delay; the delay is read off the first keyframe and trusted up to this many frames.
_MAX_INDEX_OFFSET_FRAMES: Final = 16

# A decoder that fails on this many packets in a row is not going to recover.
_MAX_CONSECUTIVE_DECODE_ERRORS: Final = 100


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
        self._tally = DecodeTally()
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
                    self._tally.warnings.append(
                        f"{self._strategy} abandoned ({why}); decoded every frame instead"
                    )
                    self._strategy = Strategy.SEQUENTIAL
                    self._tally.last_index, self._tally.last_time = -1, None
                    self._tally.missing = 0
                    self._tally.stop_error = None
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
            self._tally.stop_error = f"decoding failed after frame {self._tally.last_index}: {failure}"
        self._finish()

    def _open(self) -> tuple[InputContainer, VideoStream]:
        container = open_input(self.path)
        try:
            stream = video_stream(container, self.path)
            discard_other_streams(container, stream)
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
                self._tally.stop_error = (
                    f"reading the file failed after frame {self._tally.last_index}: {error}"
                )
                yield from self._flush(stream)
                return
            try:
                frames = stream.decode(packet)
            except av.error.FFmpegError as error:
                self._tally.decode_errors += 1
                self._tally.first_decode_error = self._tally.first_decode_error or str(error)
                failures += 1
                if failures >= _MAX_CONSECUTIVE_DECODE_ERRORS:
                    self._tally.stop_error = (
                        f"decoding stopped after {failures} consecutive undecodable packets "
                        f"(last good frame {self._tally.last_index}): {error}"
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
                self._tally.decoded += 1
                self._tally.last_index = index
                if frame.pts is not None:
                    self._tally.last_time = frame.time
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
        skip_levels = list(SKIP_LEVELS.get(self._strategy, ()))
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
                load_seek_index(container, stream)
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
                    self._tally.complete_by_header = True
                    break
                if consider_seek and index_entries is not None and origin is not None:
                    consider_seek = False
                    if self._keyframe_ahead(
                        index_entries,
                        pts_of(target) - index_offset,
                        origin - index_offset,
                        ticks_per_frame,
                        self._tally.last_index,
                    ):
                        try:
                            container.seek(pts_of(target), stream=stream, backward=True)
                        except av.error.FFmpegError as error:
                            self._tally.warnings.append(f"seeking failed ({error}); decoding through instead")
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
                self._tally.decoded += 1
                if index > self._tally.last_index:
                    self._tally.last_index, self._tally.last_time = index, frame.time
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
                        self._tally.warnings.append(
                            f"{SKIPPED_FRAMES[skipped]} around frame {target} span more than {TOLERANCE_FRAMES} "
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
                        self._tally.missing += 1
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
        elapsed = time.perf_counter() - self._started
        self._report = self._tally.report(
            self.info, self.plan, self._strategy, self._samples, elapsed, stopped=stopped, failure=failure
        )
        if self._samples == 0 and not stopped and raise_if_empty:
            raise InvalidInput(
                f"no decodable video frames in {self.path}"
                + (f" ({self._report.error})" if self._report.error else "")
            )
