"""Unit tests of the adapter's face routes (adapter/routes/faces.py) against a real grpc.aio server
running a fake FaceService: exact JSON shapes, what reaches the server, base64 decoding, request
validation, gRPC error mapping, API key forwarding, the scene stream and its cancellation when the
HTTP client goes away.

Each test runs its own gRPC server on a free loopback port and the adapter app (with its lifespan)
inside asyncio.run, called through httpx's ASGI transport (no pytest-asyncio)."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
import httpx
import pytest
from fastapi import FastAPI

from stash_vision.adapter.app import create_app
from stash_vision.settings import Settings
from stash_vision.v1 import faces_pb2, faces_pb2_grpc

TEST_TIMEOUT_S = 30.0
JPEG_BYTES = b"\xff\xd8\xff\xe0not-really-a-jpeg\xff\xd9"
ANSWERED = faces_pb2.AnsweredBy(profile="stash-sense", index_version="2026.01.1")
Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]


# ------------------------------------------------------------------------------------------ canned data


def _face(x: float, y: float, size: float, confidence: float = 0.9) -> faces_pb2.Face:
    return faces_pb2.Face(
        box=faces_pb2.FaceBox(x=x, y=y, width=size, height=size), confidence=confidence, yaw_degrees=3.0
    )


def _distances(facenet: float, arcface: float) -> list[faces_pb2.EmbedderDistance]:
    return [
        faces_pb2.EmbedderDistance(embedder="facenet", distance=facenet, found=True),
        faces_pb2.EmbedderDistance(embedder="arcface", distance=arcface, found=True),
    ]


STASHDB_PERFORMER = faces_pb2.Performer(
    id="stashdb.org:6f0b1a3e-0000-4000-8000-000000000001",
    name="Alice Example",
    aliases=["Ali", "A. Example"],
    stash_ids=[faces_pb2.StashBoxId(endpoint="stashdb.org", stash_id="6f0b1a3e-0000-4000-8000-000000000001")],
    country="US",
    image_url="https://stashdb.org/images/alice.jpg",
    face_count=12,
)
LOCAL_PERFORMER = faces_pb2.Performer(id="local:Jane Folder", name="Jane", face_count=3)
BARE_PERFORMER = faces_pb2.Performer(
    id="abcd-1234",
    name="Bare Id",
    stash_ids=[faces_pb2.StashBoxId(endpoint="pmvstash.org", stash_id="abcd-1234")],
)


def _match(
    performer: faces_pb2.Performer, distance: float, facenet: float, arcface: float
) -> faces_pb2.Match:
    return faces_pb2.Match(
        performer=performer,
        distance=distance,
        confidence=1.0 - distance,
        embedder_distances=_distances(facenet, arcface),
    )


ALICE = _match(STASHDB_PERFORMER, 0.25, 0.375, 0.125)
JANE = _match(LOCAL_PERFORMER, 0.5, 0.625, 0.375)
BARE = _match(BARE_PERFORMER, 0.75, 0.5, 1.0)

ALICE_JSON: dict[str, Any] = {
    "stashdb_id": "6f0b1a3e-0000-4000-8000-000000000001",
    "performer_id": "stashdb.org:6f0b1a3e-0000-4000-8000-000000000001",
    "name": "Alice Example",
    "confidence": 0.75,
    "distance": 0.25,
    "facenet_distance": 0.375,
    "arcface_distance": 0.125,
    "country": "US",
    "image_url": "https://stashdb.org/images/alice.jpg",
    "endpoint": "stashdb.org",
    "aliases": ["Ali", "A. Example"],
    "stash_ids": [{"endpoint": "stashdb.org", "stash_id": "6f0b1a3e-0000-4000-8000-000000000001"}],
    "already_tagged": False,
}
JANE_JSON: dict[str, Any] = {
    "stashdb_id": "Jane Folder",
    "performer_id": "local:Jane Folder",
    "name": "Jane",
    "confidence": 0.5,
    "distance": 0.5,
    "facenet_distance": 0.625,
    "arcface_distance": 0.375,
    "country": None,
    "image_url": None,
    "endpoint": "local",
    "aliases": [],
    "stash_ids": [],
    "already_tagged": False,
}
BARE_JSON: dict[str, Any] = {
    "stashdb_id": "abcd-1234",
    "performer_id": "abcd-1234",
    "name": "Bare Id",
    "confidence": 0.25,
    "distance": 0.75,
    "facenet_distance": 0.5,
    "arcface_distance": 1.0,
    "country": None,
    "image_url": None,
    "endpoint": "pmvstash.org",
    "aliases": [],
    "stash_ids": [{"endpoint": "pmvstash.org", "stash_id": "abcd-1234"}],
    "already_tagged": False,
}
BIG_BOX = {"x": 10, "y": 21, "width": 120, "height": 120, "confidence": 0.9}
SMALL_BOX = {"x": 300, "y": 40, "width": 48, "height": 48, "confidence": 0.6}

SCENE_RESULT = faces_pb2.IdentifyVideoResult(
    frames_requested=60,
    frames_analyzed=58,
    faces_detected=40,
    faces_after_filter=31,
    persons=[
        faces_pb2.VideoPerson(
            person_id=0,
            frame_count=12,
            best_match=ALICE,
            alternatives=[BARE],
            time_ranges=[faces_pb2.TimeRange(start=30.0, end=90.5)],
            sightings=[
                faces_pb2.Sighting(frame_index=-1, time_seconds=-1.0, face=_face(10.4, 20.6, 120.2)),
                faces_pb2.Sighting(frame_index=3, time_seconds=30.0, face=_face(300.0, 40.0, 48.0, 0.6)),
            ],
        ),
        faces_pb2.VideoPerson(
            person_id=1,
            frame_count=1,
            time_ranges=[faces_pb2.TimeRange(start=60.0, end=60.0)],
            sightings=[faces_pb2.Sighting(frame_index=6, time_seconds=60.0, face=_face(300, 40, 48, 0.6))],
        ),
    ],
    duration=600.0,
    partial=True,
    partial_reason="2 frames could not be decoded",
    timing=faces_pb2.FaceTiming(
        total_ms=1234.56, decode_ms=400.04, detection_ms=500.0, embedding_ms=300.0, matching_ms=34.5
    ),
    answered_by=ANSWERED,
)


# ------------------------------------------------------------------------------------------ fake service


class FakeFaces(faces_pb2_grpc.FaceServiceServicer):  # type: ignore[misc]
    """Canned answers; records each request and the caller's x-api-key. `abort` makes every call
    fail with that status; `scene_events` is what IdentifyVideo streams; `hang_scene` makes it stop
    after one progress event until cancelled."""

    def __init__(self) -> None:
        self.requests: dict[str, list[Any]] = {}
        self.api_keys: list[str | None] = []
        self.abort: tuple[grpc.StatusCode, str] | None = None
        self.abort_after_progress = False
        self.scene_events: list[faces_pb2.IdentifyVideoResponse] = [
            faces_pb2.IdentifyVideoResponse(
                progress=faces_pb2.IdentifyVideoProgress(frames_done=done, frames_total=60)
            )
            for done in (0, 20, 40, 60)
        ] + [faces_pb2.IdentifyVideoResponse(result=SCENE_RESULT)]
        self.scene_events_sent = 0
        self.hang_scene = False
        self.scene_started = asyncio.Event()
        self.scene_cancelled = asyncio.Event()

    async def _record(self, method: str, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.requests.setdefault(method, []).append(request)
        self.api_keys.append(dict(context.invocation_metadata() or ()).get("x-api-key"))
        if self.abort is not None:
            await context.abort(*self.abort)

    async def IdentifyImage(
        self, request: faces_pb2.IdentifyImageRequest, context: grpc.aio.ServicerContext
    ) -> faces_pb2.IdentifyImageResponse:
        await self._record("IdentifyImage", request, context)
        return faces_pb2.IdentifyImageResponse(
            faces=[
                faces_pb2.IdentifiedFace(face=_face(10.4, 20.6, 120.2), matches=[ALICE, BARE]),
                faces_pb2.IdentifiedFace(face=_face(300.0, 40.0, 48.0, 0.6), matches=[JANE]),
                faces_pb2.IdentifiedFace(face=_face(5.0, 5.0, 30.0, 0.6)),
            ],
            answered_by=ANSWERED,
        )

    async def IdentifyGallery(
        self, request: faces_pb2.IdentifyGalleryRequest, context: grpc.aio.ServicerContext
    ) -> faces_pb2.IdentifyGalleryResponse:
        await self._record("IdentifyGallery", request, context)
        return faces_pb2.IdentifyGalleryResponse(
            total_images=len(request.images),
            images_processed=len(request.images) - 12,
            faces_detected=9,
            performers=[
                faces_pb2.GalleryPerformer(
                    best_match=ALICE,
                    average_distance=0.375,
                    image_count=3,
                    image_indexes=[0, 2, 13],
                    vote_share=0.75,
                ),
                faces_pb2.GalleryPerformer(
                    best_match=JANE, average_distance=0.5, image_count=1, image_indexes=[1], vote_share=0.25
                ),
            ],
            errors=[
                faces_pb2.ImageError(image_index=i, message=f"cannot decode image {i}") for i in range(3, 15)
            ],
            answered_by=ANSWERED,
        )

    async def IdentifyVideo(
        self, request: faces_pb2.IdentifyVideoRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[faces_pb2.IdentifyVideoResponse]:
        self.requests.setdefault("IdentifyVideo", []).append(request)
        self.api_keys.append(dict(context.invocation_metadata() or ()).get("x-api-key"))
        if self.abort is not None and not self.abort_after_progress:
            await context.abort(*self.abort)
        for event in self.scene_events:
            if self.abort is not None and event.HasField("result"):
                await context.abort(*self.abort)
            yield event
            self.scene_events_sent += 1
            if self.hang_scene:
                self.scene_started.set()
                try:
                    await asyncio.sleep(TEST_TIMEOUT_S)
                except asyncio.CancelledError:
                    self.scene_cancelled.set()
                    raise

    async def CompareFaces(
        self, request: faces_pb2.CompareFacesRequest, context: grpc.aio.ServicerContext
    ) -> faces_pb2.CompareFacesResponse:
        await self._record("CompareFaces", request, context)
        return faces_pb2.CompareFacesResponse(
            first_faces=[_face(10.4, 20.6, 120.2)],
            second_faces=[_face(300.0, 40.0, 48.0, 0.6), _face(5.0, 5.0, 30.0, 0.6)],
            pairs=[
                faces_pb2.FacePair(
                    first_face=0,
                    second_face=0,
                    similarity=0.75,
                    distance=0.25,
                    same_person=True,
                    embedder_distances=_distances(0.375, 0.125),
                ),
                faces_pb2.FacePair(
                    first_face=0,
                    second_face=1,
                    similarity=-0.25,
                    distance=1.25,
                    same_person=False,
                    embedder_distances=_distances(1.5, 1.0),
                ),
            ],
            same_person_distance=0.5,
            answered_by=faces_pb2.AnsweredBy(profile="stash-sense"),
        )

    async def GetFaceIndex(
        self, request: faces_pb2.GetFaceIndexRequest, context: grpc.aio.ServicerContext
    ) -> faces_pb2.GetFaceIndexResponse:
        await self._record("GetFaceIndex", request, context)
        return faces_pb2.GetFaceIndexResponse(
            answered_by=ANSWERED,
            index_loaded=True,
            performer_count=1000,
            face_count=5000,
            embedders=["facenet", "arcface"],
            detector="retinaface_r50",
            max_distance=0.5,
        )


# ------------------------------------------------------------------------------------------ harness


async def _serve(
    fake: FakeFaces, api_key: str | None, scenario: Callable[[FastAPI], Awaitable[None]]
) -> None:
    server = grpc.aio.server()
    faces_pb2_grpc.add_FaceServiceServicer_to_server(fake, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        app = create_app(Settings(server_url=f"127.0.0.1:{port}", api_key=api_key))
        async with app.router.lifespan_context(app):
            await scenario(app)
    finally:
        await server.stop(None)


def run(fake: FakeFaces, scenario: Scenario, api_key: str | None = None) -> None:
    async def with_client(app: FastAPI) -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as http:
            await scenario(http)

    asyncio.run(asyncio.wait_for(_serve(fake, api_key, with_client), TEST_TIMEOUT_S))


def post(fake: FakeFaces, path: str, body: Any, **headers: str) -> httpx.Response:
    """One POST; the response is returned for the test to check."""
    responses: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        responses.append(await http.post(path, json=body, headers=headers))

    run(fake, scenario)
    return responses[0]


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# ------------------------------------------------------------------------------------------ /identify


def test_identify_by_path_returns_stash_sense_shape() -> None:
    fake = FakeFaces()
    response = post(
        fake,
        "/identify",
        {
            "image_path": "/media/a.jpg",
            "top_k": 7,
            "max_distance": 0.5,
            "min_face_confidence": 0.75,
            "min_face_size": 40,
            "use_multi_signal": True,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "faces": [
            {"box": BIG_BOX, "matches": [ALICE_JSON, BARE_JSON]},
            {"box": SMALL_BOX, "matches": [JANE_JSON]},
            {"box": {"x": 5, "y": 5, "width": 30, "height": 30, "confidence": 0.6}, "matches": []},
        ],
        "face_count": 3,
        "profile": "stash-sense",
        "index_version": "2026.01.1",
    }
    (request,) = fake.requests["IdentifyImage"]
    assert request.image.WhichOneof("source") == "path"
    assert request.image.path == "/media/a.jpg"
    assert request.options.top_k == 7
    assert request.options.max_distance == 0.5
    assert request.options.filter.min_confidence == 0.75
    assert request.options.filter.min_face_size == 40


def test_identify_leaves_unset_options_to_the_profile() -> None:
    fake = FakeFaces()
    response = post(fake, "/identify", {"image_path": "/media/a.jpg", "max_distance": None})
    assert response.status_code == 200, response.text
    (request,) = fake.requests["IdentifyImage"]
    assert request.options.top_k == 5
    assert not request.options.HasField("max_distance")
    assert not request.options.filter.HasField("min_confidence")
    assert not request.options.filter.HasField("min_face_size")


@pytest.mark.parametrize(
    "encoded",
    [
        _b64(JPEG_BYTES),
        "data:image/jpeg;base64," + _b64(JPEG_BYTES),
        "  " + _b64(JPEG_BYTES)[:10] + "\n" + _b64(JPEG_BYTES)[10:] + "\n",
    ],
    ids=["plain", "data-url", "wrapped"],
)
def test_identify_decodes_base64(encoded: str) -> None:
    fake = FakeFaces()
    response = post(fake, "/identify", {"image_base64": encoded})
    assert response.status_code == 200, response.text
    (request,) = fake.requests["IdentifyImage"]
    assert request.image.WhichOneof("source") == "data"
    assert request.image.data == JPEG_BYTES


@pytest.mark.parametrize(
    ("encoded", "detail"),
    [
        ("not base64 at all!", "image_base64 is not valid base64"),
        ("abc", "image_base64 is not valid base64"),
        ("data:image/jpeg," + _b64(JPEG_BYTES), "image_base64 is a data: URL without ';base64,'"),
        ("data:image/jpeg;base64,", "image_base64 is empty"),
    ],
)
def test_identify_refuses_bad_base64(encoded: str, detail: str) -> None:
    fake = FakeFaces()
    response = post(fake, "/identify", {"image_base64": encoded})
    assert response.status_code == 400
    assert response.json() == {"detail": detail}
    assert "IdentifyImage" not in fake.requests


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"image_path": "/a.jpg", "image_base64": _b64(JPEG_BYTES)},
        {"image_path": None, "image_base64": None},
    ],
    ids=["neither", "both", "both-null"],
)
def test_identify_needs_exactly_one_image_source(body: dict[str, Any]) -> None:
    fake = FakeFaces()
    response = post(fake, "/identify", body)
    assert response.status_code == 422
    messages = [error["msg"] for error in response.json()["detail"]]
    assert any("give exactly one of image_path and image_base64" in m for m in messages), messages
    assert "IdentifyImage" not in fake.requests


@pytest.mark.parametrize(
    "override",
    [
        {"top_k": 0},
        {"top_k": 21},
        {"top_k": None},
        {"max_distance": 2.5},
        {"max_distance": -0.1},
        {"min_face_confidence": 1.5},
        {"min_face_size": -1},
        {"image_path": 3},
    ],
)
def test_identify_validates_bounds(override: dict[str, Any]) -> None:
    response = post(FakeFaces(), "/identify", {"image_path": "/a.jpg", **override})
    assert response.status_code == 422, response.text


# ------------------------------------------------------------------------------------------ errors


@pytest.mark.parametrize(
    ("code", "status"),
    [
        (grpc.StatusCode.FAILED_PRECONDITION, 503),
        (grpc.StatusCode.INVALID_ARGUMENT, 400),
        (grpc.StatusCode.NOT_FOUND, 404),
    ],
)
@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/identify", {"image_path": "/a.jpg"}),
        ("POST", "/identify/gallery", {"image_paths": ["/a.jpg"]}),
        ("POST", "/identify/scene", {"video_path": "/v.mp4"}),
        ("POST", "/faces/compare", {"first_path": "/a.jpg", "second_path": "/b.jpg"}),
        ("GET", "/faces/index", None),
    ],
)
def test_grpc_errors_map_to_http(
    code: grpc.StatusCode, status: int, method: str, path: str, body: dict[str, Any] | None
) -> None:
    fake = FakeFaces()
    fake.abort = (code, f"server says {code.name}")
    responses: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        responses.append(await http.request(method, path, json=body))

    run(fake, scenario)
    assert responses[0].status_code == status
    assert responses[0].json() == {"detail": f"server says {code.name}"}


def test_scene_error_after_progress_is_mapped() -> None:
    fake = FakeFaces()
    fake.abort = (grpc.StatusCode.NOT_FOUND, "no such video: /v.mp4")
    fake.abort_after_progress = True
    response = post(fake, "/identify/scene", {"video_path": "/v.mp4"})
    assert fake.scene_events_sent == 4
    assert response.status_code == 404
    assert response.json() == {"detail": "no such video: /v.mp4"}


def test_unreachable_server_is_503() -> None:
    responses: list[httpx.Response] = []

    async def scenario() -> None:
        server = grpc.aio.server()
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        await server.stop(None)  # the port is now closed
        app = create_app(Settings(server_url=f"127.0.0.1:{port}", api_key=None))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as http:
                responses.append(await http.get("/faces/index"))

    asyncio.run(asyncio.wait_for(scenario(), TEST_TIMEOUT_S))
    assert responses[0].status_code == 503


# ------------------------------------------------------------------------------------------ API key


def test_api_key_is_required_and_forwarded() -> None:
    fake = FakeFaces()
    responses: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        responses.append(await http.post("/identify", json={"image_path": "/a.jpg"}))
        responses.append(
            await http.post("/identify", json={"image_path": "/a.jpg"}, headers={"X-API-Key": "s3cret"})
        )
        responses.append(
            await http.post("/identify/scene", json={"video_path": "/v.mp4"}, headers={"X-API-Key": "s3cret"})
        )

    run(fake, scenario, api_key="s3cret")
    assert [r.status_code for r in responses] == [401, 200, 200]
    assert fake.api_keys == ["s3cret", "s3cret"]


# ------------------------------------------------------------------------------------------ gallery


def test_gallery_shape_maps_indexes_to_paths_and_caps_errors() -> None:
    fake = FakeFaces()
    paths = [f"/gallery/{i:02d}.jpg" for i in range(15)]
    response = post(
        fake,
        "/identify/gallery",
        {
            "image_paths": paths,
            "gallery_id": "g-17",
            "top_k": 3,
            "max_distance": 0.6,
            "min_face_confidence": 0.5,
        },
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "gallery_id": "g-17",
        "total_images": 15,
        "images_processed": 3,
        "faces_detected": 9,
        "performers": [
            {
                "performer_id": "stashdb.org:6f0b1a3e-0000-4000-8000-000000000001",
                "stashdb_id": "6f0b1a3e-0000-4000-8000-000000000001",
                "name": "Alice Example",
                "best_distance": 0.25,
                "avg_distance": 0.375,
                "confidence": 0.75,
                "image_count": 3,
                "image_paths": ["/gallery/00.jpg", "/gallery/02.jpg", "/gallery/13.jpg"],
                "vote_share": 0.75,
                "country": "US",
                "image_url": "https://stashdb.org/images/alice.jpg",
                "endpoint": "stashdb.org",
            },
            {
                "performer_id": "local:Jane Folder",
                "stashdb_id": "Jane Folder",
                "name": "Jane",
                "best_distance": 0.5,
                "avg_distance": 0.5,
                "confidence": 0.5,
                "image_count": 1,
                "image_paths": ["/gallery/01.jpg"],
                "vote_share": 0.25,
                "country": None,
                "image_url": None,
                "endpoint": "local",
            },
        ],
        "errors": [
            {"image_path": f"/gallery/{i:02d}.jpg", "error": f"cannot decode image {i}"} for i in range(3, 13)
        ],
        "profile": "stash-sense",
        "index_version": "2026.01.1",
    }
    (request,) = fake.requests["IdentifyGallery"]
    assert [image.path for image in request.images] == paths
    assert request.options.top_k == 3
    assert request.options.max_distance == pytest.approx(0.6)
    assert request.options.filter.min_confidence == pytest.approx(0.5)


@pytest.mark.parametrize("body", [{"image_paths": []}, {}, {"image_paths": ["/a.jpg"], "top_k": 0}])
def test_gallery_validation(body: dict[str, Any]) -> None:
    assert post(FakeFaces(), "/identify/gallery", body).status_code == 422


def test_gallery_id_is_optional() -> None:
    response = post(FakeFaces(), "/identify/gallery", {"image_paths": ["/a.jpg"]})
    assert response.status_code == 200, response.text
    assert response.json()["gallery_id"] is None


# ------------------------------------------------------------------------------------------ scene


def test_scene_consumes_progress_and_returns_the_result() -> None:
    fake = FakeFaces()
    response = post(
        fake,
        "/identify/scene",
        {
            "video_path": "/media/scene.mp4",
            "scene_id": "42",
            "num_frames": 30,
            "start_offset_pct": 0.1,
            "end_offset_pct": 0.9,
            "min_face_size": 40,
            "min_face_confidence": 0.5,
            "top_k": 4,
            "max_distance": 0.5,
            "cluster_threshold": 0.6,
            "cover_path": "/media/scene.jpg",
            "matching_mode": "frequency",
        },
    )
    assert response.status_code == 200, response.text
    assert fake.scene_events_sent == 5
    assert response.json() == {
        "scene_id": "42",
        "frames_analyzed": 58,
        "frames_requested": 60,
        "faces_detected": 40,
        "faces_after_filter": 31,
        "persons": [
            {
                "person_id": 0,
                "frame_count": 12,
                "best_match": ALICE_JSON,
                "all_matches": [ALICE_JSON, BARE_JSON],
                "time_ranges": [{"start": 30.0, "end": 90.5}],
                "sightings": [
                    {"frame_index": -1, "time": -1.0, "box": BIG_BOX},
                    {"frame_index": 3, "time": 30.0, "box": SMALL_BOX},
                ],
                "signals_used": ["face"],
            },
            {
                "person_id": 1,
                "frame_count": 1,
                "best_match": None,
                "all_matches": [],
                "time_ranges": [{"start": 60.0, "end": 60.0}],
                "sightings": [{"frame_index": 6, "time": 60.0, "box": SMALL_BOX}],
                "signals_used": ["face"],
            },
        ],
        "errors": [],
        "partial": True,
        "partial_reason": "2 frames could not be decoded",
        "duration": 600.0,
        "timing": {
            "total_ms": 1234.6,
            "extraction_ms": 400.0,
            "detection_ms": 500.0,
            "embedding_ms": 300.0,
            "matching_ms": 34.5,
        },
        "profile": "stash-sense",
        "index_version": "2026.01.1",
    }
    (request,) = fake.requests["IdentifyVideo"]
    assert request.path == "/media/scene.mp4"
    assert request.num_frames == 30
    assert request.start_fraction == pytest.approx(0.1)
    assert request.end_fraction == pytest.approx(0.9)
    assert request.cover.path == "/media/scene.jpg"
    assert request.cluster_distance == pytest.approx(0.6)
    assert request.options.top_k == 4
    assert request.options.max_distance == pytest.approx(0.5)
    assert request.options.filter.min_face_size == 40
    assert request.options.filter.min_confidence == pytest.approx(0.5)


def test_scene_defaults() -> None:
    fake = FakeFaces()
    fake.scene_events = [
        faces_pb2.IdentifyVideoResponse(
            result=faces_pb2.IdentifyVideoResult(frames_requested=60, answered_by=ANSWERED)
        )
    ]
    response = post(fake, "/identify/scene", {"video_path": "/v.mp4"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scene_id"] is None
    assert body["persons"] == []
    assert body["partial"] is False
    assert body["partial_reason"] is None
    (request,) = fake.requests["IdentifyVideo"]
    assert request.num_frames == 60
    assert request.start_fraction == pytest.approx(0.05)
    assert request.end_fraction == pytest.approx(0.95)
    assert not request.HasField("cover")
    assert not request.HasField("cluster_distance")
    assert request.options.top_k == 3
    assert not request.options.HasField("max_distance")


def test_scene_stream_without_result_is_502() -> None:
    fake = FakeFaces()
    fake.scene_events = fake.scene_events[:2]
    response = post(fake, "/identify/scene", {"video_path": "/v.mp4"})
    assert response.status_code == 502
    assert response.json() == {"detail": "the server ended the scene stream without a result"}


@pytest.mark.parametrize(
    "override",
    [
        {"num_frames": 4},
        {"num_frames": 121},
        {"top_k": 11},
        {"start_offset_pct": 0.9, "end_offset_pct": 0.1},
        {"end_offset_pct": 1.5},
        {"cluster_threshold": 3.0},
        {"video_path": None},
    ],
)
def test_scene_validation(override: dict[str, Any]) -> None:
    fake = FakeFaces()
    assert post(fake, "/identify/scene", {"video_path": "/v.mp4", **override}).status_code == 422
    assert "IdentifyVideo" not in fake.requests


def test_client_disconnect_cancels_the_scene_call() -> None:
    """Driven at the ASGI level: the client's disconnect arrives while the server is working."""
    fake = FakeFaces()
    fake.hang_scene = True
    sent: list[dict[str, Any]] = []
    body = json.dumps({"video_path": "/v.mp4"}).encode()

    async def scenario(app: FastAPI) -> None:
        pending = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive() -> dict[str, Any]:
            if pending:
                return pending.pop(0)
            await fake.scene_started.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": "/identify/scene",
            "raw_path": b"/identify/scene",
            "query_string": b"",
            "root_path": "",
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("adapter", 80),
        }
        await asyncio.wait_for(app(scope, receive, send), 10)
        await asyncio.wait_for(fake.scene_cancelled.wait(), 10)

    asyncio.run(asyncio.wait_for(_serve(fake, None, scenario), TEST_TIMEOUT_S))
    assert fake.scene_cancelled.is_set()
    assert fake.scene_events_sent == 1
    assert sent[0]["type"] == "http.response.start"
    assert sent[0]["status"] == 499


# ------------------------------------------------------------------------------------------ compare, index


def test_compare_shape_with_mixed_sources() -> None:
    fake = FakeFaces()
    response = post(
        fake,
        "/faces/compare",
        {"first_path": "/a.jpg", "second_base64": _b64(JPEG_BYTES), "min_face_size": 20},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {
        "first_faces": [BIG_BOX],
        "second_faces": [SMALL_BOX, {"x": 5, "y": 5, "width": 30, "height": 30, "confidence": 0.6}],
        "pairs": [
            {
                "first_face": 0,
                "second_face": 0,
                "similarity": 0.75,
                "distance": 0.25,
                "same_person": True,
                "facenet_distance": 0.375,
                "arcface_distance": 0.125,
            },
            {
                "first_face": 0,
                "second_face": 1,
                "similarity": -0.25,
                "distance": 1.25,
                "same_person": False,
                "facenet_distance": 1.5,
                "arcface_distance": 1.0,
            },
        ],
        "same_person_distance": 0.5,
        "profile": "stash-sense",
        "index_version": "",
    }
    (request,) = fake.requests["CompareFaces"]
    assert request.first.path == "/a.jpg"
    assert request.second.data == JPEG_BYTES
    assert request.filter.min_face_size == 20
    assert not request.filter.HasField("min_confidence")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"second_path": "/b.jpg"}, "give exactly one of first_path and first_base64"),
        (
            {"first_path": "/a.jpg", "first_base64": _b64(JPEG_BYTES), "second_path": "/b.jpg"},
            "give exactly one of first_path and first_base64",
        ),
        ({"first_path": "/a.jpg"}, "give exactly one of second_path and second_base64"),
    ],
)
def test_compare_needs_one_source_per_image(body: dict[str, Any], message: str) -> None:
    response = post(FakeFaces(), "/faces/compare", body)
    assert response.status_code == 422
    assert any(message in error["msg"] for error in response.json()["detail"]), response.text


def test_compare_refuses_bad_base64() -> None:
    response = post(FakeFaces(), "/faces/compare", {"first_path": "/a.jpg", "second_base64": "%%%"})
    assert response.status_code == 400
    assert response.json() == {"detail": "second_base64 is not valid base64"}


def test_face_index() -> None:
    fake = FakeFaces()
    responses: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        responses.append(await http.get("/faces/index"))

    run(fake, scenario)
    assert responses[0].status_code == 200
    assert responses[0].json() == {
        "profile": "stash-sense",
        "index_version": "2026.01.1",
        "index_loaded": True,
        "index_problem": None,
        "performer_count": 1000,
        "face_count": 5000,
        "embedders": ["facenet", "arcface"],
        "detector": "retinaface_r50",
        "max_distance": 0.5,
        "versions": [],  # this fake server has no IndexService
    }
