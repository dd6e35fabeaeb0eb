"""The Stash Sense plugin's identify routes on the real stack (adapter -> gRPC server -> Triton)
with the Stash stand-in on Stash's real schema (issue 13; contract part A, §A.3.1–A.3.4, §A.0.1):
the plugin sends only Stash ids, the server reads the media from its file here or through Stash
with the key. Scenes from the file and from the stream, images from a file, a zip member and a URL,
galleries (a 5,000-image one inside the plugin's 300 s), and every failure the plugin can meet:
unknown ids, a non-image, a broken stream, a wrong key, Stash down, Stash not configured."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.stash_sense_world import ALICE, BEA, CORA, FACES, World, stash_sense_world
from tests.stack import Stack
from tests.standins.fixtures import STASH_KEY
from tests.standins.stash import STASH_PATH

pytestmark = pytest.mark.integration

BIG_GALLERY = "50"
BIG_GALLERY_SIZE = 5000
EMPTY_GALLERY = "60"
PLUGIN_GALLERY_TIMEOUT_S = 300
MATCH_FIELDS = {
    "stashdb_id",
    "name",
    "confidence",
    "distance",
    "country",
    "image_url",
    "endpoint",
    "already_tagged",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with stash_sense_world(tmp_path_factory.mktemp("stash-sense")) as built:
        add_big_gallery(built)
        yield built


@pytest.fixture(scope="module")
def client(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{world.stack.http}/stash-sense", timeout=PLUGIN_GALLERY_TIMEOUT_S) as http:
        yield http


def add_big_gallery(world: World) -> None:
    """5,000 images (three held-out photos, one per performer, in turn) in one gallery."""
    fx = world.stash.fx
    photos = ["img5.jpg", "img14.jpg", "img21.jpg"]
    for n in range(BIG_GALLERY_SIZE):
        image_id = str(10_000 + n)
        name = photos[n % len(photos)]
        fx.images[image_id] = {
            "id": image_id,
            "_real": None,  # never served: the files are read here
            "_path": f"{STASH_PATH}/{FACES.removeprefix('testdata/')}/{name}",
            "_zip": None,
            "_performers": [],
        }
        fx.galleries.setdefault(BIG_GALLERY, []).append(image_id)
    fx.galleries[EMPTY_GALLERY] = []


def ok(response: httpx.Response) -> dict[str, Any]:
    """A success as the plugin reads it: 2xx, JSON, no truthy `error`, no `output` (R2, R3)."""
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert not body.get("error") and "output" not in body
    return body


def failed(response: httpx.Response, status: int, *words: str) -> str:
    """A failure as the plugin reads it (R1): non-2xx, JSON, a non-empty `detail` (a string, or
    FastAPI's list of validation items for a 422, which the plugin turns into a string)."""
    assert response.status_code == status, response.text
    detail = response.json()["detail"]
    if status == 422:
        assert isinstance(detail, list) and detail
        return str(detail)
    assert isinstance(detail, str) and detail.strip()
    for word in words:
        assert word in detail, detail
    return detail


def check_match(match: dict[str, Any]) -> None:
    assert set(match) >= MATCH_FIELDS
    assert match["endpoint"] == "stashdb.org" and 0.0 <= match["confidence"] <= 1.0
    assert match["confidence"] == pytest.approx(max(0.0, 1.0 - match["distance"]))
    assert match["image_url"] is None or match["image_url"].startswith("https://")


def check_scene(body: dict[str, Any], scene_id: str) -> dict[str, Any]:
    """The person Alice is, with the scene-level fields the plugin reads."""
    assert body["scene_id"] == scene_id and body["frames_requested"] == 60
    assert body["frames_analyzed"] == 60 and body["faces_detected"] >= 60 and body["errors"] == []
    matched = [p for p in body["persons"] if p["best_match"]]
    assert [p["person_id"] for p in body["persons"]] == list(range(len(body["persons"])))
    alice = matched[0]
    assert alice["best_match"]["stashdb_id"] == ALICE and alice["best_match"]["name"] == "Alice"
    assert alice["best_match"]["already_tagged"] is True  # the plugin said she is on the scene
    assert alice["frame_count"] > 30 and alice["all_matches"][0] == alice["best_match"]
    assert len(alice["all_matches"]) <= 10  # top_k 25 clamped
    for person in matched:
        for match in person["all_matches"]:
            check_match(match)
    return alice


def identify_scene(client: httpx.Client, scene_id: str) -> httpx.Response:
    # What the plugin sends: the id, its "max results" setting, the scene's StashDB ids.
    body = {"scene_id": scene_id, "top_k": 25, "scene_performer_stashdb_ids": [ALICE]}
    return client.post("/identify/scene", json=body)


def test_health_reports_the_face_index(client: httpx.Client) -> None:
    body = ok(client.get("/health"))
    assert body["status"] == "healthy" and body["database_loaded"] is True
    assert body["performer_count"] == 3 and body["face_count"] >= 6


def test_scene_from_its_file_and_from_the_stream_name_alice(client: httpx.Client, world: World) -> None:
    streamed_before = world.stash.traffic.count("/scene/11/stream")
    from_file = check_scene(ok(identify_scene(client, "10")), "10")
    assert world.stash.traffic.count("/scene/10/stream") == 0  # read here, no bytes through Stash
    from_stream = check_scene(ok(identify_scene(client, "11")), "11")
    assert world.stash.traffic.count("/scene/11/stream") > streamed_before  # PyAV over HTTP, with Range
    assert abs(from_file["best_match"]["distance"] - from_stream["best_match"]["distance"]) < 0.05


def test_broken_stream_is_a_clear_error_or_a_partial_answer(client: httpx.Client) -> None:
    detail = failed(identify_scene(client, "12"), 503, "Stash scene 12", "STASH_VISION_PATH_MAPPINGS")
    assert "apikey" not in detail.lower() and STASH_KEY not in detail
    body = ok(identify_scene(client, "13"))  # its screenshot stands in: the reasons are in `errors`
    assert body["frames_analyzed"] == 0 and body["errors"] and STASH_KEY not in body["errors"][0]
    assert body["persons"][0]["best_match"]["stashdb_id"] == ALICE and body["persons"][0]["frame_count"] == 1


@pytest.mark.parametrize(
    ("image_id", "who"),
    [("3", ALICE), ("7", ALICE), ("8", CORA), ("4", BEA)],
    ids=["file", "url-only", "zip-member", "file-bea"],
)
def test_image_names_its_performer(client: httpx.Client, world: World, image_id: str, who: str) -> None:
    downloads = world.stash.traffic.count(f"/image/{image_id}/image")
    body = ok(client.post("/identify/image", json={"image_id": image_id}))
    assert body["face_count"] == len(body["faces"]) == 1
    face = body["faces"][0]
    assert set(face["box"]) == {"x", "y", "width", "height", "confidence"} and face["box"]["width"] > 20
    assert face["matches"][0]["stashdb_id"] == who and face["matches"][0]["already_tagged"] is False
    for match in face["matches"]:
        check_match(match)
    fetched = world.stash.traffic.count(f"/image/{image_id}/image") - downloads
    assert fetched == (1 if image_id == "7" else 0)  # only the image not readable here is downloaded


def test_gallery_names_its_performers_with_their_images(client: httpx.Client) -> None:
    body = ok(client.post("/identify/gallery", json={"gallery_id": "1"}))
    assert (body["total_images"], body["images_processed"], body["images_selected"]) == (4, 4, 4)
    assert body["note"] is None and body["errors"] == [] and body["faces_detected"] >= 3
    alice = next(p for p in body["performers"] if p["performer_id"] == ALICE)
    assert {"1", "2"} <= set(alice["image_ids"]) and alice["image_count"] == len(alice["image_ids"])
    assert alice["confidence"] == pytest.approx(1 - alice["best_distance"])
    assert alice["endpoint"] == "stashdb.org" and alice["avg_distance"] >= alice["best_distance"]
    for performer in body["performers"]:
        assert performer["image_count"] >= 2 or performer["best_distance"] < 0.4  # the keep rule
    empty = ok(client.post("/identify/gallery", json={"gallery_id": EMPTY_GALLERY}))
    assert (empty["total_images"], empty["images_processed"], empty["performers"]) == (0, 0, [])


def test_gallery_of_5000_images_answers_inside_the_plugins_timeout(client: httpx.Client) -> None:
    started = time.perf_counter()
    body = ok(client.post("/identify/gallery", json={"gallery_id": BIG_GALLERY}))
    elapsed = time.perf_counter() - started
    print(f"5,000-image gallery: {elapsed:.1f} s")
    assert elapsed < PLUGIN_GALLERY_TIMEOUT_S / 2
    assert (body["total_images"], body["images_selected"], body["images_processed"]) == (5000, 500, 500)
    assert "500 of the gallery's 5000" in body["note"]
    found = {p["performer_id"]: p for p in body["performers"]}
    assert set(found) == {ALICE, BEA, CORA}
    # Chosen evenly: each of the three photos, in turn across the gallery, is a third of the 500.
    assert all(160 <= p["image_count"] <= 170 for p in found.values())
    assert max(int(i) for i in found[ALICE]["image_ids"]) > 10_000 + 4_900


def test_unknown_ids_and_a_non_image(client: httpx.Client) -> None:
    failed(client.post("/identify/scene", json={"scene_id": "999"}), 404, "scene 999")
    failed(client.post("/identify/image", json={"image_id": "999"}), 404, "image 999")
    failed(client.post("/identify/gallery", json={"gallery_id": "999"}), 404, "gallery 999")
    failed(client.post("/identify/image", json={"image_id": "90"}), 400)
    failed(client.post("/identify/scene", json={"scene_id": "1", "top_k": 0}), 422)


def test_wrong_key_names_the_key_setting(client: httpx.Client, world: World) -> None:
    world.stash.api_key = "rotated-in-stash"
    try:
        for route, body in (
            ("/identify/image", {"image_id": "3"}),
            ("/identify/scene", {"scene_id": "10"}),
            ("/identify/gallery", {"gallery_id": "1"}),
        ):
            failed(client.post(route, json=body), 503, "Stash", "STASH_VISION_STASH_API_KEY")
    finally:
        world.stash.api_key = STASH_KEY


def test_stash_not_configured_names_the_url_setting(stack: Stack) -> None:
    with httpx.Client(base_url=f"{stack.http}/stash-sense", timeout=60) as http:
        for route, body in (
            ("/identify/image", {"image_id": "3"}),
            ("/identify/scene", {"scene_id": "10"}),
            ("/identify/gallery", {"gallery_id": "1"}),
        ):
            failed(http.post(route, json=body), 503, "STASH_VISION_STASH_URL")
        assert ok(http.get("/health"))["status"] in ("healthy", "degraded")


def test_stash_down_names_stash_and_its_url_setting(client: httpx.Client, world: World) -> None:
    """Last: the stand-in stops for good."""
    world.stash.stop()
    for route, body in (
        ("/identify/image", {"image_id": "3"}),
        ("/identify/scene", {"scene_id": "10"}),
        ("/identify/gallery", {"gallery_id": "1"}),
    ):
        failed(client.post(route, json=body), 503, f"Stash at {world.stash.url}", "STASH_VISION_STASH_URL")
    assert ok(client.get("/health"))["status"] == "healthy"  # it touches neither Stash nor the models
