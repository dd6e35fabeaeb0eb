"""One video's sampled frames through the taggers: decoding in a decoder thread, one sample at a
time; preprocessing on the CPU pool; every tagger's Triton request per frame. A frame holds a slot
of its video (`FRAMES_IN_FLIGHT_PER_VIDEO`) and one of the server's (`frame_slots`) from before it
is decoded until its last Triton answer, so memory stays flat however long the file is."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from stash_vision.catalog.entries import InputContract
from stash_vision.server.arrays import AnyArray, BgrImage, FloatTensor
from stash_vision.server.media import video
from stash_vision.server.metrics import STAGE_SECONDS, VIDEO_FRAMES_DECODED, VIDEO_FRAMES_IN_FLIGHT
from stash_vision.server.preprocessing import preprocess
from stash_vision.server.priority import PrioritySemaphore
from stash_vision.server.tagging.aitagger_format.timespans import FrameResult
from stash_vision.server.tagging.taggers.base import Tagger
from stash_vision.server.triton_session import InferenceSession
from stash_vision.server.workers import CpuPool

FRAMES_IN_FLIGHT_PER_VIDEO = 6
"""Per video: enough for decoding and inference to overlap, few enough that one video cannot hold
every global slot when others wait."""
_PROGRESS_EVERY_S = 1.0


@dataclass(frozen=True)
class VideoProgress:
    frames_done: int
    frames_total: int
    elapsed_seconds: float

    @property
    def frames_per_second(self) -> float:
        return self.frames_done / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0


class FramePipeline:
    def __init__(
        self,
        session: InferenceSession,
        pool: CpuPool,
        decoders: ThreadPoolExecutor,
        frame_slots: PrioritySemaphore,
    ) -> None:
        self.session = session
        self.pool = pool
        self._decoders = decoders
        self._frame_slots = frame_slots

    async def collect(
        self,
        path: Any,
        info: video.VideoInfo,
        taggers: list[Tagger],
        run_categories: set[str],
        threshold: float,
        frame_interval: float,
        vr: bool,
        return_confidence: bool,
        progress: asyncio.Queue[VideoProgress],
    ) -> tuple[list[FrameResult], video.DecodeReport, FrameStats]:
        samples = video.iter_samples(path, frame_interval, vr=vr, info=info)
        contracts = list(dict.fromkeys(t.entry.input for t in taggers))
        stats = FrameStats(total=samples.expected_samples)
        results: list[FrameResult] = []
        video_slots = asyncio.Semaphore(FRAMES_IN_FLIGHT_PER_VIDEO)

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
                                hits.append((tag, round(confidence, 2)) if return_confidence else tag)
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


class FrameStats:
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
