"""The gateway's synchronous `/api/v1/facial-recognition/*` routes (contract B.2), thin over our
FaceService: the answer objects are the queue jobs' (`stash_ai_results`). The AI Overhaul plugin
never calls them; other clients of the gateway may.

As in the original every outcome is HTTP 200 with `success`/`error` (an invalid body is a 422),
except `compare-faces`: it compares two performers by id, which has no meaning for an index of
faces, so it answers 501 in the gateway's error body and names the route that compares images."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse

from stash_vision.adapter.server_client import server_of
from stash_vision.adapter.streaming import stream_result
from stash_vision.server.jobs.kinds.stash_ai_results import (
    Answer,
    Candidate,
    FoundFace,
    best_per_face,
    failure_response,
    gallery_image_result,
    gallery_response,
    image_response,
)
from stash_vision.v1 import faces_pb2, media_pb2

from .bodies import (
    FaceComparisonRequest,
    FacialRecognitionRequest,
    GalleryIdentificationRequest,
    SceneIdentificationRequest,
    gateway_error,
)
from .routes import read_request, settings_of

router = APIRouter(prefix="/api/v1/facial-recognition")

_IMAGES_AT_ONCE = 4
_MAX_TOP_K = 20  # the face service's limit; the gateway allows 50


def _candidate(match: faces_pb2.Match) -> Candidate:
    performer = match.performer
    return Candidate(performer.id, performer.name, match.distance, performer.image_url, performer.country)


def _face(face: faces_pb2.Face, matches: list[faces_pb2.Match]) -> FoundFace:
    box = face.box
    return FoundFace(
        (box.x, box.y, box.x + box.width, box.y + box.height),
        face.confidence,
        [_candidate(m) for m in matches],
    )


def _model_info(answered: faces_pb2.AnsweredBy) -> dict[str, Any]:
    return {
        "ensemble_method": "weighted_distance_fusion",
        "profile": answered.profile,
        "index_version": answered.index_version,
    }


def _options(body: FacialRecognitionRequest) -> faces_pb2.IdentifyOptions:
    return faces_pb2.IdentifyOptions(top_k=min(body.max_results, _MAX_TOP_K))


async def _identify(
    request: Request, body: FacialRecognitionRequest, data: bytes
) -> tuple[list[FoundFace], faces_pb2.AnsweredBy] | str:
    """The faces of one image with their candidates, or the server's reason for no answer."""
    client = server_of(request)
    message = faces_pb2.IdentifyImageRequest(image=media_pb2.ImageSource(data=data), options=_options(body))
    try:
        reply = await client.faces.IdentifyImage(
            message, timeout=float(body.timeout), metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        return str(error.details() or error.code().name)
    answered: faces_pb2.AnsweredBy = reply.answered_by
    return [_face(f.face, list(f.matches)) for f in reply.faces], answered


def _answer(body: FacialRecognitionRequest, started: float, answered: faces_pb2.AnsweredBy) -> Answer:
    elapsed = asyncio.get_running_loop().time() - started
    return Answer(body.entity.stored(), body.request_id, elapsed, _model_info(answered))


@router.post("/identify-image", response_model=None)
async def identify_image(request: Request) -> dict[str, Any] | JSONResponse:
    started = asyncio.get_running_loop().time()
    body = await read_request(request, FacialRecognitionRequest)
    if isinstance(body, JSONResponse):
        return body
    if body.image_data is None:
        return failure_response(body.entity.stored(), "No image data provided", body.request_id)
    outcome = await _identify(request, body, body.image_data.content)
    if isinstance(outcome, str):
        return failure_response(body.entity.stored(), outcome, body.request_id)
    faces, answered = outcome
    answer = _answer(body, started, answered)
    return image_response(answer, faces, body.threshold, best_per_face(faces, body.threshold))


async def _scene_faces(
    request: Request, body: SceneIdentificationRequest
) -> tuple[list[FoundFace], faces_pb2.AnsweredBy] | str:
    """The scene's persons as faces (first sighting, best match then alternatives), resolved
    through the Stash connection by the entity's id."""
    client = server_of(request)
    message = faces_pb2.IdentifyVideoRequest(stash_scene_id=body.entity.id, options=_options(body))
    call = client.faces.IdentifyVideo(message, timeout=float(body.timeout), metadata=client.metadata)
    try:
        result: faces_pb2.IdentifyVideoResult = await stream_result(request, call, "scene")
    except HTTPException as error:
        return str(error.detail)
    faces = [
        _face(
            person.sightings[0].face,
            ([person.best_match] if person.HasField("best_match") else []) + list(person.alternatives),
        )
        for person in result.persons
        if person.sightings
    ]
    return faces, result.answered_by


@router.post("/identify-scene", response_model=None)
async def identify_scene(request: Request) -> dict[str, Any] | JSONResponse:
    """With `image_data`, that image (every distinct performer, no threshold, as the original);
    without, the Stash scene `entity.id` itself (the original answered "No image data provided")."""
    started = asyncio.get_running_loop().time()
    body = await read_request(request, SceneIdentificationRequest)
    if isinstance(body, JSONResponse):
        return body
    if body.image_data is not None:
        outcome = await _identify(request, body, body.image_data.content)
    else:
        outcome = await _scene_faces(request, body)
    if isinstance(outcome, str):
        return failure_response(
            body.entity.stored(), f"Scene identification failed: {outcome}", body.request_id
        )
    faces, answered = outcome
    return image_response(_answer(body, started, answered), faces, body.threshold, best_per_face(faces, 0.0))


@router.post("/identify-gallery", response_model=None)
async def identify_gallery(request: Request) -> dict[str, Any] | JSONResponse:
    started = asyncio.get_running_loop().time()
    body = await read_request(request, GalleryIdentificationRequest)
    if isinstance(body, JSONResponse):
        return body
    entity = body.entity.stored()
    if not body.images:
        return failure_response(entity, "No images provided for gallery identification", body.request_id)
    limit = settings_of(request).max_images_per_request
    if len(body.images) > limit:
        message = f"{len(body.images)} images in one gallery; the limit is {limit} (STASH_VISION_MAX_IMAGES_PER_REQUEST)"
        return failure_response(entity, message, body.request_id)
    slots = asyncio.Semaphore(_IMAGES_AT_ONCE)

    async def one(meta: dict[str, Any], data: bytes | str) -> dict[str, Any]:
        if isinstance(data, str):
            return gallery_image_result(meta, error=data)
        async with slots:
            t0 = asyncio.get_running_loop().time()
            outcome = await _identify(request, body, data)
            took = asyncio.get_running_loop().time() - t0
        if isinstance(outcome, str):
            return gallery_image_result(meta, error=outcome, processing_time=took)
        return gallery_image_result(meta, best_per_face(outcome[0], body.threshold), processing_time=took)

    images = await asyncio.gather(*(one(image.meta(), image.decoded()) for image in body.images))
    answer = Answer(entity, body.request_id, asyncio.get_running_loop().time() - started, {})
    return gallery_response(answer, len(body.images), images)


@router.post("/compare-faces", response_model=None)
async def compare_faces(request: Request) -> JSONResponse:
    body = await read_request(request, FaceComparisonRequest)
    if isinstance(body, JSONResponse):
        return body
    return gateway_error(
        501,
        "compare-faces by performer id is not provided by stash-vision: the face index has no "
        "meaningful distance between two performers; compare two images with POST /faces/compare "
        '({"first_base64": ..., "second_base64": ...})',
    )
