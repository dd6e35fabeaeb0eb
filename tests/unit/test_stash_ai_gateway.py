"""The AI Overhaul gateway's pure parts: answer shapes (contract B.1/B.2), the upload folder, the
request bodies (422 rules), the CORS setting and preflights on the real app (a preflight never
reaches the server)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
from fastapi.exceptions import RequestValidationError
from fastapi.testclient import TestClient

from stash_vision.adapter.app import create_app
from stash_vision.adapter.routes.stash_ai.bodies import (
    FacialRecognitionRequest,
    GalleryIdentificationRequest,
    parse_body,
)
from stash_vision.adapter.routes.stash_ai.queue_socket import redacted
from stash_vision.server.errors import InvalidInput, MediaNotFound
from stash_vision.server.jobs.kinds.stash_ai_results import (
    Candidate,
    FoundFace,
    best_per_face,
    gallery_image_result,
    gallery_results,
    performer_info,
    utc_iso,
)
from stash_vision.server.jobs.kinds.stash_ai_uploads import Uploads
from stash_vision.settings import Settings

UUID = "6f6a0000-0000-4000-8000-000000000001"
ALICE = Candidate(f"stashdb.org:{UUID}", "Alice", 0.2, "https://img/alice.jpg", "US")
BEA = Candidate("local:bea", "Bea", 0.35)


def test_performer_info_is_the_stash_box_uuid_with_its_page() -> None:
    info = performer_info(ALICE)
    assert info["id"] == UUID and info["confidence"] == pytest.approx(0.8)
    assert info["stash_url"] == f"https://stashdb.org/performers/{UUID}"
    assert info["additional_info"]["distance"] == pytest.approx(0.2)
    local = performer_info(BEA)
    assert local["id"] == "local:bea" and local["stash_url"] is None and local["image_url"] is None


def test_best_per_face_keeps_each_faces_top_candidate_above_the_threshold_once() -> None:
    box = (0.0, 0.0, 10.0, 10.0)
    faces = [
        FoundFace(box, 0.9, [ALICE, BEA]),
        FoundFace(box, 0.9, [Candidate(ALICE.performer_id, "Alice", 0.3)]),  # Alice again, farther
        FoundFace(box, 0.9, [BEA]),
        FoundFace(box, 0.9, []),
    ]
    assert best_per_face(faces, 0.5) == [ALICE, BEA]
    assert best_per_face(faces, 0.7) == [ALICE]


def test_gallery_results_sort_by_frequency_then_best_confidence_and_count_skipped_images() -> None:
    images = [
        gallery_image_result({"id": "1", "url": "u1"}, [BEA], processing_time=0.5),
        gallery_image_result({"id": "2", "url": "u2"}, [ALICE, BEA], processing_time=0.5),
        gallery_image_result({"id": "3", "url": "u3"}, [ALICE], processing_time=0.5),
        gallery_image_result({"id": "4"}, [Candidate("local:cora", "Cora", 0.05)], processing_time=0.5),
        gallery_image_result({"id": "5"}, error="image data is not valid base64"),
    ]
    results = gallery_results("77", 5, images)
    assert (results["totalImages"], results["processedImages"], results["skippedImages"]) == (5, 4, 1)
    names = [(p["performer"]["name"], p["frequency"]) for p in results["performers"]]
    assert names == [("Alice", 2), ("Bea", 2), ("Cora", 1)]  # Alice's best (0.8) beats Bea's (0.65)
    alice = results["performers"][0]
    assert [a["imageId"] for a in alice["appearances"]] == ["2", "3"]
    assert alice["performer"]["performer_url"] == f"https://stashdb.org/performers/{UUID}"
    assert alice["averageConfidence"] == pytest.approx(0.8) and alice["bestConfidence"] == pytest.approx(0.8)
    assert results["totalProcessingTime"] == pytest.approx(2.0)


def test_timestamps_are_naive_utc() -> None:
    assert utc_iso(0) == "1970-01-01T00:00:00"


def test_uploads_are_written_whole_read_discarded_and_swept(tmp_path: Path) -> None:
    uploads = Uploads(tmp_path / "uploads", ttl_s=3600)
    upload = uploads.store([b"first", None, b"third"])
    assert sorted(p.name for p in (uploads.root / upload).iterdir()) == ["0", "2"]
    assert uploads.read(upload, 2) == b"third"
    with pytest.raises(MediaNotFound, match="STASH_VISION_DATA_DIR"):
        uploads.read(upload, 1)
    uploads.discard(upload, 0)
    uploads.discard(upload, 2)
    assert not (uploads.root / upload).exists()  # the folder goes with its last image
    with pytest.raises(InvalidInput):
        uploads.path("../../etc", 0)
    old, fresh = uploads.store([b"x"]), uploads.store([b"y"])
    stale = time.time() - 7200
    os.utime(uploads.root / old, (stale, stale))
    assert uploads.sweep() == 1
    assert not (uploads.root / old).exists() and (uploads.root / fresh).exists()


def test_bodies_follow_the_gateway_models() -> None:
    body = parse_body(
        FacialRecognitionRequest,
        b'{"entity": {"id": 7, "type": "image", "url": "ignored"}, '
        b'"image_data": {"data": "data:image/jpeg;base64,aGVsbG8=", "format": "jpeg"}}',
    )
    assert body.entity.id == "7" and body.image_data is not None and body.image_data.content == b"hello"
    assert body.job_params() == {"entity": {"id": "7", "type": "image"}, "threshold": 0.5, "max_results": 5}
    for bad in (
        b'{"entity": {"id": "1", "type": "image"}, "image_data": {"data": "@@not base64@@"}}',
        b'{"entity": {"id": "1", "type": "video"}}',
        b'{"entity": {"id": "1", "type": "image"}, "threshold": 2}',
        b"{}",
        b"not json",
    ):
        with pytest.raises(RequestValidationError) as caught:
            parse_body(FacialRecognitionRequest, bad)
        assert caught.value.errors()[0]["loc"][0] == "body"
    gallery = parse_body(
        GalleryIdentificationRequest,
        b'{"entity": {"id": "9", "type": "gallery"}, "images": [{"id": 3, "base64": "@@"}, {"url": "u"}]}',
    )
    assert gallery.images is not None
    assert [i.decoded() for i in gallery.images] == [
        "image data is not valid base64",
        "the plugin sent no image data for this image",
    ]


def test_a_socket_without_the_key_sees_no_stash_names() -> None:
    message = {"data": {"active_jobs": [{"job_id": "j", "entity_name": "Scene title", "status": "pending"}]}}
    assert redacted(message) == {"data": {"active_jobs": [{"job_id": "j", "status": "pending"}]}}


def test_cors_origins_default_to_stashs_origin() -> None:
    assert Settings(stash_url="http://stash.lan:9999/").effective_cors_origins == ["http://stash.lan:9999"]
    assert Settings(stash_url=None).effective_cors_origins == []
    assert Settings(cors_origins=["https://a.example/"]).effective_cors_origins == ["https://a.example"]


def test_preflights_succeed_for_allowed_origins_only(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, stash_url="http://stash.lan:9999", api_key="k")
    with TestClient(create_app(settings)) as client:
        asks = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        allowed = client.options(
            "/stash-ai/api/v1/queue/submit/image", headers={"Origin": "http://stash.lan:9999", **asks}
        )
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == "http://stash.lan:9999"
        assert "authorization" in allowed.headers["access-control-allow-headers"].lower()
        refused = client.options(
            "/stash-ai/api/v1/queue/submit/image", headers={"Origin": "http://evil.example", **asks}
        )
        assert refused.status_code == 400 and "access-control-allow-origin" not in refused.headers
        # A refused API key still carries the CORS header, so the page can show the 401.
        unauthorised = client.get("/stash-ai/api/v1/health", headers={"Origin": "http://stash.lan:9999"})
        assert unauthorised.status_code == 401
        assert unauthorised.headers["access-control-allow-origin"] == "http://stash.lan:9999"


def test_a_body_over_the_cap_is_refused_before_it_is_read_whole(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, stash_ai_max_body_bytes=1024)
    body = b'{"entity": {"id": "1", "type": "image"}, "image_data": {"data": "' + b"A" * 4096 + b'"}}'
    with TestClient(create_app(settings)) as client:
        declared = client.post("/stash-ai/api/v1/queue/submit/image", content=body)
        chunked = client.post("/stash-ai/api/v1/queue/submit/image", content=iter([body[:800], body[800:]]))
    for response in (declared, chunked):
        assert response.status_code == 413
        reply = response.json()
        assert reply["success"] is False and reply["code"] == "413"
        assert "STASH_VISION_STASH_AI_MAX_BODY_BYTES" in reply["error"]
    assert not (tmp_path / "uploads").exists()


def test_without_a_server_health_still_answers_and_status_is_a_gateway_503(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, server_url="127.0.0.1:9")  # nothing listens there
    with TestClient(create_app(settings)) as client:
        health = client.get("/stash-ai/api/v1/health").json()
        status = client.get("/stash-ai/api/v1/queue/status/abc")
    assert health["success"] is True and health["dependencies"] == {"visage": "unhealthy"}
    assert health["status"] == "degraded" and "unavailable" in health["metrics"]["queue_status"]["error"]
    assert status.status_code == 503 and status.json()["error"].startswith("Failed to get job status")
