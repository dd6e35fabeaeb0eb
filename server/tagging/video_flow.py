"""Tags a video for the AITagger plugin (aitagger-contract.md §1.3, §3.4-3.7).

Decoding runs in its own thread per video and yields only the sampled frames; each frame is
preprocessed on the CPU pool and sent to every tagger's model, so frames of all concurrent videos
and images share Triton batches while the next frames decode. A frame is in flight from the moment
its decoding starts until its last Triton answer: at most `FRAMES_IN_FLIGHT_PER_VIDEO` per video and
`global_frames_in_flight` across all videos (a slot is taken before the frame is decoded; waiters
served interactive first, then first come, first served), and at most `max_concurrent_videos` videos decode at once, so
memory stays flat however long and however many the files are. Existing results decide what to
re-run (§3.7): the plugin's `.AI.json`, or else the result store's answer for the file as it is
now; nothing to re-run answers without decoding. Cancelling the
consumer stops decoding and inference and frees the video's slots before its answer stream ends.

The frame pipeline itself is `video_frames.FramePipeline`. Each sample records the `stash_vision_stage_seconds` stages the image paths record: `decode` (the
decoder's work for one sample: every frame it decodes up to it, and its conversion), `preprocess`
and `triton` (one round trip per tagger)."""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from stash_vision.server.errors import InvalidInput
from stash_vision.server.media import video
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.priority import PrioritySemaphore
from stash_vision.server.results.cache import ResultCache
from stash_vision.server.tagging.aitagger_format.ai_json import AIVideoResult, LoadedResult, load_ai_json
from stash_vision.server.tagging.aitagger_format.categories import CategoryConfig
from stash_vision.server.tagging.aitagger_format.reprocess import (
    ActiveModel,
    json_result_string,
    merge_results,
    plan_reprocessing,
)
from stash_vision.server.tagging.aitagger_format.schema_v3 import v3_result
from stash_vision.server.tagging.aitagger_format.timespans import (
    FrameResult,
    build_video_tag_info,
    result_from_frames,
)
from stash_vision.server.tagging.taggers.base import Tagger
from stash_vision.server.tagging.video_frames import (
    FRAMES_IN_FLIGHT_PER_VIDEO,
    FramePipeline,
    FrameStats,
    VideoProgress,
)
from stash_vision.server.triton_session import InferenceSession
from stash_vision.server.workers import CpuPool

# VideoProgress is what `tag` yields while it works; it lives beside the frame pipeline that counts it.
__all__ = ["VideoOptions", "VideoOutcome", "VideoProgress", "VideoTagging"]

# Frames in flight that job items leave to interactive calls.
_INTERACTIVE_FRAMES = FRAMES_IN_FLIGHT_PER_VIDEO // 2
# The result store's kind of a video's .AI.json (server/results).
_STORED_KIND = "video-ai-json"


@dataclass(frozen=True)
class VideoOptions:
    frame_interval: float
    threshold: float | None = None
    return_confidence: bool = True
    vr: bool = False
    existing: Any = None  # the parsed .AI.json, or None
    skip_categories: frozenset[str] = frozenset()
    v3: bool = False


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
        results: ResultCache | None = None,
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
        self._decoders = ThreadPoolExecutor(max_concurrent_videos + 1, thread_name_prefix="video")
        # Interactive calls are admitted ahead of job items (server/priority.py). A video holds its
        # decoder for the whole file, so interactive calls get one more, reserved: a job decodes as
        # many videos at once as the plugin's calls would, and a call arriving meanwhile starts at
        # once. Frames are held briefly: jobs leave a few of the cap to interactive calls, which
        # keeps a plugin's latency during a job within 1.5x idle (docs/jobs.md, bench_jobs).
        self._video_slots = PrioritySemaphore(
            max_concurrent_videos + 1,
            background_limit=max_concurrent_videos,
            interactive_limit=max_concurrent_videos,
        )
        self._frame_slots = PrioritySemaphore(
            global_frames_in_flight, background_limit=max(1, global_frames_in_flight - _INTERACTIVE_FRAMES)
        )
        self.global_frames_in_flight = global_frames_in_flight
        self.results = results or ResultCache(None)
        self._frames = FramePipeline(session, pool, self._decoders, self._frame_slots)
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
        # The stored answer for this file as it is now (a job tagged it, or the plugin asked before
        # and timed out): the base of the plan, exactly like an .AI.json the plugin sends.
        stored_key, kept = (
            ("", None)
            if options.v3
            else await self.results.get(
                _STORED_KIND, path, {"vr": options.vr, "return_confidence": options.return_confidence}
            )
        )
        from_store = loaded is None and kept is not None
        if from_store and kept is not None:
            loaded = load_ai_json(json.loads(kept["ai_json"]), self.categories)
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
            # Everything stored is still valid: answer without decoding a single frame. An answer from
            # the store carries its json_result: the caller has no .AI.json of it yet.
            answer = self._answer(loaded, loaded.result, rerun=from_store, started=started)
            if from_store and kept is not None:
                answer.partial, answer.partial_reason = (
                    bool(kept.get("partial")),
                    str(kept.get("partial_reason", "")),
                )
            yield answer
            return

        run_names = {m.file_name for m in plan.models_to_run}
        taggers = [t for t in self.taggers if t.spec.display_name in run_names]
        run_categories = set(plan.run_categories)
        info = await asyncio.get_running_loop().run_in_executor(self._decoders, video.probe, path)
        progress: asyncio.Queue[VideoProgress] = asyncio.Queue(maxsize=16)
        async with self._video_slots:
            collector = asyncio.create_task(
                self._frames.collect(
                    path,
                    info,
                    taggers,
                    run_categories,
                    threshold,
                    options.frame_interval,
                    options.vr,
                    options.return_confidence,
                    progress,
                )
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
            document = v3_result(outcome_frames, duration, options.frame_interval, [t.spec for t in taggers])
            yield self._with_run_facts(
                VideoOutcome(duration=duration, v3_result=document),
                report,
                outcome_frames,
                stats,
                taggers,
                started,
            )
            return
        fresh = result_from_frames(
            outcome_frames,
            duration=duration,
            frame_interval=options.frame_interval,
            models=plan.model_infos(options.frame_interval, threshold),
        )
        merged = merge_results(loaded.result, fresh, plan.run_categories) if loaded else fresh
        outcome = self._answer(loaded, merged, rerun=True, started=started)
        await self.results.put(
            stored_key,
            _STORED_KIND,
            {"ai_json": merged.to_json(), "partial": report.partial, "partial_reason": report.error or ""},
        )
        yield self._with_run_facts(outcome, report, outcome_frames, stats, taggers, started)

    @staticmethod
    def _with_run_facts(
        outcome: VideoOutcome,
        report: video.DecodeReport,
        frames: list[FrameResult],
        stats: FrameStats,
        taggers: list[Tagger],
        started: float,
    ) -> VideoOutcome:
        outcome.partial, outcome.partial_reason = report.partial, report.error or ""
        outcome.frames = len(frames)
        outcome.preprocess_seconds, outcome.inference_seconds = (
            stats.preprocess_seconds,
            stats.inference_seconds,
        )
        outcome.model_count = len(taggers)
        outcome.decode_strategy = str(report.strategy)
        outcome.total_seconds = time.perf_counter() - started
        return outcome

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
