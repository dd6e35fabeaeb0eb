"""Unit tests of VideoTagging's flow with a fake InferenceSession in place of Triton, on small videos
generated here: the `stash_vision_stage_seconds` stages it records per sample, the cap on frames in
flight per video and across all videos, and that a consumer that goes away (client disconnect)
gives back every slot it held.

Each test runs inside asyncio.run (no pytest-asyncio)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest
from av.video.stream import VideoStream
from prometheus_client import REGISTRY

from stash_vision.catalog.entries import Catalog
from stash_vision.server.media import video
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.tagging.taggers.registry import build_taggers
from stash_vision.server.tagging.video_flow import VideoOptions, VideoOutcome, VideoProgress, VideoTagging
from stash_vision.server.triton_session import ModelStatus
from stash_vision.server.workers import CpuPool

AnyArray = npt.NDArray[Any]
TEST_TIMEOUT_S = 60.0
FPS = 25


class FakeSession:
    """The InferenceSession protocol: open_nsfw's [sfw, nsfw] answer after `delay_s`, or never while
    `gate` is closed. Records how many sampled frames were in flight at every call."""

    def __init__(self, delay_s: float = 0.0, gate: asyncio.Event | None = None) -> None:
        self.delay_s = delay_s
        self.gate = gate
        self.calls = 0
        self.in_flight_seen: list[float] = []

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, AnyArray],
        outputs: Sequence[str],
        timeout_s: float | None = None,
    ) -> dict[str, AnyArray]:
        self.calls += 1
        self.in_flight_seen.append(frames_in_flight())
        if self.gate is not None:
            await self.gate.wait()
        await asyncio.sleep(self.delay_s)
        return {name: np.array([[0.2, 0.8]], np.float32) for name in outputs}

    async def server_ready(self) -> bool:
        return True

    async def model_status(self, model: str) -> ModelStatus:
        return ModelStatus(ready=True, device="cpu")

    async def close(self) -> None:
        pass


def frames_in_flight() -> float:
    return REGISTRY.get_sample_value("stash_vision_video_frames_in_flight") or 0.0


def stage_count(stage: str) -> float:
    return REGISTRY.get_sample_value("stash_vision_stage_seconds_count", {"stage": stage}) or 0.0


def write_video(path: Path, frames: int) -> Path:
    """64x48 H.264 at 25 fps, a keyframe every 250 frames, 3 B-frames."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream(
            "libx264", rate=FPS, options={"g": "250", "bf": "3", "preset": "veryfast", "sc_threshold": "0"}
        )
        assert isinstance(stream, VideoStream)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for i in range(frames):
            image = np.full((48, 64, 3), (i * 7) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 s: 40 samples every 0.2 s (step 5)."""
    return write_video(tmp_path_factory.mktemp("video") / "clip.mp4", 200)


def make_videos(session: FakeSession, **kwargs: Any) -> VideoTagging:
    taggers = build_taggers(Catalog.load().select(["open_nsfw"]))
    return VideoTagging(taggers, session, MediaPaths([], {}), CpuPool(2), **kwargs)


OPTIONS = VideoOptions(frame_interval=0.2, threshold=0.5)


async def tag(videos: VideoTagging, path: Path) -> VideoOutcome:
    outcome = None
    async for event in videos.tag(str(path), OPTIONS):
        if not isinstance(event, VideoProgress):
            outcome = event
    assert outcome is not None
    return outcome


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), TEST_TIMEOUT_S)

    asyncio.run(bounded())


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not condition():
            await asyncio.sleep(0.005)


# ------------------------------------------------------------------------------------------------ stages


def test_every_sample_records_its_decode_preprocess_and_triton_stages(clip: Path) -> None:
    session = FakeSession()
    videos = make_videos(session)
    before = {stage: stage_count(stage) for stage in ("decode", "preprocess", "triton")}
    decoded_before = sum(
        REGISTRY.get_sample_value("stash_vision_video_frames_decoded_total", {"strategy": s}) or 0.0
        for s in ("sequential", "skip_nonref", "skip_bidir", "seek")
    )

    async def scenario() -> None:
        outcome = await tag(videos, clip)
        assert outcome.frames == 40
        assert outcome.decode_strategy == "skip_bidir"

    run(scenario)
    assert session.calls == 40
    # One decode and one preprocess per sample, one Triton round trip per sample and tagger.
    assert {stage: stage_count(stage) - before[stage] for stage in before} == {
        "decode": 40,
        "preprocess": 40,
        "triton": 40,
    }
    assert (REGISTRY.get_sample_value("stash_vision_stage_seconds_sum", {"stage": "decode"}) or 0) > 0
    decoded = sum(
        REGISTRY.get_sample_value("stash_vision_video_frames_decoded_total", {"strategy": s}) or 0.0
        for s in ("sequential", "skip_nonref", "skip_bidir", "seek")
    )
    # I- and P-frames only: about a quarter of the 200.
    assert 40 <= decoded - decoded_before < 100
    assert frames_in_flight() == 0


# ------------------------------------------------------------------------------------------ frames in flight


def test_one_video_has_at_most_six_frames_in_flight(clip: Path) -> None:
    # Inference is held until six frames wait on it (or 10 s pass), so the cap is reached however
    # slowly a loaded machine decodes; once released, the peak must never pass six.
    gate = asyncio.Event()
    session = FakeSession(delay_s=0.02, gate=gate)
    videos = make_videos(session, global_frames_in_flight=8)

    async def release_at_six() -> None:
        deadline = asyncio.get_running_loop().time() + 10
        while frames_in_flight() < 6 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.005)
        gate.set()

    async def scenario() -> None:
        releaser = asyncio.create_task(release_at_six())
        assert (await tag(videos, clip)).frames == 40
        await releaser

    run(scenario)
    assert max(session.in_flight_seen) == 6
    assert frames_in_flight() == 0


def test_frames_in_flight_are_capped_across_all_videos(clip: Path) -> None:
    session = FakeSession(delay_s=0.02)
    videos = make_videos(session, max_concurrent_videos=3, global_frames_in_flight=4)
    peak = 0.0

    async def watch() -> None:
        nonlocal peak
        while True:
            peak = max(peak, frames_in_flight())
            await asyncio.sleep(0)

    async def scenario() -> None:
        watcher = asyncio.create_task(watch())
        try:
            outcomes = await asyncio.gather(*(tag(videos, clip) for _ in range(3)))
        finally:
            watcher.cancel()
        assert [o.frames for o in outcomes] == [40, 40, 40]

    run(scenario)
    assert session.calls == 120
    assert peak == 4 and max(session.in_flight_seen) <= 4
    assert frames_in_flight() == 0


def test_a_consumer_that_goes_away_gives_back_every_slot(clip: Path) -> None:
    gate = asyncio.Event()
    session = FakeSession(gate=gate)
    videos = make_videos(session, max_concurrent_videos=2, global_frames_in_flight=4)

    async def consume() -> None:
        async for _ in videos.tag(str(clip), OPTIONS):
            pass

    async def scenario() -> None:
        # Two videos whose frames never come back from Triton: together they fill the server's cap.
        consumers = [asyncio.create_task(consume()) for _ in range(2)]
        await until(lambda: frames_in_flight() == 4 and session.calls == 4)
        for consumer in consumers:
            consumer.cancel()  # the client disconnects
        for consumer in consumers:
            with pytest.raises(asyncio.CancelledError):
                await consumer
        # Once the answer streams have ended, nothing is held: no frame, no video, no decoder.
        # Every slot is free (the capacities include the reserves only interactive calls use).
        assert frames_in_flight() == 0
        assert videos._frame_slots._value == videos._frame_slots.capacity
        assert videos._video_slots._value == videos._video_slots.capacity
        gate.set()
        assert (await tag(videos, clip)).frames == 40

    run(scenario)


class SlowDecoder:
    """Wraps the real sample iterator: the second sample takes until `release` is set, and close()
    notes whether a next() was still running in another thread (which a generator refuses)."""

    def __init__(self, inner: video.SampleIterator) -> None:
        self.inner = inner
        self.release = threading.Event()
        self.decoding = threading.Event()
        self.busy = False
        self.closed_while_busy: bool | None = None

    @property
    def expected_samples(self) -> int:
        return self.inner.expected_samples

    @property
    def report(self) -> video.DecodeReport:
        return self.inner.report

    def __iter__(self) -> SlowDecoder:
        return self

    def __next__(self) -> video.Sample:
        self.busy = True
        try:
            sample = next(self.inner)
            if sample.k == 1:
                self.decoding.set()
                self.release.wait(10)
            return sample
        finally:
            self.busy = False

    def close(self) -> None:
        self.closed_while_busy = self.busy
        self.inner.close()


def test_a_consumer_that_goes_away_while_a_frame_decodes_closes_the_decoder_after_it(
    clip: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoders: list[SlowDecoder] = []
    real = video.iter_samples

    def slow(*args: Any, **kwargs: Any) -> SlowDecoder:
        decoders.append(SlowDecoder(real(*args, **kwargs)))
        return decoders[-1]

    monkeypatch.setattr(video, "iter_samples", slow)
    videos = make_videos(FakeSession())

    async def scenario() -> None:
        async def consume() -> None:
            async for _ in videos.tag(str(clip), OPTIONS):
                pass

        consumer = asyncio.create_task(consume())
        await until(lambda: bool(decoders) and decoders[0].decoding.is_set())
        consumer.cancel()
        threading.Timer(0.2, decoders[0].release.set).start()
        with pytest.raises(asyncio.CancelledError):
            await consumer
        assert frames_in_flight() == 0 and videos._frame_slots._value == videos._frame_slots.capacity

    run(scenario)
    (decoder,) = decoders
    assert decoder.closed_while_busy is False
    assert decoder.report.partial and "stopped by the caller" in (decoder.report.error or "")


def test_a_global_cap_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="global_frames_in_flight"):
        make_videos(FakeSession(), global_frames_in_flight=0)
