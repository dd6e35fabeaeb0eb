"""The result store in the tagging flows (fake Triton session, real SQLite, real files): the same
question about an unchanged file is answered without decoding or inference; a changed file or a
request with its own .AI.json is computed as before.

Each test runs inside asyncio.run (no pytest-asyncio)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import cv2
import numpy as np

from stash_vision.catalog.entries import Catalog
from stash_vision.server.image_source import ImageLoader, ImagePath
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.results.cache import ResultCache
from stash_vision.server.results.store import ResultStore
from stash_vision.server.tagging.image_flow import ImageTagging, TaggingOptions
from stash_vision.server.tagging.taggers.registry import build_taggers
from stash_vision.server.tagging.video_flow import VideoOptions, VideoOutcome, VideoTagging
from stash_vision.server.workers import CpuPool
from tests.unit.test_video_tagging_flow import FakeSession, write_video


def _cache(tmp_path: Path) -> ResultCache:
    return ResultCache(ResultStore(tmp_path / "jobs.db", max_bytes=1 << 20))


def _images(session: FakeSession, cache: ResultCache) -> ImageTagging:
    taggers = build_taggers(Catalog.load().select(["open_nsfw"]))
    loader = ImageLoader(MediaPaths([], {}), ImageLimits(10**8, 1 << 28))
    return ImageTagging(taggers, session, loader, CpuPool(2), results=cache)


def _videos(session: FakeSession, cache: ResultCache) -> VideoTagging:
    taggers = build_taggers(Catalog.load().select(["open_nsfw"]))
    return VideoTagging(taggers, session, MediaPaths([], {}), CpuPool(2), results=cache)


def _write_image(path: Path, shade: int) -> Path:
    cv2.imwrite(str(path), np.full((64, 64, 3), shade, np.uint8))
    return path


async def _final(videos: VideoTagging, path: Path, options: VideoOptions) -> VideoOutcome:
    outcome = None
    async for event in videos.tag(str(path), options):
        if isinstance(event, VideoOutcome):
            outcome = event
    assert outcome is not None
    return outcome


def test_an_unchanged_image_is_answered_from_the_store_with_every_requests_options(tmp_path: Path) -> None:
    image = _write_image(tmp_path / "a.jpg", 120)

    async def scenario() -> None:
        session = FakeSession()
        images = _images(session, _cache(tmp_path))
        first = await images.tag(
            [ImagePath(str(image))], TaggingOptions(threshold=0.5, return_confidence=True)
        )
        calls = session.calls
        assert calls == 1
        again = await images.tag(
            [ImagePath(str(image))], TaggingOptions(threshold=0.5, return_confidence=True)
        )
        assert session.calls == calls, "no inference for a stored image"
        assert again.results == first.results
        # Another threshold is applied to the stored scores, not a reason to recompute.
        stricter = await images.tag([ImagePath(str(image))], TaggingOptions(threshold=0.9))
        assert session.calls == calls
        assert stricter.results[0].error is None

        _write_image(image, 30)  # the file changes: new size or mtime, new key
        os.utime(image, ns=(1, 10**18))
        await images.tag([ImagePath(str(image))], TaggingOptions(threshold=0.5))
        assert session.calls == calls + 1

    asyncio.run(scenario())


def test_a_missing_image_is_still_its_own_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        images = _images(FakeSession(), _cache(tmp_path))
        outcome = await images.tag([ImagePath(str(tmp_path / "gone.jpg"))], TaggingOptions())
        assert outcome.results[0].error and "not found" in outcome.results[0].error
        assert outcome.results[0].error_kind == "MediaNotFound"

    asyncio.run(scenario())


def test_a_video_asked_again_without_its_ai_json_is_answered_from_the_store(tmp_path: Path) -> None:
    clip = write_video(tmp_path / "clip.mp4", 100)
    options = VideoOptions(frame_interval=0.4, threshold=0.3)

    async def scenario() -> None:
        session = FakeSession()
        videos = _videos(session, _cache(tmp_path))
        first = await _final(videos, clip, options)
        calls = session.calls
        assert calls > 0 and first.json_result is not None
        again = await _final(videos, clip, options)
        assert session.calls == calls, "no decoding or inference for a stored video"
        assert again.json_result == first.json_result, "the caller gets the .AI.json it has not written yet"
        assert again.video_tag_info == first.video_tag_info

        # The plugin sends its own .AI.json: the contract's rules answer (nothing rerun: null).
        with_file = await _final(
            videos,
            clip,
            VideoOptions(frame_interval=0.4, threshold=0.3, existing=json.loads(first.json_result)),
        )
        assert with_file.json_result is None and session.calls == calls

        # A finer frame interval than the stored one is another question (a coarser one is not, §3.7).
        await _final(videos, clip, VideoOptions(frame_interval=0.2, threshold=0.3))
        assert session.calls > calls

    asyncio.run(scenario())


def test_a_store_that_cannot_be_written_is_a_miss_not_an_error(tmp_path: Path) -> None:
    image = _write_image(tmp_path / "a.jpg", 120)
    cache = _cache(tmp_path)
    assert cache.store is not None
    cache.store.close()  # every later call fails inside the store

    async def scenario() -> None:
        session = FakeSession()
        images = _images(session, cache)
        for _ in range(2):
            outcome = await images.tag([ImagePath(str(image))], TaggingOptions())
            assert outcome.results[0].error is None
        assert session.calls == 2

    asyncio.run(scenario())
