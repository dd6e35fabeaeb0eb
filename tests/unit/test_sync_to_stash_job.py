"""`sync-to-stash` and its undo on the real job runner and job store, writing into the Stash
stand-in (every query and mutation executed on Stash's real schema). Tagging is scripted here (the
contract's example answers) so each case runs in seconds; tests/integration/test_sync_to_stash.py
runs the same jobs on the real stack with real models.

Covers: dry run (no mutation, the changes listed), apply, a second apply (no mutation), undo (the
stand-in's data as before, a user's own additions kept), a scene only Stash can read (a clear
per-item error), a Stash failing in the middle of an item (what was written is recorded and
undone), and a Stash unreachable or refusing the key (the job refused before any write)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any, cast

import pytest

from stash_vision.server.errors import AccessDenied, BackendUnavailable, InvalidInput
from stash_vision.server.faces.identification import FaceIdentification
from stash_vision.server.image_source import ImageBytes, ImageRef
from stash_vision.server.jobs.kinds.base import ItemProblem
from stash_vision.server.jobs.kinds.stash_sync_session import SyncSession, connect
from stash_vision.server.jobs.kinds.sync_to_stash import SyncToStash
from stash_vision.server.jobs.kinds.undo_sync_to_stash import UndoSyncToStash
from stash_vision.server.jobs.model import ItemRecord, Job, JobState
from stash_vision.server.jobs.runner import JobRunner
from stash_vision.server.jobs.store import JobStore
from stash_vision.server.tagging.image_flow import ImageOutcome, ImageTagging, TaggingOutcome, TagHit
from stash_vision.server.tagging.video_flow import VideoOptions, VideoOutcome, VideoTagging
from stash_vision.settings import Settings
from tests.conftest import shared_dir
from tests.standins.fixtures import STASH_KEY, free_port, stash_schema
from tests.standins.stash import STASH_PATH, StashStandIn, default_fixtures
from tests.standins.stash_tag_writes import visible_state
from tests.unit.test_stash_sync_plan import VIDEO_TAG_INFO

TIMEOUT_S = 60.0
IMAGE_TAGS = {"actions": [TagHit("Kissing_AI", 0.9)], "bodyparts": [TagHit("Face_AI", 0.8)]}
ITEMS = {"scene_ids": ["1", "2"], "image_ids": ["1", "7"]}  # scene 2 and image 7: only Stash reads them


class ScriptedImages:
    def __init__(self) -> None:
        self.refs: list[ImageRef] = []

    async def tag(self, refs: Sequence[ImageRef], options: Any) -> TaggingOutcome:
        self.refs.extend(refs)
        return TaggingOutcome([ImageOutcome(categories=IMAGE_TAGS) for _ in refs], [])


class ScriptedVideos:
    async def tag(self, path: str, options: VideoOptions) -> AsyncIterator[VideoOutcome]:
        assert (options.frame_interval, options.threshold) == (2.0, 0.3)  # the plugin's defaults
        yield VideoOutcome(duration=61.5, video_tag_info=VIDEO_TAG_INFO)


@pytest.fixture
def stash() -> Iterator[StashStandIn]:
    server = StashStandIn(stash_schema(), default_fixtures(shared_dir() / "testdata"), api_key=STASH_KEY)
    with server:
        yield server


def settings(tmp_path: Path, url: str, key: str = STASH_KEY) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        stash_url=url,
        stash_api_key=key,
        path_mappings={STASH_PATH: str(shared_dir() / "testdata")},
    )


class Harness:
    def __init__(self, tmp_path: Path, config: Settings) -> None:
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.images = ScriptedImages()
        kinds = [
            SyncToStash(
                cast(ImageTagging, self.images),
                cast(VideoTagging, ScriptedVideos()),
                cast(FaceIdentification, None),
                config,
            ),
            UndoSyncToStash(config),
        ]
        self.runner = JobRunner(JobStore(config.jobs_db), list(kinds), tmp_path / "jobs.lock")

    async def run(self, kind: str, params: dict[str, Any]) -> tuple[Job, dict[str, ItemRecord]]:
        job = await self.runner.submit(kind, params)

        async def finished() -> Job:
            while not (current := await self.runner.get(job.id)).state.finished:
                await asyncio.sleep(0.02)
            return current

        done = await asyncio.wait_for(finished(), TIMEOUT_S)
        page = await self.runner.results(job.id, page_size=500)
        return done, {r.item.split(" ")[0]: r for r in page.items}


def test_dry_run_apply_second_apply_and_undo(tmp_path: Path, stash: StashStandIn) -> None:
    # A user's own tag already on scene 1, and a tag the results want that exists already.
    stash.fx.tags["1"] = {"id": "1", "name": "Mine", "aliases": [], "ignore_auto_tag": False, "_parents": []}
    stash.fx.tags["2"] = {
        "id": "2",
        "name": "kissing_ai",
        "aliases": [],
        "ignore_auto_tag": False,
        "_parents": [],
    }
    stash.fx.scenes["1"]["_tags"] = ["1"]
    before = visible_state(stash.fx)

    async def scenario() -> None:
        harness = Harness(tmp_path, settings(tmp_path, stash.url))
        await harness.runner.start()
        job, items = await harness.run("sync-to-stash", ITEMS)
        assert job.state is JobState.SUCCEEDED, job.error
        assert stash.fx.mutations == [] and visible_state(stash.fx) == before
        scene = items["scene:1"].result or {}
        assert scene["applied"] is False
        # A dry run reports each tag it would create once, on whichever item needed it first.
        created = [t["name"] for r in items.values() for t in (r.result or {}).get("tags_created", [])]
        assert sorted(created) == ["AI", "AI_Tagged", "Blowjob_AI", "Boobs_AI", "Face_AI"]
        assert [t["name"] for t in scene["tags_added"]] == [
            "Blowjob_AI",
            "Boobs_AI",
            "AI_Tagged",
            "Kissing_AI",
        ]
        assert [t.get("id") for t in scene["tags_added"]] == [None, None, None, "2"]
        assert [(m["tag"], m["seconds"], m["end_seconds"]) for m in scene["markers_created"]] == [
            ("Kissing_AI", 0.0, 8.0),
            ("Blowjob_AI", 10.0, 40.0),
        ]
        assert items["scene:2"].state == "failed" and "STASH_VISION_PATH_MAPPINGS" in items["scene:2"].error
        assert isinstance(harness.images.refs[-1], ImageBytes), "image 7 is read from Stash"
        with pytest.raises(InvalidInput, match="dry run"):
            await harness.runner.submit("undo-sync-to-stash", {"job_id": job.id})

        applied, items = await harness.run("sync-to-stash", {**ITEMS, "apply": True})
        assert applied.state is JobState.SUCCEEDED
        names = {t["name"]: t for t in stash.fx.tags.values()}
        ai = names["AI"]["id"]
        assert names["Blowjob_AI"]["_parents"] == [ai] and names["Face_AI"]["_parents"] == [ai]
        assert names["AI_Tagged"]["_parents"] == [] and names["kissing_ai"]["_parents"] == []
        assert names["Blowjob_AI"]["ignore_auto_tag"] is True
        scene_tags = {stash.fx.tags[t]["name"] for t in stash.fx.scenes["1"]["_tags"]}
        assert scene_tags == {"Mine", "Blowjob_AI", "Boobs_AI", "AI_Tagged", "kissing_ai"}
        markers = sorted((m["title"], m["seconds"], m["end_seconds"]) for m in stash.fx.markers.values())
        assert markers == [("Blowjob_AI", 10.0, 40.0), ("Kissing_AI", 0.0, 8.0)]
        assert {stash.fx.tags[t]["name"] for t in stash.fx.images["7"]["_tags"]} == {
            "kissing_ai",
            "Face_AI",
            "AI_Tagged",
        }
        kinds = [name for name, _ in stash.fx.mutations]
        assert set(kinds) == {"tagCreate", "bulkSceneUpdate", "bulkImageUpdate", "sceneMarkerCreate"}
        assert kinds.count("tagCreate") == 5 and kinds.count("sceneMarkerCreate") == 2

        written = len(stash.fx.mutations)
        again, items = await harness.run("sync-to-stash", {**ITEMS, "apply": True})
        assert again.state is JobState.SUCCEEDED and len(stash.fx.mutations) == written
        assert (items["scene:1"].result or {})["unchanged"] == {"tags": 4, "markers": 2, "performers": 0}

        undone, items = await harness.run("undo-sync-to-stash", {"job_id": applied.id})
        assert undone.state is JobState.SUCCEEDED and undone.progress.failed == 0
        assert visible_state(stash.fx) == before
        await harness.runner.stop()

    asyncio.run(scenario())


def test_undo_keeps_what_a_user_added_since(tmp_path: Path, stash: StashStandIn) -> None:
    async def scenario() -> None:
        harness = Harness(tmp_path, settings(tmp_path, stash.url))
        await harness.runner.start()
        applied, _ = await harness.run("sync-to-stash", {"image_ids": ["1"], "apply": True})
        face = next(t["id"] for t in stash.fx.tags.values() if t["name"] == "Face_AI")
        stash.fx.images["3"]["_tags"] = [face]  # the user liked the tag and used it elsewhere
        undone, items = await harness.run("undo-sync-to-stash", {"job_id": applied.id})
        assert undone.state is JobState.SUCCEEDED
        assert stash.fx.images["1"].get("_tags") == []
        assert {t["name"] for t in stash.fx.tags.values()} == {"AI", "Face_AI"}
        assert (items["image:1"].result or {})["tags_still_used"] == [
            face,
            stash.fx.tags[face]["_parents"][0],
        ]
        await harness.runner.stop()

    asyncio.run(scenario())


def test_a_failure_between_writes_is_recorded_and_undone(tmp_path: Path, stash: StashStandIn) -> None:
    before = visible_state(stash.fx)
    stash.tag_writes.markers_before_failure = 1  # type: ignore[attr-defined]

    async def scenario() -> None:
        harness = Harness(tmp_path, settings(tmp_path, stash.url))
        await harness.runner.start()
        applied, items = await harness.run("sync-to-stash", {"scene_ids": ["1"], "apply": True})
        failed = items["scene:1"]
        assert failed.state == "failed" and "database is locked" in failed.error
        result = failed.result or {}
        assert result["incomplete"] is True
        assert len([m for m in result["markers_created"] if m.get("id")]) == 1 and len(stash.fx.markers) == 1
        undone, _ = await harness.run("undo-sync-to-stash", {"job_id": applied.id})
        assert undone.state is JobState.SUCCEEDED
        assert visible_state(stash.fx) == before
        await harness.runner.stop()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("where", "key", "error", "says"),
    [
        ("down", STASH_KEY, BackendUnavailable, "unreachable"),
        ("up", "wrong-key", AccessDenied, "STASH_VISION_STASH_API_KEY"),
    ],
)
def test_a_stash_that_cannot_be_written_refuses_the_job_before_any_write(
    tmp_path: Path, stash: StashStandIn, where: str, key: str, error: type[Exception], says: str
) -> None:
    url = stash.url if where == "up" else f"http://127.0.0.1:{free_port()}"

    async def scenario() -> None:
        harness = Harness(tmp_path, settings(tmp_path, url, key))
        await harness.runner.start()
        with pytest.raises(error, match=says):
            await harness.runner.submit("sync-to-stash", {**ITEMS, "apply": True})
        assert (await harness.runner.list()).jobs == []
        await harness.runner.stop()

    asyncio.run(scenario())
    assert stash.fx.mutations == []


def test_bad_parameters_are_named() -> None:
    kind = SyncToStash(
        cast(ImageTagging, None), cast(VideoTagging, None), cast(FaceIdentification, None), Settings()
    )
    for params, says in (
        ({"colour": "red"}, "unknown parameter"),
        ({"scene_ids": "1"}, "list of Stash ids"),
        ({"scene_ids": ["1 2"]}, "Stash ids"),
        ({"media": ["gallery"]}, "scene or image"),
        ({"apply": "yes"}, "true or false"),
        ({"min_confidence": 2}, "between 0 and 1"),
        ({}, "STASH_VISION_STASH_URL"),
    ):
        with pytest.raises(InvalidInput, match=says):
            kind.parse(params)


def test_a_whole_library_is_listed_and_only_untagged_skips_what_is_tagged(
    tmp_path: Path, stash: StashStandIn
) -> None:
    async def scenario() -> None:
        harness = Harness(tmp_path, settings(tmp_path, stash.url))
        await harness.runner.start()
        await harness.run("sync-to-stash", {"image_ids": ["1"], "apply": True})
        untagged, items = await harness.run("sync-to-stash", {"media": ["image"], "only_untagged": True})
        assert untagged.state is JobState.SUCCEEDED
        assert sorted(items) == sorted(f"image:{i}" for i in stash.fx.images if i != "1")
        everything, items = await harness.run("sync-to-stash", {})
        assert everything.progress.total == len(stash.fx.scenes) + len(stash.fx.images)
        assert set(items) == {f"scene:{i}" for i in stash.fx.scenes} | {f"image:{i}" for i in stash.fx.images}
        await harness.runner.stop()

    asyncio.run(scenario())


def test_a_stash_failing_while_listing_is_a_failed_item_that_says_so(
    tmp_path: Path, stash: StashStandIn
) -> None:
    kind = SyncToStash(
        cast(ImageTagging, None),
        cast(VideoTagging, None),
        cast(FaceIdentification, None),
        settings(tmp_path, stash.url),
    )
    params = kind.parse({"media": ["image"]})
    stash.fail_next(401)
    [problem] = list(kind.items(params))
    assert isinstance(problem, ItemProblem) and problem.item == "image:*"
    assert (
        "cannot list the images of Stash" in problem.error and "STASH_VISION_STASH_API_KEY" in problem.error
    )


def test_a_tag_made_by_someone_else_meanwhile_is_used_not_claimed(
    tmp_path: Path, stash: StashStandIn
) -> None:
    async def scenario() -> None:
        session = SyncSession(connect(settings(tmp_path, stash.url)), apply=True)
        await session.open(performers=False)
        stash.fx.tags["50"] = {
            "id": "50",
            "name": "Late_AI",
            "aliases": [],
            "ignore_auto_tag": False,
            "_parents": [],
        }
        tag_id, made = await session.tags.ensure("late_ai")
        assert tag_id == "50" and [t.name for t in made] == ["AI"]
        await session.connection.aclose()

    asyncio.run(scenario())
