"""The face routes of the HTTP adapter on the real stack (adapter -> gRPC server -> Triton), as a
Stash plugin would call them, plus crowded and oversized images."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest

from tests.conftest import shared_file
from tests.stack import Stack, cli

pytestmark = pytest.mark.integration

FACES = "testdata/faces/deepface"
PEOPLE = {
    "alpha": ["img1.jpg", "img2.jpg", "img4.jpg"],
    "beta": ["img13.jpg", "img14.jpg"],
    "gamma": ["img20.jpg"],
}


def photo(name: str) -> str:
    return str(shared_file(f"{FACES}/{name}"))


@pytest.fixture(scope="module")
def client(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> httpx.Client:
    folder = tmp_path_factory.mktemp("http-enrol")
    for person, names in PEOPLE.items():
        (folder / person).mkdir()
        for name in names:
            os.symlink(photo(name), folder / person / name)
    built = cli({**stack.env, "STASH_VISION_SERVER_URL": stack.grpc_target}, "index", "build", str(folder))
    assert built.returncode == 0, built.stdout + built.stderr
    return httpx.Client(base_url=stack.http, timeout=300)


def post(client: httpx.Client, route: str, body: dict[str, Any]) -> tuple[int, Any]:
    response = client.post(route, json=body)
    return response.status_code, response.json()


def test_identify_by_path_and_by_base64(client: httpx.Client) -> None:
    status, by_path = post(client, "/identify", {"image_path": photo("img5.jpg")})
    assert status == 200, by_path
    assert by_path["face_count"] == 1 and by_path["profile"] == "default" and by_path["index_version"]
    best = by_path["faces"][0]["matches"][0]
    assert best["performer_id"] == "local:alpha" and best["stashdb_id"] == "alpha"
    assert best["confidence"] == pytest.approx(1 - best["distance"])
    assert "mobilefacenet_distance" in best
    encoded = base64.b64encode(Path(photo("img5.jpg")).read_bytes()).decode()
    status, by_bytes = post(client, "/identify", {"image_base64": encoded})
    assert status == 200
    assert by_bytes["faces"][0]["matches"][0]["performer_id"] == "local:alpha"


def test_compare_route(client: httpx.Client) -> None:
    status, body = post(
        client, "/faces/compare", {"first_path": photo("img1.jpg"), "second_path": photo("img2.jpg")}
    )
    assert status == 200, body
    pair = body["pairs"][0]
    assert pair["same_person"] and pair["distance"] <= body["same_person_distance"]
    status, body = post(
        client, "/faces/compare", {"first_path": photo("img1.jpg"), "second_path": photo("img13.jpg")}
    )
    assert status == 200 and not body["pairs"][0]["same_person"]


def test_gallery_route(client: httpx.Client) -> None:
    status, body = post(
        client, "/identify/gallery", {"image_paths": [photo("img13.jpg"), photo("img15.jpg"), "/missing.jpg"]}
    )
    assert status == 200, body
    assert body["total_images"] == 3 and body["images_processed"] == 2
    assert body["performers"][0]["performer_id"] == "local:beta"
    assert body["errors"][0]["image_path"] == "/missing.jpg"


def test_scene_route(client: httpx.Client) -> None:
    status, body = post(
        client,
        "/identify/scene",
        {"video_path": str(shared_file("testdata/video/Megamind.avi")), "num_frames": 20},
    )
    assert status == 200, body
    assert body["frames_requested"] == 20 and body["frames_analyzed"] == 20
    assert body["timing"]["total_ms"] > 0
    for person in body["persons"]:
        assert person["best_match"] is None  # nobody from the index is in Megamind


def test_index_route_and_errors(client: httpx.Client) -> None:
    info = client.get("/faces/index").json()
    assert info["index_loaded"] and info["performer_count"] == len(PEOPLE)
    status, body = post(client, "/identify", {"image_path": "/nope/x.jpg"})
    assert status == 404 and "not found" in body["detail"]
    status, body = post(client, "/identify", {})
    assert status == 422


def test_fifty_faces_in_one_image(client: httpx.Client, tmp_path: Path) -> None:
    """A contact sheet of 50 portraits: every face found, each performer named at most once."""
    tiles = []
    for name in sorted(Path(photo("img1.jpg")).parent.glob("img*.jpg"))[:50]:
        image = cv2.imread(str(name))
        side = min(image.shape[:2])
        tiles.append(cv2.resize(image[:side, :side], (200, 200)))
    rows = [np.hstack(tiles[i : i + 10]) for i in range(0, 50, 10)]
    sheet = tmp_path / "sheet.jpg"
    cv2.imwrite(str(sheet), np.vstack(rows))
    status, body = post(client, "/identify", {"image_path": str(sheet), "min_face_size": 20})
    assert status == 200, body
    assert body["face_count"] >= 40
    named = [face["matches"][0]["performer_id"] for face in body["faces"] if face["matches"]]
    assert len(named) == len(set(named)) <= len(PEOPLE)


def test_oversized_image_is_refused_before_decoding(client: httpx.Client, tmp_path: Path) -> None:
    huge = tmp_path / "huge.png"
    cv2.imwrite(str(huge), np.zeros((12000, 9000), np.uint8))  # 108 MP > the 100 MP limit
    status, body = post(client, "/identify", {"image_path": str(huge)})
    assert status == 413 and "STASH_VISION_MAX_IMAGE_PIXELS" in body["detail"]
