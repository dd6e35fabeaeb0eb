"""`sync-to-stash` on the real stack (a synthetic tagger with known tags, SCRFD + MobileFaceNet,
real media) writing into the Stash stand-in, which runs every query and mutation on Stash's real
schema (issue 13, "Results into Stash without a plugin loop").

A `tag-library` job tags the stand-in's media first; the sync's dry run is then answered from the
result store (no inference), lists what it would change and writes nothing; apply writes the
AITagger plugin's tags, markers and an identified performer; a second apply writes nothing; the
undo brings the stand-in's data back to what it was. A Stash that refuses the key or does not
answer refuses the job through the HTTP API before anything is written."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import shared_dir, shared_file
from tests.integration.test_jobs import inference_count, results, submit, wait_for
from tests.stack import Stack, start_stack
from tests.standins.fixtures import STASH_KEY, stash_schema
from tests.standins.stash import STASH_PATH, STASHDB, StashStandIn, default_fixtures, make_zip
from tests.standins.stash_tag_writes import visible_state
from tests.synthetic_models import install_brightness_tagger

pytestmark = pytest.mark.integration

FACES = "testdata/faces/deepface"
ALICE = ["img1.jpg", "img2.jpg", "img4.jpg"]  # enrolled; image 3 (img5.jpg) is her too
ITEMS: dict[str, Any] = {"scene_ids": ["1"], "image_ids": ["1", "3", "7"]}  # image 7: only Stash reads it


@dataclass
class Scenario:
    stack: Stack
    stash: StashStandIn


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    testdata = shared_dir() / "testdata"
    fixtures = default_fixtures(testdata, make_zip(testdata, tmp_path_factory.mktemp("zip")))
    fixtures.images["3"]["_performers"] = []  # nobody linked yet: the sync adds who it finds
    stash = StashStandIn(stash_schema(), fixtures, api_key=STASH_KEY)
    with stash:
        workdir = tmp_path_factory.mktemp("sync")
        install_brightness_tagger(workdir / "data")
        env = {
            "STASH_VISION_STASH_URL": stash.url,
            "STASH_VISION_STASH_API_KEY": STASH_KEY,
            "STASH_VISION_PATH_MAPPINGS": json.dumps({STASH_PATH: str(testdata)}),
        }
        stack = start_stack(
            workdir,
            shared_dir() / "models",
            models=["synthetic_tagger", "scrfd_500m", "mobilefacenet"],
            extra_env=env,
        )
        try:
            enrol_alice(stack, tmp_path_factory.mktemp("enrol"))
            yield Scenario(stack, stash)
        finally:
            stack.stop()


def enrol_alice(stack: Stack, folder: Path) -> None:
    """A face index with Alice under her StashDB id, the id Stash's performer 1 carries."""
    (folder / "alice").mkdir()
    for name in ALICE:
        os.symlink(shared_file(f"{FACES}/{name}"), folder / "alice" / name)
    stash_ids = [{"endpoint": STASHDB, "stash_id": "6f6a-alice"}]
    (folder / "alice" / "performer.json").write_text(json.dumps({"name": "Alice", "stash_ids": stash_ids}))
    build = wait_for(
        stack, submit(stack, "build-face-index", {"folder": str(folder)})["id"], "succeeded", "failed"
    )
    assert build["state"] == "succeeded", build


def run(stack: Stack, kind: str, params: dict[str, Any]) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    job = wait_for(stack, submit(stack, kind, params)["id"], "succeeded", "failed")
    return job, {r["item"].split(" ")[0]: r for r in results(stack, job["id"])}


def names(stash: StashStandIn, holder: dict[str, Any]) -> set[str]:
    return {stash.fx.tags[t]["name"] for t in holder.get("_tags", [])}


def test_dry_run_apply_again_and_undo(scenario: Scenario) -> None:
    stack, stash = scenario.stack, scenario.stash
    testdata = shared_dir() / "testdata"
    files = [testdata / "video" / "box.mp4", testdata / FACES.removeprefix("testdata/") / "img2.jpg"]
    files.append(testdata / FACES.removeprefix("testdata/") / "img5.jpg")
    tagged, _ = run(stack, "tag-library", {"paths": [str(f) for f in files]})
    assert tagged["state"] == "succeeded" and tagged["progress"]["failed"] == 0, tagged

    # Dry run over what the tag-library job did: answered from the result store, nothing written.
    before = visible_state(stash.fx)
    inferences = inference_count(stack)
    stored = {k: v for k, v in ITEMS.items() if k == "scene_ids"} | {"image_ids": ["1", "3"]}
    dry, items = run(stack, "sync-to-stash", stored)
    assert dry["state"] == "succeeded" and dry["progress"]["failed"] == 0, dry
    assert inference_count(stack) == inferences, "a dry run over tagged files runs no model"
    assert stash.fx.mutations == [] and visible_state(stash.fx) == before
    scene = items["scene:1"]["result"]
    assert scene["applied"] is False
    assert {"Always_AI", "AI_Tagged"} <= {t["name"] for t in scene["tags_added"]}
    marker_tags = [m["tag"] for m in scene["markers_created"]]
    assert "Always_AI" in marker_tags and set(marker_tags) <= {t["name"] for t in scene["tags_added"]}
    created = [t["name"] for r in items.values() for t in r["result"]["tags_created"]]
    assert sorted(created) == sorted(set(created)) and {"AI", "AI_Tagged", "Always_AI"} <= set(created)

    applied, items = run(
        stack, "sync-to-stash", {**ITEMS, "apply": True, "performers": True, "min_confidence": 0.3}
    )
    assert applied["state"] == "succeeded" and applied["progress"]["failed"] == 0, applied
    ai = next(t for t in stash.fx.tags.values() if t["name"] == "AI")
    always = next(t for t in stash.fx.tags.values() if t["name"] == "Always_AI")
    assert always["_parents"] == [ai["id"]] and always["ignore_auto_tag"] is True
    assert {"Always_AI", "AI_Tagged"} <= names(stash, stash.fx.scenes["1"])
    for image in ("1", "3", "7"):
        assert {"Always_AI", "AI_Tagged"} <= names(stash, stash.fx.images[image]), image
    assert sorted(m["title"] for m in stash.fx.markers.values()) == sorted(marker_tags)
    [marker] = [m for m in stash.fx.markers.values() if m["title"] == "Always_AI"]
    assert (marker["_scene"], marker["title"], marker["_primary"], marker["_tags"]) == (
        "1",
        "Always_AI",
        always["id"],
        [always["id"]],
    )
    assert marker["seconds"] == 0.0 and marker["end_seconds"] and marker["end_seconds"] > 10
    assert stash.fx.images["3"]["_performers"] == ["1"], items["image:3"]
    [alice] = items["image:3"]["result"]["performers_added"]
    assert alice["id"] == "1" and alice["name"] == "Alice" and alice["confidence"] >= 0.3
    mutations = {name for name, _ in stash.fx.mutations}
    assert mutations == {"tagCreate", "bulkSceneUpdate", "bulkImageUpdate", "sceneMarkerCreate"}

    written = len(stash.fx.mutations)
    again, items = run(
        stack, "sync-to-stash", {**ITEMS, "apply": True, "performers": True, "min_confidence": 0.3}
    )
    assert again["state"] == "succeeded" and len(stash.fx.mutations) == written, stash.fx.mutations[written:]
    assert items["image:3"]["result"]["unchanged"]["performers"] == 1

    undone, items = run(stack, "undo-sync-to-stash", {"job_id": applied["id"]})
    assert undone["state"] == "succeeded" and undone["progress"]["failed"] == 0, undone
    assert visible_state(stash.fx) == before


@pytest.mark.parametrize(
    ("status", "http", "says"), [(401, 403, "STASH_VISION_STASH_API_KEY"), (503, 503, "unreachable")]
)
def test_a_stash_that_cannot_be_written_refuses_the_job(
    scenario: Scenario, status: int, http: int, says: str
) -> None:
    stack, stash = scenario.stack, scenario.stash
    written = len(stash.fx.mutations)
    stash.fail_next(status, count=5)
    try:
        response = httpx.post(
            f"{stack.http}/jobs",
            json={"kind": "sync-to-stash", "params": {**ITEMS, "apply": True}},
            timeout=60,
        )
    finally:
        stash.faults.clear()
    assert response.status_code == http, response.text
    assert says in response.json()["detail"]
    assert len(stash.fx.mutations) == written
