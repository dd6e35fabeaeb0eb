"""The Stash Sense identify routes (adapter/routes/stash_sense/identify.py, identify_shapes.py):
Stash Sense's ranking and keep rules on protobuf results, and the routes against a real grpc.aio
server running the fake FaceService of test_adapter_faces: what reaches the server (Stash ids,
defaults, clamped top_k), the response shapes, and the error rules R1–R3 (contract §A.0.1)."""

from __future__ import annotations

from typing import Any

import grpc
import httpx
import pytest

from stash_vision.adapter.routes.stash_sense.identify_shapes import (
    absolute_url,
    gallery_errors,
    gallery_note,
    gallery_performers,
    plugin_match,
    scene_persons,
)
from stash_vision.v1 import faces_pb2
from tests.unit.test_adapter_faces import FakeFaces, post, run

UUID_A = "6f0b1a3e-0000-4000-8000-00000000000a"
UUID_B = "6f0b1a3e-0000-4000-8000-00000000000b"
UUID_C = "6f0b1a3e-0000-4000-8000-00000000000c"


def performer(uuid: str, name: str, image_url: str = "") -> faces_pb2.Performer:
    return faces_pb2.Performer(id=f"stashdb.org:{uuid}", name=name, image_url=image_url)


def match(uuid: str, distance: float, image_url: str = "") -> faces_pb2.Match:
    return faces_pb2.Match(
        performer=performer(uuid, uuid[-1], image_url), distance=distance, confidence=1 - distance
    )


def person(frames: int, *matches: faces_pb2.Match) -> faces_pb2.VideoPerson:
    message = faces_pb2.VideoPerson(frame_count=frames, alternatives=list(matches[1:]))
    if matches:
        message.best_match.CopyFrom(matches[0])
    return message


def assert_plugin_success(body: dict[str, Any]) -> None:
    """R2 and R3: the plugin must not read a success as a failure, nor unwrap it."""
    assert not body.get("error") and "output" not in body


# ------------------------------------------------------------------------------------------ rules


def test_match_is_a_performer_match_response() -> None:
    shaped = plugin_match(match(UUID_A, 1.25, "https://stashdb.org/images/a.jpg"), frozenset({UUID_A}))
    assert shaped["stashdb_id"] == UUID_A and shaped["endpoint"] == "stashdb.org"
    assert shaped["confidence"] == 0.0 and shaped["distance"] == 1.25  # clamp(1 − distance)
    assert shaped["image_url"] == "https://stashdb.org/images/a.jpg" and shaped["already_tagged"] is True
    assert plugin_match(match(UUID_B, 0.3, "/data/faces/b.jpg"))["image_url"] is None
    assert absolute_url("http://stash:9999/performer/1/image") == "http://stash:9999/performer/1/image"
    assert absolute_url("file:///x.jpg") is None and absolute_url("") is None


def test_tagged_candidate_ranks_up_by_003_without_changing_its_distance() -> None:
    close, tagged = match(UUID_A, 0.30), match(UUID_B, 0.32)
    untouched = scene_persons([person(5, close, tagged)], frozenset(), 3)[0]
    assert untouched["best_match"]["stashdb_id"] == UUID_A
    boosted = scene_persons([person(5, close, tagged)], frozenset({UUID_B}), 3)[0]
    assert boosted["best_match"]["stashdb_id"] == UUID_B and boosted["best_match"]["distance"] == 0.32
    assert boosted["best_match"]["already_tagged"] and not boosted["all_matches"][1]["already_tagged"]
    assert [m["stashdb_id"] for m in boosted["all_matches"]] == [UUID_B, UUID_A]
    # 0.03 is not enough to pass a candidate 0.05 closer.
    far = scene_persons([person(5, close, match(UUID_B, 0.35))], frozenset({UUID_B}), 3)[0]
    assert far["best_match"]["stashdb_id"] == UUID_A


def test_persons_each_performer_once_matched_first_renumbered_top_k() -> None:
    persons = [
        person(1, match(UUID_A, 0.2)),
        person(2),  # nobody from the index
        person(3, match(UUID_A, 0.3), match(UUID_C, 0.31)),
        person(9, match(UUID_B, 0.25), match(UUID_A, 0.4), match(UUID_C, 0.45)),
    ]
    shaped = scene_persons(persons, frozenset({UUID_A}), 2)
    assert [p["person_id"] for p in shaped] == [0, 1, 2, 3]
    assert [p["frame_count"] for p in shaped] == [9, 3, 2, 1]  # matched first, most frames first
    assert shaped[0]["best_match"]["stashdb_id"] == UUID_B  # 0.75 beats A's 0.6 + 0.03
    assert [m["stashdb_id"] for m in shaped[0]["all_matches"]] == [UUID_B, UUID_A]  # top_k 2
    assert shaped[1]["best_match"]["stashdb_id"] == UUID_A  # larger persons claim first
    # The single-frame person's only candidate is taken: it is a person without a match.
    assert shaped[3]["best_match"] is None and shaped[3]["all_matches"] == []
    assert shaped[2]["best_match"] is None
    assert all(p["signals_used"] == ["face"] and p["tattoos_detected"] == 0 for p in shaped)


def test_gallery_keep_rule_order_image_ids_errors_and_note() -> None:
    reply = faces_pb2.IdentifyGalleryResponse(
        total_images=5000,
        images_selected=500,
        images_processed=498,
        image_ids=[str(900 + i) for i in range(500)],
        performers=[
            faces_pb2.GalleryPerformer(best_match=match(UUID_A, 0.45), image_count=1, image_indexes=[0]),
            faces_pb2.GalleryPerformer(best_match=match(UUID_B, 0.35), image_count=1, image_indexes=[1]),
            faces_pb2.GalleryPerformer(best_match=match(UUID_C, 0.45), image_count=2, image_indexes=[2, 7]),
        ],
        errors=[faces_pb2.ImageError(image_index=i, message="x" * 300) for i in range(12)],
    )
    kept = gallery_performers(reply)
    assert [p["performer_id"] for p in kept] == [UUID_C, UUID_B]  # A: one image at 0.45 is dropped
    assert kept[0]["image_ids"] == ["902", "907"] and kept[0]["confidence"] == pytest.approx(0.55)
    errors = gallery_errors(reply)
    assert len(errors) == 10 and errors[0] == "Image 900: " + "x" * 100
    assert gallery_note(reply) is not None and "500 of the gallery's 5000" in str(gallery_note(reply))
    assert gallery_note(faces_pb2.IdentifyGalleryResponse(total_images=3, images_selected=3)) is None


# ------------------------------------------------------------------------------------------ routes


def test_scene_route_sends_the_stash_id_and_clamps_top_k() -> None:
    fake = FakeFaces()
    response = post(
        fake,
        "/stash-sense/identify/scene",
        {"scene_id": "42", "top_k": 25, "scene_performer_stashdb_ids": [UUID_A], "use_body": True},
    )
    assert response.status_code == 200, response.text
    sent: faces_pb2.IdentifyVideoRequest = fake.requests["IdentifyVideo"][0]
    assert sent.stash_scene_id == "42" and not sent.path and sent.num_frames == 60
    assert sent.options.top_k == 10 and not sent.options.HasField("max_distance")  # the profile's
    assert (sent.start_fraction, sent.end_fraction) == (0.05, 0.95)
    body = response.json()
    assert_plugin_success(body)
    assert body["scene_id"] == "42" and body["frames_requested"] == 60 and body["frames_analyzed"] == 58
    assert body["persons"] and all(
        {"frame_count", "best_match", "all_matches"} <= set(p) for p in body["persons"]
    )
    assert body["errors"] == ["2 frames could not be decoded"] and body["timing"]["total_ms"] >= 0


def test_image_and_gallery_routes_send_stash_ids() -> None:
    fake = FakeFaces()
    image = post(fake, "/stash-sense/identify/image", {"image_id": "7"})
    assert image.status_code == 200, image.text
    assert fake.requests["IdentifyImage"][0].image.stash_image_id == "7"
    body = image.json()
    assert_plugin_success(body)
    assert body["face_count"] == 3 and set(body["faces"][0]["box"]) == {
        "x",
        "y",
        "width",
        "height",
        "confidence",
    }
    assert body["faces"][0]["matches"][0]["endpoint"] == "stashdb.org"
    gallery = post(fake, "/stash-sense/identify/gallery", {"gallery_id": "3"})
    assert gallery.status_code == 200, gallery.text
    assert fake.requests["IdentifyGallery"][0].stash_gallery_id == "3"
    assert_plugin_success(gallery.json())
    assert isinstance(gallery.json()["errors"], list)


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/stash-sense/identify/scene", {"scene_id": "1", "top_k": 0}),
        ("/stash-sense/identify/scene", {"scene_id": "1", "num_frames": 4}),
        ("/stash-sense/identify/scene", {"scene_id": ""}),
        ("/stash-sense/identify/image", {"image_id": "1", "top_k": 21}),
        ("/stash-sense/identify/gallery", {}),
    ],
)
def test_bad_requests_are_422_with_a_detail(route: str, body: dict[str, Any]) -> None:
    response = post(FakeFaces(), route, body)
    assert response.status_code == 422 and response.json()["detail"]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.UNAVAILABLE, 503),
        (grpc.StatusCode.FAILED_PRECONDITION, 503),
        (grpc.StatusCode.NOT_FOUND, 404),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
    ],
)
def test_server_errors_follow_r1(code: grpc.StatusCode, status: int) -> None:
    fake = FakeFaces()
    fake.abort = (code, "Stash at http://stash:9999 is unreachable")
    for route, body in (
        ("/stash-sense/identify/image", {"image_id": "1"}),
        ("/stash-sense/identify/gallery", {"gallery_id": "1"}),
        ("/stash-sense/identify/scene", {"scene_id": "1"}),
    ):
        response = post(fake, route, body)
        assert response.status_code == status, (route, response.text)
        assert response.json()["detail"] == "Stash at http://stash:9999 is unreachable"


def test_health_is_always_200() -> None:
    responses: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        responses.append(await http.get("/stash-sense/health"))

    run(FakeFaces(), scenario)
    failing = FakeFaces()
    failing.abort = (grpc.StatusCode.UNAVAILABLE, "down")
    run(failing, scenario)
    healthy, degraded = (r.json() for r in responses)
    assert all(r.status_code == 200 for r in responses)
    assert (
        healthy["status"] == "healthy" and healthy["database_loaded"] and healthy["performer_count"] == 1000
    )
    assert degraded["status"] == "degraded" and degraded["performer_count"] == 0
    for body in (healthy, degraded):
        assert_plugin_success(body)
