"""Conformance with the original AITagger server: the stand-in skier233 package, imported as a
user would, must give the original server's answers to the plugin's exact request
(testdata/golden/process_images_small). The original ran under fp16/bf16 autocast, so a tag whose
confidence lies within the tolerance of the threshold may fall either way (golden README)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from stash_vision.catalog.importers import import_skier233
from tests.conftest import shared_dir, shared_file
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.integration

# fp16 vs fp32 confidences differ by "a few hundredths".
TOLERANCE = 0.05


@pytest.fixture(scope="module")
def standin_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("standin")
    data = workdir / "data"
    import_skier233(
        shared_file("models/skier233-standin/vivid_galaxy_standin.yaml"),
        data / "model_repository",
        data / "models",
    )
    stack = start_stack(workdir, shared_dir() / "models", models=["vivid_galaxy_standin"])
    try:
        yield stack
    finally:
        stack.stop()


def test_process_images_matches_the_original_server(standin_stack: Stack) -> None:
    request = json.loads(shared_file("testdata/golden/process_images_small.request.json").read_text())
    golden = json.loads(shared_file("testdata/golden/process_images_small.response.json").read_text())
    # Golden paths are relative to the shared folder; the plugin sends absolute server paths.
    paths = [p if p.startswith("/") else str(shared_dir() / p) for p in request["paths"]]
    response = httpx.post(
        f"{standin_stack.http}/process_images/", json={**request, "paths": paths}, timeout=300
    )
    assert response.status_code == golden["http_status"] == 200
    ours = response.json()
    assert ours["models"] is None
    assert len(ours["result"]) == len(golden["body"]["result"])

    # The same request with confidences tells which differences sit inside the tolerance.
    confident = httpx.post(
        f"{standin_stack.http}/process_images/",
        json={
            **request,
            "paths": paths,
            "return_confidence": True,
            "threshold": request["threshold"] - TOLERANCE,
        },
        timeout=300,
    ).json()["result"]
    threshold = request["threshold"]
    for index, (mine, theirs) in enumerate(zip(ours["result"], golden["body"]["result"], strict=True)):
        if "error" in theirs:
            assert set(mine) == {"error"}, f"item {index}: the original failed it, so must we"
            assert "not found" in mine["error"]
            continue
        assert set(mine) == set(theirs) == {"actions"}
        scores = dict(map(tuple, confident[index]["actions"]))
        for tag in set(mine["actions"]) ^ set(theirs["actions"]):
            assert abs(scores.get(tag, threshold - TOLERANCE) - threshold) <= TOLERANCE, (
                f"item {index}: {tag} differs from the original by more than the fp16 tolerance "
                f"(ours {mine['actions']}, original {theirs['actions']}, confidences {scores})"
            )
        # Order follows the model's output order, as in the original.
        tags_order = (
            shared_file("models/skier233-standin/vivid_galaxy_standin.tags.txt").read_text().split("\n")
        )
        renamed_order = [f"{t}_AI" for t in tags_order if t]
        assert mine["actions"] == sorted(mine["actions"], key=renamed_order.index)


def test_v3_model_list_shows_the_imported_model(standin_stack: Stack) -> None:
    listed = httpx.get(f"{standin_stack.http}/v3/current_ai_models/", timeout=10).json()
    assert listed == [
        {
            "name": "vivid_galaxy_standin",
            "identifier": 950,
            "version": 1.9,
            "categories": ["actions"],
            "type": "ImClass",
        }
    ]
