"""Tags a video for the AITagger plugin (aitagger-contract.md §1.3, §3.4-3.7).

Decoding runs in its own thread per video and yields only the sampled frames; each frame is
preprocessed on the CPU pool and sent to every tagger's model, so frames of all concurrent videos
and images share Triton batches while the next frames decode. A frame is in flight from the moment
its decoding starts until its last Triton answer: at most `_FRAMES_IN_FLIGHT` per video and
`global_frames_in_flight` across all videos (a slot is taken before the frame is decoded, waiters
served first come, first served), and at most `max_concurrent_videos` videos decode at once, so
memory stays flat however long and however many the files are. Existing results decide what to
re-run (§3.7); nothing to re-run answers from the stored file without decoding. Cancelling the
consumer stops decoding and inference and frees the video's slots before its answer stream ends.

Each sample records the `stash_vision_stage_seconds` stages the image paths record: `decode` (the
decoder's work for one sample: every frame it decodes up to it, and its conversion), `preprocess`
and `triton` (one round trip per tagger)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import time
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from stash_vision.catalog.entries import InputContract
from stash_vision.server.arrays import AnyArray, BgrImage, FloatTensor
from stash_vision.server.errors import InvalidInput
from stash_vision.server.media import video
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.metrics import STAGE_SECONDS, VIDEO_FRAMES_DECODED, VIDEO_FRAMES_IN_FLIGHT
from stash_vision.server.preprocessing import preprocess
from stash_vision.server.priority import PrioritySemaphore
from stash_vision.server.tagging.aitagger_format.ai_json import AIVideoResult, LoadedResult, load_ai_json
from stash_vision.server.tagging.aitagger_format.categories import CategoryConfig
from stash_vision.server.tagging.aitagger_format.reprocess import (
    ActiveModel,
    json_result_string,
    merge_results,
    plan_reprocessing,
)
from stash_vision.server.tagging.aitagger_format.timespans import (
    FrameResult,
    build_video_tag_info,
    raw_runs,
    result_from_frames,
)
from stash_vision.server.tagging.taggers.base import Tagger
from stash_vision.server.triton_session import InferenceSession
from stash_vision.server.workers import CpuPool

_FRAMES_IN_FLIGHT = 6
"""Per video: enough for decoding and inference to overlap, few enough that one video cannot hold
every global slot when others wait."""
_PROGRESS_EVERY_S = 1.0
# v3 merges raw runs across small gaps (server config max_timespan_merge_seconds, §2).
_V3_MAX_MERGE_S = 4.0


@dataclass(frozen=True)
class VideoOptions:
    frame_interval: float
    threshold: float | None = None
    return_confidence: bool = True
    vr: bool = False
    existing: Any = None  # the parsed .AI.json, or None
    skip_categories: frozenset[str] = frozenset()
    v3: bool = False


@dataclass(frozen=True)
class VideoProgress:
    frames_done: int
    frames_total: int
    elapsed_seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames_done / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


@dataclass
class VideoOutcome:
    duration: float
    json_result: str | None = None
    video_tag_info: dict[str, Any] = field(default_factory=dict)
    v3_result: dict[str, Any] | None = None
    partial: bool = False
    partial_reason: str = ""
    frames: int = 0
    preprocess_seconds: float = 0.0
    inference_seconds: float = 0.0
    total_seconds: float = 0.0
    model_count: int = 0
    decode_strategy: str = ""


class VideoTagging:
    def __init__(
        self,
        taggers: list[Tagger],
        session: InferenceSession,
        paths: MediaPaths,
        pool: CpuPool,
        *,
        max_concurrent_videos: int = 2,
        reprocess_with_more_accurate_same_model: bool = False,
        # As for images (docs/benchmarks-video.md): 2 videos x 6 frames let Triton form batches of
        # 12 and doubled the model's arena for no throughput; one video never needs more than 6.
        global_frames_in_flight: int = 8,
    ) -> None:
        if global_frames_in_flight < 1:
            raise ValueError(f"global_frames_in_flight must be at least 1, got {global_frames_in_flight}")
        self.taggers = taggers
        self.session = session
        self.paths = paths
        self.pool = pool
        self.reprocess_more_accurate = reprocess_with_more_accurate_same_model
        self._decoders = ThreadPoolExecutor(max_concurrent_videos, thread_name_prefix="video")
        # Interactive calls are admitted ahead of job items, and jobs leave a video slot and some
        # frame slots free for them (server/priority.py).
        self._video_slots = PrioritySemaphore(max_concurrent_videos)
        self._frame_slots = PrioritySemaphore(
            global_frames_in_flight, background_limit=max(1, global_frames_in_flight - _FRAMES_IN_FLIGHT // 2)
        )
        self.global_frames_in_flight = global_frames_in_flight
        self.categories = CategoryConfig.of(
            settings for tagger in taggers for settings in tagger.category_config.categories.values()
        )

    def _validate(self, options: VideoOptions) -> None:
        interval = options.frame_interval
        if not isinstance(interval, (int, float)) or not math.isfinite(interval) or interval <= 0:
            raise InvalidInput(f"frame_interval must be a positive number of seconds, got {interval!r}")
        if options.threshold is not None and not 0.0 <= options.threshold <= 1.0:
            raise InvalidInput(f"threshold must lie between 0 and 1, got {options.threshold}")

    def _existing(self, options: VideoOptions) -> LoadedResult | None:
        if options.existing is None:
            return None
        try:
            return load_ai_json(options.existing, self.categories)
        except ValueError as error:
            raise InvalidInput(f"existing_json_data is not a usable .AI.json: {error}") from None

    def _active_models(self, options: VideoOptions) -> list[ActiveModel]:
        return [
            ActiveModel(
                file_name=t.spec.display_name,
                version=t.spec.version,
                identifier=t.spec.identifier,
                categories=tuple(c for c in t.categories if c not in options.skip_categories),
            )
            for t in self.taggers
            if any(c not in options.skip_categories for c in t.categories)
        ]

    async def tag(self, raw_path: str, options: VideoOptions) -> AsyncIterator[VideoProgress | VideoOutcome]:
        started = time.perf_counter()
        self._validate(options)
        path = self.paths.resolve(raw_path)
        loaded = None if options.v3 else self._existing(options)
        active = self._active_models(options)
        if not active:
            raise InvalidInput("no tagger is active (none configured, or every category skipped)")
        threshold = (
            options.threshold
            if options.threshold is not None
            else min(t.spec.threshold for t in self.taggers)
        )
        plan = plan_reprocessing(
            loaded.result if loaded else None,
            active,
            frame_interval=options.frame_interval,
            threshold=threshold,
            reprocess_with_more_accurate_same_model=self.reprocess_more_accurate,
        )
        if loaded is not None and plan.nothing_to_run:
            # Everything stored is still valid: answer without decoding a single frame.
            yield self._answer(loaded, loaded.result, rerun=False, started=started)
            return

        run_names = {m.file_name for m in plan.models_to_run}
        taggers = [t for t in self.taggers if t.spec.display_name in run_names]
        run_categories = set(plan.run_categories)
        info = await asyncio.get_running_loop().run_in_executor(self._decoders, video.probe, path)
        progress: asyncio.Queue[VideoProgress] = asyncio.Queue(maxsize=16)
        async with self._video_slots:
            collector = asyncio.create_task(
                self._collect(path, info, taggers, run_categories, threshold, options, progress)
            )
            waiter: asyncio.Future[VideoProgress] | None = None
            try:
                while not collector.done():
                    waiter = asyncio.ensure_future(progress.get())
                    await asyncio.wait({waiter, collector}, return_when=asyncio.FIRST_COMPLETED)
                    if waiter.done():
                        yield waiter.result()
                    else:
                        waiter.cancel()
                frames, report, stats = await collector
            finally:
                # The consumer went away (client cancelled): stop decoding and inference, and keep
                # this video's slot until the decoder has stopped and its frames' slots are free.
                if waiter is not None:
                    waiter.cancel()
                collector.cancel()
                await asyncio.wait({collector})
                if not collector.cancelled():
                    collector.exception()  # retrieved here; the consumer is gone
        yield VideoProgress(stats.done, stats.total, time.perf_counter() - started)
        outcome_frames = frames
        if not outcome_frames:
            raise InvalidInput(f"{raw_path}: no decodable video frames ({report.error or 'empty stream'})")
        duration = info.duration_s
        if options.v3:
            yield self._v3_answer(outcome_frames, duration, taggers, options, report, started, stats)
            return
        fresh = result_from_frames(
            outcome_frames,
            duration=duration,
            frame_interval=options.frame_interval,
            models=plan.model_infos(options.frame_interval, threshold),
        )
        merged = merge_results(loaded.result, fresh, plan.run_categories) if loaded else fresh
        outcome = self._answer(loaded, merged, rerun=True, started=started)
        outcome.partial, outcome.partial_reason = report.partial, report.error or ""
        outcome.frames = len(outcome_frames)
        outcome.preprocess_seconds, outcome.inference_seconds = (
            stats.preprocess_seconds,
            stats.inference_seconds,
        )
        outcome.model_count = len(taggers)
        outcome.decode_strategy = str(report.strategy)
        yield outcome

    def _answer(
        self, loaded: LoadedResult | None, result: AIVideoResult, *, rerun: bool, started: float
    ) -> VideoOutcome:
        info = build_video_tag_info(result, self.categories)
        return VideoOutcome(
            duration=result.metadata.duration,
            json_result=json_result_string(result, rerun=rerun, converted=bool(loaded and loaded.converted)),
            video_tag_info=info.model_dump(),
            total_seconds=time.perf_counter() - started,
        )

    def _v3_answer(
        self,
        frames: list[FrameResult],
        duration: float,
        taggers: list[Tagger],
        options: VideoOptions,
        report: video.DecodeReport,
        started: float,
        stats: _Stats,
    ) -> VideoOutcome:
        runs = raw_runs(frames, options.frame_interval, max_merge=_V3_MAX_MERGE_S)
        v3 = {
            "schema_version": 3,
            "duration": duration,
            "frame_interval": float(options.frame_interval),
            "models": [
                {
                    "name": t.spec.display_name,
                    "identifier": t.spec.identifier,
                    "version": t.spec.version,
                    "categories": t.categories,
                    "type": "ImClass",
                }
                for t in taggers
            ],
            "timespans": {
                category: {
                    tag: [{"start": span.start, "end": span.end, "confidence": None} for span in spans]
                    for tag, spans in by_tag.items()
                }
                for category, by_tag in runs.items()
            },
        }
        return VideoOutcome(
            duration=duration,
            v3_result=v3,
            partial=report.partial,
            partial_reason=report.error or "",
            frames=len(frames),
            preprocess_seconds=stats.preprocess_seconds,
            inference_seconds=stats.inference_seconds,
            total_seconds=time.perf_counter() - started,
            model_count=len(taggers),
            decode_strategy=str(report.strategy),
        )

    async def _collect(
        self,
        path: Any,
        info: video.VideoInfo,
        taggers: list[Tagger],
        run_categories: set[str],
        threshold: float,
        options: VideoOptions,
        progress: asyncio.Queue[VideoProgress],
    ) -> tuple[list[FrameResult], video.DecodeReport, _Stats]:
        samples = video.iter_samples(path, options.frame_interval, vr=options.vr, info=info)
        contracts = list(dict.fromkeys(t.entry.input for t in taggers))
        stats = _Stats(total=samples.expected_samples)
        results: list[FrameResult] = []
        video_slots = asyncio.Semaphore(_FRAMES_IN_FLIGHT)

        async def infer(tagger: Tagger, tensors: dict[InputContract, FloatTensor]) -> dict[str, AnyArray]:
            started = time.perf_counter()
            tensor = tensors[tagger.entry.input][np.newaxis]
            outputs = await self.session.infer(
                tagger.model, {tagger.entry.input.tensor: tensor}, tagger.outputs
            )
            STAGE_SECONDS.labels("triton").observe(time.perf_counter() - started)
            return outputs

        async def tag_frame(time_s: float, frame: BgrImage) -> None:
            try:
                prepared = time.perf_counter()
                tensors = await self.pool.run(_prepare, frame, contracts)
                del frame  # the full-size picture is not needed any more: only its tensors
                stats.preprocess_seconds += time.perf_counter() - prepared
                inferring = time.perf_counter()
                per_tagger = await asyncio.gather(*(infer(t, tensors) for t in taggers))
                stats.inference_seconds += time.perf_counter() - inferring
                tags: dict[str, list[Any]] = {}
                for tagger, outputs in zip(taggers, per_tagger, strict=True):
                    for category, scores in tagger.scores(outputs).items():
                        if category not in run_categories:
                            continue
                        hits = tags.setdefault(category, [])
                        for tag, confidence in scores.items():
                            if confidence > threshold:
                                hits.append((tag, round(confidence, 2)) if options.return_confidence else tag)
                results.append(FrameResult(time=time_s, tags=tags))
                stats.done += 1
            finally:
                self._release_frame(video_slots)

        iterator: Iterator[video.Sample] = iter(samples)
        decoding: concurrent.futures.Future[video.Sample | None] | None = None
        try:
            async with asyncio.TaskGroup() as group:
                while True:
                    # A slot first, then the frame: a decoded frame always holds one.
                    await self._acquire_frame(video_slots)
                    handed_over = False
                    try:
                        decoding = self._decoders.submit(_next_sample, iterator)
                        sample = await asyncio.wrap_future(decoding)
                        decoding = None
                        if sample is not None:
                            group.create_task(tag_frame(sample.time_s, sample.frame))
                            handed_over = True
                    finally:
                        if not handed_over:
                            self._release_frame(video_slots)
                    if sample is None:
                        break
                    del sample  # the task holds the frame now, and lets go of it once preprocessed
                    event = stats.maybe_report(time.perf_counter())
                    if event is not None and not progress.full():
                        progress.put_nowait(event)  # progress is lossy: a slow reader never blocks work
        finally:
            # Stops the decoder thread's work on cancellation too (client gone, Triton down). A next()
            # under way cannot be interrupted; the iterator is closed once it returns (closing it
            # from another thread meanwhile would fail), in the decoder pool like the rest of its work.
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self._decoders, _close_after, samples, decoding)
        results.sort(key=lambda frame: frame.time)
        report = samples.report
        VIDEO_FRAMES_DECODED.labels(str(report.strategy)).inc(report.decoded_frames)
        return results, report, stats

    async def _acquire_frame(self, video_slots: asyncio.Semaphore) -> None:
        """This video's slot, then one of the server's: a video waiting for a global slot holds one
        of its own only, and both are released together."""
        await video_slots.acquire()
        try:
            await self._frame_slots.acquire()
        except BaseException:
            video_slots.release()
            raise
        VIDEO_FRAMES_IN_FLIGHT.inc()

    def _release_frame(self, video_slots: asyncio.Semaphore) -> None:
        VIDEO_FRAMES_IN_FLIGHT.dec()
        self._frame_slots.release()
        video_slots.release()


def _next_sample(iterator: Iterator[video.Sample]) -> video.Sample | None:
    """The next sample, in a decoder thread; its decoding time is the `decode` stage."""
    started = time.perf_counter()
    sample = next(iterator, None)
    if sample is not None:
        STAGE_SECONDS.labels("decode").observe(time.perf_counter() - started)
    return sample


def _close_after(
    samples: video.SampleIterator, decoding: concurrent.futures.Future[video.Sample | None] | None
) -> None:
    if decoding is not None and not decoding.cancel():
        concurrent.futures.wait([decoding])
    samples.close()


def _prepare(frame: BgrImage, contracts: list[InputContract]) -> dict[InputContract, FloatTensor]:
    started = time.perf_counter()
    tensors = {contract: preprocess(frame, contract)[0] for contract in contracts}
    STAGE_SECONDS.labels("preprocess").observe(time.perf_counter() - started)
    return tensors


class _Stats:
    """Counters of one video."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.started = time.perf_counter()
        self.last_report = self.started
        self.preprocess_seconds = 0.0
        self.inference_seconds = 0.0

    def maybe_report(self, now: float) -> VideoProgress | None:
        if now - self.last_report < _PROGRESS_EVERY_S:
            return None
        self.last_report = now
        return VideoProgress(self.done, self.total, now - self.started)
