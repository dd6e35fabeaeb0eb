"""Stash ids as media for face identification (server/faces/stash_media.py) against the Stash
stand-in on Stash's real schema: images from their file (zip members too) or downloaded with the
key, scenes from their file or their stream (and the stream actually decodes), screenshots as an
optional cover, galleries listed in full and chosen evenly, and each failure a clear error."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stash_vision.server.connections.errors import (
    SourceAuthFailed,
    SourceBadContent,
    SourceNotConfigured,
    SourceNotFound,
    SourceUnreachable,
)
from stash_vision.server.connections.stash import StashConnection
from stash_vision.server.errors import InvalidInput
from stash_vision.server.faces.scene_frames import FrameReport, evenly_spaced, read_frames
from stash_vision.server.faces.stash_media import StashImageRef, StashMedia, evenly_chosen
from stash_vision.server.image_source import ImageBytes, ImagePath
from tests.conftest import shared_file
from tests.standins.fixtures import free_port, stash_server
from tests.standins.stash import StashStandIn
from tests.unit.test_stash_connection import connect

__all__ = ["stash_server"]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def media(server: StashStandIn, key: str | None = "stash-secret") -> StashMedia:
    return StashMedia(connect(server, key))


def test_evenly_chosen_spreads_over_the_whole_gallery() -> None:
    assert evenly_chosen(3, 5) == [0, 1, 2]
    chosen = evenly_chosen(5000, 500)
    assert len(chosen) == len(set(chosen)) == 500
    assert chosen[0] == 0 and chosen[-1] == 4990 and all(b - a == 10 for a, b in itertools.pairwise(chosen))
    assert evenly_chosen(7, 3) == [0, 2, 4]


def test_images_from_their_file_a_zip_member_or_a_download(stash_server: StashStandIn) -> None:
    stash = media(stash_server)
    local = run(stash.image(StashImageRef("1")))
    assert isinstance(local, ImagePath) and local.path.endswith("faces/deepface/img2.jpg")
    member = run(stash.image(StashImageRef("8")))
    assert isinstance(member, ImagePath) and member.path.endswith("archive.zip/inner/img21.jpg")
    remote = run(stash.image(StashImageRef("7")))  # under /remote-only: only Stash can read it
    assert isinstance(remote, ImageBytes)
    assert remote.data == shared_file("testdata/faces/deepface/img6.jpg").read_bytes()


def test_image_errors_say_what_is_wrong(stash_server: StashStandIn) -> None:
    stash = media(stash_server)
    with pytest.raises(SourceNotFound, match="has no image 999"):
        run(stash.image(StashImageRef("999")))
    stash_server.fx.images["91"] = {**stash_server.fx.images["90"], "id": "91", "_path": "/remote-only/x.txt"}
    try:
        with pytest.raises(SourceBadContent, match="is not an image"):
            run(stash.image(StashImageRef("91")))
    finally:
        del stash_server.fx.images["91"]
    with pytest.raises(SourceNotConfigured, match="STASH_VISION_STASH_URL"):
        run(StashMedia(None).image(StashImageRef("1")))


def test_unreachable_stash_and_a_wrong_key_name_their_settings(stash_server: StashStandIn) -> None:
    with pytest.raises(SourceAuthFailed, match="STASH_VISION_STASH_API_KEY"):
        run(media(stash_server, key="wrong").scene("1"))
    paths = connect(stash_server).paths
    down = StashMedia(StashConnection(f"http://127.0.0.1:{free_port()}", "k", paths, retries=0))
    with pytest.raises(SourceUnreachable, match="STASH_VISION_STASH_URL"):
        run(down.gallery("1", 10))


def test_scene_from_its_file_or_its_stream(stash_server: StashStandIn) -> None:
    stash = media(stash_server)
    local = run(stash.scene("1"))
    assert not local.streamed and isinstance(local.source, Path) and local.source.name == "box.mp4"
    assert local.info.duration_s > 0 and local.options == {}
    streamed = run(stash.scene("2"))
    assert streamed.streamed and "/scene/2/stream" in str(streamed.source)
    assert "ApiKey: stash-secret\r\n" in streamed.options["headers"]
    assert streamed.info.duration_s > 0 and "apikey" not in streamed.label
    # The stream really decodes through PyAV with the key (seeking by Range).
    times = evenly_spaced(streamed.info.duration_s, 5, 0.05, 0.95)
    report = FrameReport(requested=len(times))
    frames = list(read_frames(streamed.source, streamed.info, times, report, options=streamed.options))
    assert len(frames) == 5 and report.decoded == 5, report.errors
    with pytest.raises(SourceNotFound, match="has no scene 404"):
        run(stash.scene("404"))


def test_screenshot_is_optional(stash_server: StashStandIn, caplog: pytest.LogCaptureFixture) -> None:
    stash = media(stash_server)
    video = run(stash.scene("1"))
    with caplog.at_level(logging.WARNING):
        assert run(stash.screenshot(video)) is None  # the stand-in has none for scene 1: logged only
    assert "screenshot not used" in caplog.text
    stash_server.fx.scenes["1"]["_screenshot"] = shared_file("testdata/faces/deepface/img1.jpg")
    try:
        cover = run(stash.screenshot(video))
    finally:
        del stash_server.fx.scenes["1"]["_screenshot"]
    assert isinstance(cover, ImageBytes) and cover.data[:2] == b"\xff\xd8"


def test_stream_failure_is_redacted_and_actionable(stash_server: StashStandIn) -> None:
    stash = media(stash_server)
    video = run(stash.scene("2"))
    assert isinstance(video.source, str) and "apikey=" in video.source
    error = stash.stream_failed(video.label, [video.redact(f"cannot open {video.source}: 401")])
    assert "apikey" not in str(error) and "STASH_VISION_PATH_MAPPINGS" in str(error)
    assert isinstance(error, SourceUnreachable)


def test_scene_without_a_duration_cannot_be_streamed(stash_server: StashStandIn) -> None:
    connection = connect(stash_server)
    stash = StashMedia(connection)

    async def no_duration(scene_id: str) -> Any:
        scene = await StashConnection.find_scene(connection, scene_id)
        return type(scene)(**{**scene.__dict__, "duration": None})

    connection.find_scene = no_duration  # type: ignore[method-assign]
    with pytest.raises(InvalidInput, match="no duration"):
        run(stash.scene("2"))


def test_gallery_listed_in_full_and_chosen_evenly(stash_server: StashStandIn) -> None:
    stash = media(stash_server)
    everything = run(stash.gallery("1", 500))
    assert everything.total == 4 and [i.id for i in everything.chosen] == ["1", "2", "4", "6"]
    capped = run(stash.gallery("1", 2))
    assert capped.total == 4 and [i.id for i in capped.chosen] == ["1", "4"]
    with pytest.raises(SourceNotFound, match="has no gallery 404"):
        run(stash.gallery("404", 10))
