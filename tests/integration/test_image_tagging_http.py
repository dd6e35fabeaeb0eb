"""Image tagging through the adapter's HTTP routes, against the real stack: the real NudeNet and
open_nsfw taggers on real photos, and a synthetic forced-positive tagger whose tags are known."""

from __future__ import annotations

import json
import shutil
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from PIL import Image
from pydantic import BaseModel, Field

from tests.conftest import shared_dir, shared_file
from tests.stack import Stack, start_stack
from tests.synthetic_models import install_brightness_tagger

pytestmark = pytest.mark.integration

ROWS = [
    "Bright,Bright_AI,,,,",
    "Dark,Dark_AI,,,,",
    "Always,Always_AI,,,,0.9",
    "Never,Never_AI,,,,",
    "Coin,Coin_AI,,,,0.6",
]


class ImageResult(BaseModel):
    """The plugin's own response model (AITagger 2.x): a non-empty list of dicts."""

    result: list[dict[str, Any]] = Field(min_length=1)


@pytest.fixture(scope="module")
def tagging_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("tagging")
    install_brightness_tagger(workdir / "data", csv_rows=ROWS)
    stack = start_stack(
        workdir, shared_dir() / "models", models=["nudenet_320n", "open_nsfw", "synthetic_tagger"]
    )
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    files: dict[str, Path] = {}
    for name, value in (("white", 255), ("black", 0)):
        files[name] = folder / f"{name}.png"
        cv2.imwrite(str(files[name]), np.full((48, 80, 3), value, np.uint8))
    jpeg = shared_file("testdata/faces/deepface/img1.jpg").read_bytes()
    files["truncated"] = folder / "truncated.jpg"
    files["truncated"].write_bytes(jpeg[: len(jpeg) // 2])
    files["empty"] = folder / "empty.jpg"
    files["empty"].write_bytes(b"")
    files["text"] = folder / "notes.jpg"
    files["text"].write_text("not an image at all\n")
    files["huge"] = folder / "huge.png"
    files["huge"].write_bytes(_png_header_claiming(30000, 30000))
    files["folder"] = folder / "a_directory.jpg"
    files["folder"].mkdir()
    files["zip"] = folder / "gallery.zip"
    with zipfile.ZipFile(files["zip"], "w") as archive:
        archive.write(files["white"], "set1/white.png")
    files["gif"] = folder / "anim.gif"
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((0, 0, 0), (255, 255, 255), (0, 0, 0))]
    frames[0].save(files["gif"], save_all=True, append_images=frames[1:])
    return files


def _png_header_claiming(width: int, height: int) -> bytes:
    import io
    import struct
    import zlib

    buffer = io.BytesIO()
    Image.new("RGB", (1, 1)).save(buffer, "PNG")
    data = bytearray(buffer.getvalue())
    ihdr = 8 + 8  # signature, then length + type of the IHDR chunk
    data[ihdr : ihdr + 8] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(data[12 : ihdr + 13]))
    data[ihdr + 13 : ihdr + 17] = struct.pack(">I", crc)
    return bytes(data)


def post(stack: Stack, route: str, body: Any, timeout: float = 300) -> httpx.Response:
    return httpx.post(f"{stack.http}{route}", json=body, timeout=timeout)


def test_synthetic_tagger_gives_exactly_its_renamed_tags(
    tagging_stack: Stack, media: dict[str, Path]
) -> None:
    body = {"paths": [str(media["white"]), str(media["black"])], "threshold": 0.5, "return_confidence": False}
    response = post(tagging_stack, "/process_images/", body)
    assert response.status_code == 200
    parsed = ImageResult.model_validate(response.json())
    assert response.json()["models"] is None
    white, black = parsed.result
    # Output order; "Coin" is exactly 0.5, not strictly above the threshold.
    assert white["synthetic"] == ["Bright_AI", "Always_AI"]
    assert black["synthetic"] == ["Dark_AI", "Always_AI"]
    for entry in parsed.result:
        assert all(isinstance(tag, str) for tags in entry.values() for tag in tags)
        assert set(entry) == {"synthetic", "bodyparts", "nsfw"}, "configured categories appear even if empty"


def test_return_confidence_gives_pairs_and_applies_category_thresholds(
    tagging_stack: Stack, media: dict[str, Path]
) -> None:
    body = {"paths": [str(media["white"])], "threshold": 0.4, "return_confidence": True}
    entry = post(tagging_stack, "/process_images/", body).json()["result"][0]
    # Coin (0.5) passes the request threshold 0.4 but not its CSV TagThreshold 0.6; Always (1.0) passes 0.9.
    assert entry["synthetic"] == [["Bright_AI", 1.0], ["Always_AI", 1.0]]
    plain = post(tagging_stack, "/process_images/", {**body, "return_confidence": False}).json()["result"][0]
    assert plain["synthetic"] == ["Bright_AI", "Always_AI", "Coin_AI"], (
        "CSV thresholds apply only with confidences"
    )


def test_v3_route_uses_model_names_and_lists_models(tagging_stack: Stack, media: dict[str, Path]) -> None:
    response = post(tagging_stack, "/v3/process_images/", {"paths": [str(media["black"])], "threshold": 0.5})
    body = response.json()
    assert response.status_code == 200
    assert body["result"] == [{"synthetic": ["Dark", "Always"], "bodyparts": [], "nsfw": []}]
    names = {m["name"] for m in body["models"]}
    assert names == {"nudenet_320n", "open_nsfw", "synthetic_tagger"}
    assert all(m["type"] == "ImClass" for m in body["models"])
    assert body["metrics"]["image_count"] == 1 and body["metrics"]["ai_model_count"] == 3
    listed = httpx.get(f"{tagging_stack.http}/v3/current_ai_models/", timeout=10).json()
    synthetic = next(m for m in listed if m["name"] == "synthetic_tagger")
    assert synthetic == {
        "name": "synthetic_tagger",
        "identifier": 7,
        "version": 0.1,
        "categories": ["synthetic"],
        "type": "ImClass",
    }


def test_nudenet_finds_faces_on_portraits_and_nothing_on_landscapes(tagging_stack: Stack) -> None:
    portraits = [shared_file(f"testdata/faces/deepface/img{i}.jpg") for i in (1, 2, 3, 4, 5, 6)]
    scenes = sorted(shared_file("testdata/images").iterdir())
    body = {"paths": [str(p) for p in portraits + scenes], "threshold": 0.5, "return_confidence": False}
    result = post(tagging_stack, "/process_images/", body).json()["result"]
    faces = {"Female Face_AI", "Male Face_AI"}
    for path, entry in zip(portraits, result[: len(portraits)], strict=True):
        assert faces & set(entry["bodyparts"]), f"{path.name}: {entry}"
    exposed = {
        tag
        for entry in result
        for tag in entry["bodyparts"]
        if "Exposed" in tag and "Armpits" not in tag and "Feet" not in tag
    }
    assert exposed == set(), "benign photos: no exposed-body tags"
    for path, entry in zip(scenes, result[len(portraits) :], strict=True):
        if path.name in ("building.jpg", "fruits.jpg", "starry_night.jpg", "baboon.jpg"):
            assert entry["bodyparts"] == [], f"{path.name}: {entry}"
        assert entry["nsfw"] == [], f"{path.name}: {entry}"


def test_bad_items_get_their_own_error_and_the_rest_succeeds(
    tagging_stack: Stack, media: dict[str, Path]
) -> None:
    cases = {
        "missing": ("/no/such/image.jpg", "file not found"),
        "text": (str(media["text"]), "not an image"),
        "truncated": (str(media["truncated"]), "truncated"),
        "empty": (str(media["empty"]), "empty"),
        "huge": (str(media["huge"]), "30000x30000"),
        "folder": (str(media["folder"]), "directory"),
        "dotdot": (str(media["white"].parent / ".." / "x.png"), "'..'"),
        "relative": ("white.png", "absolute"),
        "zip member missing": (f"{media['zip']}/set1/none.png", "no member"),
    }
    good = [str(media["white"]), f"{media['zip']}/set1/white.png", str(media["gif"])]
    paths = [good[0], *(path for path, _ in cases.values()), good[1], good[2]]
    response = post(tagging_stack, "/process_images/", {"paths": paths, "threshold": 0.5})
    assert response.status_code == 200
    result = response.json()["result"]
    assert len(result) == len(paths)
    assert result[0]["synthetic"] == ["Bright_AI", "Always_AI"]
    for (name, (_, fragment)), entry in zip(cases.items(), result[1:-2], strict=True):
        assert set(entry) == {"error"}, f"{name}: {entry}"
        assert fragment in entry["error"], f"{name}: {entry['error']}"
    assert result[-2]["synthetic"] == ["Bright_AI", "Always_AI"], "zip member"
    # The middle frame of black/white/black is white.
    assert result[-1]["synthetic"] == ["Bright_AI", "Always_AI"], "animated GIF middle frame"


@pytest.mark.parametrize(
    "body",
    [
        {"paths": []},
        {"paths": "not-a-list.jpg"},
        {"paths": [1, 2]},
        {"paths": ["/a.jpg"], "threshold": "high"},
        {"paths": ["/a.jpg"], "threshold": 2},
        {"paths": ["/a.jpg"], "return_confidence": "yes"},
        {"threshold": 0.5},
    ],
)
def test_malformed_requests_get_422_with_a_detail(tagging_stack: Stack, body: dict[str, Any]) -> None:
    response = post(tagging_stack, "/process_images/", body)
    assert response.status_code == 422
    assert response.json()["detail"]


def test_null_threshold_means_the_models_default(tagging_stack: Stack, media: dict[str, Path]) -> None:
    response = post(tagging_stack, "/process_images/", {"paths": [str(media["white"])], "threshold": None})
    assert response.status_code == 200
    assert response.json()["result"][0]["synthetic"] == ["Bright_AI", "Always_AI"]


def test_not_json_is_a_clear_4xx(tagging_stack: Stack) -> None:
    response = httpx.post(
        f"{tagging_stack.http}/process_images/",
        content=b"{not json",
        timeout=10,
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422


def test_ten_concurrent_plugin_sized_requests_all_finish(
    tagging_stack: Stack, media: dict[str, Path]
) -> None:
    images = [str(p) for p in sorted(shared_file("testdata/faces/deepface").glob("*.jpg"))]
    batch = (images * 6)[:320]
    before = _batches(tagging_stack)

    def run(index: int) -> list[dict[str, Any]]:
        paths = batch if index == 0 else [str(media["white"]), str(media["black"])] * 16
        response = post(tagging_stack, "/process_images/", {"paths": paths, "threshold": 0.5}, timeout=900)
        assert response.status_code == 200
        return list(response.json()["result"])

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(run, range(10)))
    assert len(results[0]) == 320 and all("error" not in entry for entry in results[0])
    for small in results[1:]:
        assert len(small) == 32
        assert [e["synthetic"][0] for e in small] == ["Bright_AI", "Dark_AI"] * 16
    inferences, executions = (after - b for after, b in zip(_batches(tagging_stack), before, strict=True))
    assert executions < inferences, "requests were batched together in Triton"


def _batches(stack: Stack) -> tuple[float, float]:
    text = httpx.get(f"http://127.0.0.1:{stack.triton_metrics_port}/metrics", timeout=5).text
    totals = {"nv_inference_count": 0.0, "nv_inference_exec_count": 0.0}
    for line in text.splitlines():
        name = line.split("{", 1)[0]
        if name in totals and 'model="synthetic_tagger"' in line:
            totals[name] += float(line.rsplit(" ", 1)[1])
    return totals["nv_inference_count"], totals["nv_inference_exec_count"]


def test_the_server_keeps_serving_after_all_of_that(tagging_stack: Stack, media: dict[str, Path]) -> None:
    assert httpx.get(f"{tagging_stack.http}/ready", timeout=5).status_code == 200
    response = post(tagging_stack, "/process_images/", {"paths": [str(media["black"])]})
    assert json.loads(response.text)["result"][0]["synthetic"] == ["Dark_AI", "Always_AI"]
    shutil.rmtree(media["folder"], ignore_errors=True)
