"""Conformance with the original AITagger server: the stand-in skier233 package, imported as a
user would, must give the original server's answers to the plugin's exact request
(every testdata/golden/process_images*). The original ran under bf16 autocast, so a tag whose
confidence lies within 0.01 of the threshold may fall either way (golden README, tests/golden.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from stash_vision.catalog.importers import import_skier233
from tests.conftest import shared_dir, shared_file
from tests.golden import TOLERANCE, compare_tag_sets
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.integration


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


IMAGE_REQUESTS = sorted(
    path.name.removesuffix(".request.json")
    for path in (shared_dir() / "testdata" / "golden").glob("process_images*.request.json")
)


def test_every_golden_image_request_is_compared() -> None:
    assert IMAGE_REQUESTS == ["process_images_small"]


@pytest.mark.parametrize("name", IMAGE_REQUESTS)
def test_process_images_matches_the_original_server(standin_stack: Stack, name: str) -> None:
    request = json.loads(shared_file(f"testdata/golden/{name}.request.json").read_text())
    golden = json.loads(shared_file(f"testdata/golden/{name}.response.json").read_text())
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
    problems: list[str] = []
    compared = 0
    for index, (mine, theirs) in enumerate(zip(ours["result"], golden["body"]["result"], strict=True)):
        if "error" in theirs:
            assert set(mine) == {"error"}, f"item {index}: the original failed it, so must we"
            assert "not found" in mine["error"]
            continue
        assert set(mine) == set(theirs) == {"actions"}
        scores: dict[str, float] = {tag: p for tag, p in confident[index]["actions"]}
        # Tag sets equal, but for tags within TOLERANCE (0.01) of the threshold: a 0.1 shift in
        # confidences (ImageNet instead of CLIP mean/std) fails this.
        problems += compare_tag_sets(f"item {index}", scores, set(theirs["actions"]), threshold)
        compared += 1
        # Order follows the model's output order, as in the original.
        tags_order = (
            shared_file("models/skier233-standin/vivid_galaxy_standin.tags.txt").read_text().split("\n")
        )
        renamed_order = [f"{t}_AI" for t in tags_order if t]
        assert mine["actions"] == sorted(mine["actions"], key=renamed_order.index)
    assert not problems, "\n".join(problems)
    assert compared == sum("error" not in item for item in golden["body"]["result"]) > 0


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
