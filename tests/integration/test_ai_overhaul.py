"""The AI Overhaul plugin's StashAI gateway API (/stash-ai, contract part B) on the real stack:
SCRFD + MobileFaceNet in Triton, a face index built from real photos whose performers carry
StashDB ids, the Stash stand-in on Stash's real schema serving a scene made of a held-out photo of
one of them, an API key presented as the plugin does (`Authorization: Bearer`).

The plugin's flows end to end: submit an image, a gallery and a scene with the plugin's bodies,
follow them over the WebSocket, read the status the overlay renders; bad input in the gateway's
conventions; cancel over the WebSocket; a socket that never reads; and after a restart of the whole
stack, a finished job's status is still there (jobs.db)."""

from __future__ import annotations

import base64
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import httpx
import numpy as np
import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from tests.conftest import shared_dir, shared_file
from tests.stack import Stack, cli, start_stack
from tests.standins.fixtures import STASH_KEY, stash_schema
from tests.standins.stash import STASH_PATH, StashStandIn, default_fixtures

pytestmark = pytest.mark.integration

KEY = "gateway-key"
FACES = "testdata/faces/deepface"
UUIDS = {"alpha": "aaaaaaaa-0000-4000-8000-000000000001", "beta": "bbbbbbbb-0000-4000-8000-000000000002"}
ENROL = {
    "alpha": ["img1.jpg", "img2.jpg", "img4.jpg"],
    "beta": ["img13.jpg", "img14.jpg"],
    "gamma": ["img20.jpg"],
}
SCENE_ID = "50"  # a Stash scene of alpha (frames of img5.jpg, a photo not enrolled)
SCENE_PATH = "/ai-scenes"  # where Stash sees the scene's folder
JOB_TIMEOUT_S = 240.0
NAIVE_ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$")


def photo(name: str) -> Path:
    return shared_file(f"{FACES}/{name}")


def data_url(name: str) -> str:
    return "data:image/jpeg;base64," + base64.b64encode(photo(name).read_bytes()).decode()


def write_scene(path: Path, name: str, seconds: int = 4, fps: int = 10) -> None:
    """A short video whose every frame is the photo, letterboxed to 640x480."""
    image = cv2.imread(str(photo(name)))
    scale = min(640 / image.shape[1], 480 / image.shape[0])
    resized = cv2.resize(image, (int(image.shape[1] * scale), int(image.shape[0] * scale)))
    frame = np.zeros((480, 640, 3), np.uint8)
    y, x = (480 - resized.shape[0]) // 2, (640 - resized.shape[1]) // 2
    frame[y : y + resized.shape[0], x : x + resized.shape[1]] = resized
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (640, 480))
    for _ in range(seconds * fps):
        writer.write(frame)
    writer.release()


def enrol(folder: Path) -> Path:
    for person, names in ENROL.items():
        (folder / person).mkdir(parents=True)
        for name in names:
            os.symlink(photo(name), folder / person / name)
        if person in UUIDS:
            meta = {
                "name": person.title(),
                "stash_ids": [{"endpoint": "https://stashdb.org/graphql", "stash_id": UUIDS[person]}],
            }
            (folder / person / "performer.json").write_text(json.dumps(meta))
    return folder


@dataclass
class Gateway:
    stack: Stack
    stash: StashStandIn
    work: Path
    extra_env: dict[str, str]

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=f"{self.stack.http}/stash-ai", headers={"Authorization": f"Bearer {KEY}"}, timeout=120
        )

    def socket(self, key: bool = True, **options: Any) -> ClientConnection:
        query = f"?api_key={KEY}" if key else ""
        return connect(
            f"ws://127.0.0.1:{self.stack.http_port}/stash-ai/ws/queue{query}", proxy=None, **options
        )


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("ai-overhaul")
    scenes = work / "scenes"
    scenes.mkdir()
    write_scene(scenes / "alpha.mp4", "img5.jpg")
    fixtures = default_fixtures(shared_dir() / "testdata")
    fixtures.scenes[SCENE_ID] = {
        "id": SCENE_ID,
        "_real": scenes / "alpha.mp4",
        "_path": f"{SCENE_PATH}/alpha.mp4",
        "_performers": [],
    }
    with StashStandIn(stash_schema(), fixtures, api_key=STASH_KEY) as stash:
        mappings = {STASH_PATH: str(shared_dir() / "testdata"), SCENE_PATH: str(scenes)}
        extra_env = {
            "STASH_VISION_STASH_URL": stash.url,
            "STASH_VISION_STASH_API_KEY": STASH_KEY,
            "STASH_VISION_PATH_MAPPINGS": json.dumps(mappings),
            "STASH_VISION_API_KEY": KEY,
        }
        models = ["scrfd_500m", "mobilefacenet"]
        stack = start_stack(work, shared_dir() / "models", models=models, extra_env=extra_env)
        gateway = Gateway(stack, stash, work, extra_env)
        try:
            built = cli(
                {**stack.env, "STASH_VISION_SERVER_URL": stack.grpc_target},
                "index",
                "build",
                str(enrol(work / "enrol")),
            )
            assert built.returncode == 0, built.stdout + built.stderr
            yield gateway
        finally:
            gateway.stack.stop()


# ------------------------------------------------------------------------------------------ helpers


def messages_until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool], timeout_s: float = JOB_TIMEOUT_S
) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
        except TimeoutError:
            break
        seen.append(message)
        if done(message):
            return seen
    raise AssertionError(
        f"no such message within {timeout_s} s; saw {[(m.get('type'), m.get('event')) for m in seen]}"
    )


def events_of(messages: list[dict[str, Any]], job_id: str) -> list[str]:
    return [m["event"] for m in messages if m.get("type") == "queue_update" and m.get("job_id") == job_id]


def finished(job_id: str) -> Callable[[dict[str, Any]], bool]:
    ends = {"job_completed", "job_failed", "job_cancelled"}
    return lambda m: m.get("type") == "queue_update" and m.get("job_id") == job_id and m.get("event") in ends


def submit(client: httpx.Client, kind: str, body: dict[str, Any]) -> str:
    response = client.post(f"/api/v1/queue/submit/{kind}", json=body)
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["success"] is True and reply["job_id"], reply
    assert reply["message"] == f"{kind.capitalize()} job {reply['job_id']} submitted to queue"
    job_id: str = reply["job_id"]
    return job_id


def status(client: httpx.Client, job_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/queue/status/{job_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_status(client: httpx.Client, job_id: str, *states: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        body = status(client, job_id)
        if body["status"] in states:
            return body
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} never reached {states}: {body}")


def upload_of(gateway: Gateway, job_id: str) -> Path:
    job = httpx.get(f"{gateway.stack.http}/jobs/{job_id}", headers={"X-API-Key": KEY}, timeout=30).json()
    return gateway.stack.data_dir / "uploads" / job["params"]["upload"]


def image_body(name: str) -> dict[str, Any]:
    """As the plugin sends it from /images/{id}: entity with url and title, a data URL, fixed knobs."""
    return {
        "entity": {"id": "3", "type": "image", "url": "http://stash/images/3", "title": "Image 3 | Stash"},
        "image_data": {"data": data_url(name), "format": "jpeg"},
        "threshold": 0.5,
        "max_results": 5,
    }


def check_performer(performer: dict[str, Any], person: str) -> None:
    assert performer["id"] == UUIDS[person] and performer["name"] == person.title()
    assert performer["stash_url"] == f"https://stashdb.org/performers/{UUIDS[person]}"
    assert 0.5 <= performer["confidence"] <= 1.0
    assert performer["additional_info"]["distance"] == pytest.approx(1 - performer["confidence"], abs=1e-3)


# ------------------------------------------------------------------------------------------ tests


def test_health_says_the_face_index_is_loaded(gateway: Gateway) -> None:
    with gateway.http() as client:
        body = client.get("/api/v1/health").json()
        assert body["success"] is True and body["dependencies"] == {"visage": "healthy"}
        queue = body["metrics"]["queue_status"]
        assert {"active_jobs", "total_active_tests", "completed_tests", "suggested_polling_interval"} <= set(
            queue
        )
        assert NAIVE_ISO.match(body["timestamp"])
        refused = httpx.get(f"{gateway.stack.http}/stash-ai/api/v1/health", timeout=30)
        assert refused.status_code == 401


def test_image_job_from_submit_over_the_websocket_to_the_overlays_result(gateway: Gateway) -> None:
    with gateway.http() as client, gateway.socket() as ws:
        first = json.loads(ws.recv(timeout=30))
        assert first["type"] == "queue_status" and "active_jobs" in first["data"]
        job_id = submit(client, "image", image_body("img5.jpg"))
        seen = messages_until(ws, finished(job_id))
        events = events_of(seen, job_id)
        assert events[0] == "job_submitted" and "job_started" in events and events[-1] == "job_completed"
        done = seen[-1]
        assert done["data"]["evaluation_results"]["performers_found_total"] == 1
        assert done["queue_status"]["recent_completed_jobs"][0]["job_id"] == job_id
        body = status(client, job_id)
    assert body["status"] == "completed" and body["job_type"] == "image" and body["error"] is None
    assert all(NAIVE_ISO.match(body[key]) for key in ("created_at", "started_at", "completed_at"))
    result = body["result"]
    assert result["success"] is True and len(result["faces"]) == 1
    [performer] = result["performers"]
    check_performer(performer, "alpha")
    assert result["entity"] == {"id": "3", "type": "image", "title": "Image 3 | Stash"}
    assert not upload_of(gateway, job_id).exists()  # deleted once the result was stored
    record = client_get(gateway, f"/api/v1/ai-jobs/{job_id}?include_results=true&include_tests=true")
    assert (record["entity_type"], record["entity_id"], record["action_type"]) == (
        "image",
        "3",
        "facial_recognition",
    )
    assert record["detailed_results"]["performers"][0]["id"] == UUIDS["alpha"]


def client_get(gateway: Gateway, path: str) -> dict[str, Any]:
    with gateway.http() as client:
        response = client.get(path)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_gallery_job_reports_progress_per_image_and_the_gallery_shape(gateway: Gateway) -> None:
    images = [
        {"id": "11", "url": "http://stash/image/11", "title": "a", "base64": data_url("img13.jpg")},
        {"id": "12", "url": "http://stash/image/12", "title": "b", "base64": data_url("img15.jpg")},
        {"id": "13", "url": "http://stash/image/13", "title": "c", "base64": data_url("img6.jpg")},
        {"id": "14", "url": "http://stash/image/14", "title": "d", "base64": "@@not base64@@"},
        {"id": "15", "url": "http://stash/image/15", "title": "e"},
    ]
    body = {
        "entity": {"id": "77", "type": "gallery", "title": "G"},
        "images": images,
        "threshold": 0.5,
        "max_results": 5,
    }
    with gateway.http() as client, gateway.socket() as ws:
        ws.recv(timeout=30)
        job_id = submit(client, "gallery", body)
        seen = messages_until(ws, finished(job_id))
        answer = status(client, job_id)
    progress = [m["data"] for m in seen if m.get("event") == "job_progress" and m["job_id"] == job_id]
    assert progress and progress[-1]["message"] == "Gallery processing completed!"
    assert [p["current"] for p in progress] == sorted(p["current"] for p in progress) and progress[-1][
        "current"
    ] == 5
    assert answer["status"] == "completed"
    results = answer["result"]["ai_model_info"]["gallery_results"]
    assert (
        results["galleryId"],
        results["totalImages"],
        results["processedImages"],
        results["skippedImages"],
    ) == ("77", 5, 3, 2)
    top, *rest = results["performers"]
    check_performer(top["performer"], "beta")
    assert top["frequency"] == 2 and [a["imageId"] for a in top["appearances"]] == ["11", "12"]
    assert top["performer"]["performer_url"] == top["performer"]["stash_url"]
    assert [r["performer"]["name"] for r in rest] == ["Alpha"]  # img6 is alpha's
    errors = {r["imageId"]: r["error"] for r in results["processingResults"] if not r["success"]}
    assert errors == {
        "14": "image data is not valid base64",
        "15": "the plugin sent no image data for this image",
    }


def test_scene_is_resolved_through_stash_and_identified(gateway: Gateway) -> None:
    with gateway.http() as client, gateway.socket() as ws:
        ws.recv(timeout=30)
        job_id = submit(
            client, "scene", {"entity": {"id": SCENE_ID, "type": "scene", "title": "Alpha's scene"}}
        )
        seen = messages_until(ws, finished(job_id))
        answer = status(client, job_id)
        missing = wait_status(
            client, submit(client, "scene", {"entity": {"id": "99999", "type": "scene"}}), "completed"
        )
    assert events_of(seen, job_id)[-1] == "job_completed"
    assert answer["status"] == "completed", answer
    result = answer["result"]
    assert result["success"] is True and result["ai_model_info"]["frames_analyzed"] > 0
    assert [p["id"] for p in result["performers"]] == [UUIDS["alpha"]]
    check_performer(result["performers"][0], "alpha")
    assert missing["result"]["success"] is False and "99999" in missing["result"]["error"]


def test_bad_input_in_the_gateways_conventions(gateway: Gateway) -> None:
    with gateway.http() as client:
        not_an_image = image_body("img5.jpg")
        not_an_image["image_data"]["data"] = base64.b64encode(b"this is not an image").decode()
        answer = wait_status(client, submit(client, "image", not_an_image), "completed", "failed")
        assert answer["status"] == "completed" and answer["result"]["success"] is False
        assert answer["result"]["error"] and answer["result"]["performers"] == []
        invalid = image_body("img5.jpg")
        invalid["image_data"]["data"] = "@@@ not base64"
        response = client.post("/api/v1/queue/submit/image", json=invalid)
        assert response.status_code == 422 and response.json()["detail"][0]["loc"][:2] == [
            "body",
            "image_data",
        ]
        no_image = client.post(
            "/api/v1/queue/submit/image", json={"entity": {"id": "1", "type": "image"}}
        ).json()
        assert no_image == {"success": False, "error": "No image data provided"}
        unknown = client.get("/api/v1/queue/status/no-such-job")
        assert unknown.status_code == 404
        assert unknown.json()["error"] == "Job no-such-job not found" and unknown.json()["code"] == "404"
        assert unknown.json()["success"] is False and NAIVE_ISO.match(unknown.json()["timestamp"])
        # A job of another kind is not the gateway's.
        folder = gateway.work / "one-image"
        folder.mkdir(exist_ok=True)
        os.symlink(photo("img1.jpg"), folder / "img1.jpg")
        other = httpx.post(
            f"{gateway.stack.http}/jobs",
            json={"kind": "identify-library", "params": {"roots": [str(folder)]}},
            headers={"X-API-Key": KEY},
            timeout=60,
        )
        assert other.status_code == 201, other.text
        assert client.get(f"/api/v1/queue/status/{other.json()['id']}").status_code == 404
        assert client.get(f"/api/v1/ai-jobs/{other.json()['id']}").status_code == 404
        compare = client.post(
            "/api/v1/facial-recognition/compare-faces", json={"performer1_id": "a", "performer2_id": "b"}
        )
        assert compare.status_code == 501 and "POST /faces/compare" in compare.json()["error"]


def test_facial_recognition_routes_answer_synchronously(gateway: Gateway) -> None:
    with gateway.http() as client:
        image = client.post("/api/v1/facial-recognition/identify-image", json=image_body("img5.jpg")).json()
        assert image["success"] is True
        check_performer(image["performers"][0], "alpha")
        scene = client.post(
            "/api/v1/facial-recognition/identify-scene",
            json={"entity": {"id": SCENE_ID, "type": "scene"}, "timeout": 300},
        ).json()
        assert scene["success"] is True and [p["id"] for p in scene["performers"]] == [UUIDS["alpha"]]
        gallery = client.post(
            "/api/v1/facial-recognition/identify-gallery",
            json={
                "entity": {"id": "5", "type": "gallery"},
                "images": [{"id": "1", "base64": data_url("img13.jpg")}],
            },
        ).json()
        top = gallery["ai_model_info"]["gallery_results"]["performers"][0]
        assert top["performer"]["id"] == UUIDS["beta"] and top["frequency"] == 1


def test_cancel_over_the_websocket_and_a_read_only_socket(gateway: Gateway) -> None:
    images = [{"id": str(i), "base64": data_url("img13.jpg")} for i in range(3)]
    with gateway.http() as client, gateway.socket() as ws, gateway.socket(key=False) as guest:
        ws.recv(timeout=30)
        guest_status = json.loads(guest.recv(timeout=30))
        assert guest_status["type"] == "queue_status"
        # The scene runs first (one job at a time), so the gallery waits and is cancelled pending.
        scene = submit(
            client, "scene", {"entity": {"id": SCENE_ID, "type": "scene", "title": "secret title"}}
        )
        gallery = submit(client, "gallery", {"entity": {"id": "78", "type": "gallery"}, "images": images})
        guest.send(json.dumps({"type": "cancel_job", "job_id": gallery}))
        refused = messages_until(guest, lambda m: m.get("type") == "cancel_response", 30)[-1]
        assert refused["success"] is False and "api_key" in refused["message"]
        ws.send(json.dumps({"type": "cancel_job", "job_id": gallery}))
        reply = messages_until(ws, lambda m: m.get("type") == "cancel_response", 30)[-1]
        assert reply == {
            "type": "cancel_response",
            "job_id": gallery,
            "success": True,
            "message": "Job cancelled successfully",
        }
        seen = messages_until(ws, finished(gallery))
        assert seen[-1]["event"] == "job_cancelled"
        answer = status(client, gallery)
        assert answer["status"] == "cancelled" and answer["error"] == "Job cancelled by user"
        ws.send("ping")
        assert messages_until(ws, lambda m: m.get("type") == "pong", 10)
        ws.send(json.dumps({"type": "cancel_job"}))
        no_id = messages_until(ws, lambda m: m.get("type") == "cancel_response", 10)[-1]
        assert no_id == {"type": "cancel_response", "success": False, "message": "No job_id provided"}
        guest_seen = messages_until(guest, finished(scene))
        assert "secret title" not in json.dumps(guest_seen)  # names of Stash content need the key
        wait_status(client, scene, "completed")


def test_a_socket_that_never_reads_is_dropped_and_blocks_nobody(gateway: Gateway) -> None:
    raw = socket.create_connection(("127.0.0.1", gateway.stack.http_port))
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sent = 3000
    with gateway.socket(sock=raw, compression=None, max_queue=1) as silent, gateway.socket() as other:
        other.recv(timeout=30)
        for _ in range(sent):
            silent.send("get_status")
        started = time.monotonic()
        other.send("ping")
        assert messages_until(other, lambda m: m.get("type") == "pong", 5)
        assert time.monotonic() - started < 5
        deadline = time.monotonic() + 60
        while "read nothing for" not in gateway.stack.log() and time.monotonic() < deadline:
            time.sleep(0.5)  # its outbox overflows (the socket buffers are full): it is disconnected
        assert "read nothing for" in gateway.stack.log()
        received = 0
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                silent.recv(timeout=30)
                received += 1
    assert received < sent
    assert closed.value.rcvd is None or closed.value.rcvd.code == 1013


def test_a_finished_job_survives_a_restart_of_the_stack(gateway: Gateway) -> None:
    with gateway.http() as client:
        job_id = submit(client, "image", image_body("img5.jpg"))
        before = wait_status(client, job_id, "completed")
    gateway.stack.stop()
    gateway.stack = start_stack(
        gateway.work, shared_dir() / "models", models=gateway.stack.models, extra_env=gateway.extra_env
    )
    with gateway.http() as client:
        after = status(client, job_id)
        health = client.get("/api/v1/health").json()
    assert after == before
    assert job_id in [j["job_id"] for j in health["metrics"]["queue_status"]["recent_completed_jobs"]]
