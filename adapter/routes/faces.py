"""The face routes, shaped like Stash Sense's HTTP API (face-recognition-peers.md §1.3): /identify,
/identify/gallery, /identify/scene, plus /faces/compare and /faces/index. Images and videos are
server-side paths (or base64 for single images) instead of Stash ids. Every answer names the face
profile and index version that produced it. Rules (gates, fusion, voting, clustering) live in the
server; this module only validates and reshapes."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Self

import grpc
from fastapi import APIRouter, HTTPException, Request
from pydantic import Field, StrictStr, model_validator

from stash_vision.adapter.face_options import Distance, FaceGates, FaceMatching
from stash_vision.adapter.face_replies import (
    answered_by,
    embedder_distances,
    face_box,
    gallery_performer_json,
    match_json,
    person_json,
    timing_json,
)
from stash_vision.adapter.routes.indexes import list_versions, version_json
from stash_vision.adapter.server_client import http_error, server_of
from stash_vision.adapter.streaming import stream_result
from stash_vision.v1 import faces_pb2, media_pb2

router = APIRouter()

_IMAGE_TIMEOUT_S = 60.0
_COMPARE_TIMEOUT_S = 60.0
_GALLERY_TIMEOUT_S = 600.0
_SCENE_TIMEOUT_S = 300.0
_INDEX_TIMEOUT_S = 10.0
# Stash Sense reports at most this many per-image errors for a gallery.
_MAX_GALLERY_ERRORS = 10
# nginx's "client closed request": nobody reads it, but the access log and metrics do.


class IdentifyRequest(FaceMatching):
    """Body of /identify: exactly one of image_path and image_base64."""

    image_path: StrictStr | None = None
    image_base64: StrictStr | None = None
    top_k: Annotated[int, Field(ge=1, le=20)] = 5

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        _require_one("image", self.image_path, self.image_base64)
        return self


class GalleryRequest(FaceMatching):
    image_paths: Annotated[list[StrictStr], Field(min_length=1)]
    gallery_id: StrictStr | None = None
    top_k: Annotated[int, Field(ge=1, le=20)] = 5


class SceneRequest(FaceMatching):
    video_path: StrictStr
    scene_id: StrictStr | None = None
    num_frames: Annotated[int, Field(ge=5, le=120)] = 60
    start_offset_pct: Annotated[float, Field(ge=0.0, le=1.0)] = 0.05
    end_offset_pct: Annotated[float, Field(ge=0.0, le=1.0)] = 0.95
    top_k: Annotated[int, Field(ge=1, le=10)] = 3
    cluster_threshold: Distance | None = None
    cover_path: StrictStr | None = None

    @model_validator(mode="after")
    def _ordered_range(self) -> Self:
        if self.start_offset_pct >= self.end_offset_pct:
            raise ValueError("start_offset_pct must be below end_offset_pct")
        return self


class CompareRequest(FaceGates):
    """Body of /faces/compare: exactly one source for each of the two images."""

    first_path: StrictStr | None = None
    first_base64: StrictStr | None = None
    second_path: StrictStr | None = None
    second_base64: StrictStr | None = None

    @model_validator(mode="after")
    def _one_source_each(self) -> Self:
        _require_one("first", self.first_path, self.first_base64)
        _require_one("second", self.second_path, self.second_base64)
        return self


def _require_one(name: str, path: str | None, encoded: str | None) -> None:
    if (path is None) == (encoded is None):
        raise ValueError(f"give exactly one of {name}_path and {name}_base64")


# ------------------------------------------------------------------------------------------ requests


def _image(path: str | None, encoded: str | None, field: str) -> media_pb2.ImageSource:
    if path is not None:
        return media_pb2.ImageSource(path=path)
    assert encoded is not None  # the request model requires one of the two
    return media_pb2.ImageSource(data=_decode_base64(encoded, field))


def _decode_base64(text: str, field: str) -> bytes:
    """Standard base64, optionally as a data: URL ("data:image/jpeg;base64,...")."""
    payload = text.strip()
    if payload.startswith("data:"):
        header, comma, payload = payload.partition(",")
        if not comma or not header.endswith(";base64"):
            raise HTTPException(status_code=400, detail=f"{field} is a data: URL without ';base64,'")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(status_code=400, detail=f"{field} is not valid base64") from None
    if not data:
        raise HTTPException(status_code=400, detail=f"{field} is empty")
    return data


# ------------------------------------------------------------------------------------------ replies


def _gallery_performer(entry: faces_pb2.GalleryPerformer, paths: list[str]) -> dict[str, Any]:
    return {
        **gallery_performer_json(entry),
        "performer_id": entry.best_match.performer.id,
        "image_paths": [paths[i] for i in entry.image_indexes if 0 <= i < len(paths)],
        "vote_share": entry.vote_share,
    }


# ------------------------------------------------------------------------------------------ routes


@router.post("/identify")
async def identify(request: Request, body: IdentifyRequest) -> dict[str, Any]:
    client = server_of(request)
    message = faces_pb2.IdentifyImageRequest(
        image=_image(body.image_path, body.image_base64, "image_base64"), options=body.options(body.top_k)
    )
    try:
        reply: faces_pb2.IdentifyImageResponse = await client.faces.IdentifyImage(
            message, timeout=_IMAGE_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None
    return {
        "faces": [
            {"box": face_box(f.face), "matches": [match_json(m) for m in f.matches]} for f in reply.faces
        ],
        "face_count": len(reply.faces),
        **answered_by(reply.answered_by),
    }


@router.post("/identify/gallery")
async def identify_gallery(request: Request, body: GalleryRequest) -> dict[str, Any]:
    client = server_of(request)
    message = faces_pb2.IdentifyGalleryRequest(
        images=[media_pb2.ImageSource(path=path) for path in body.image_paths],
        options=body.options(body.top_k),
    )
    try:
        reply: faces_pb2.IdentifyGalleryResponse = await client.faces.IdentifyGallery(
            message, timeout=_GALLERY_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None
    paths = body.image_paths
    return {
        "gallery_id": body.gallery_id,
        "total_images": reply.total_images,
        "images_processed": reply.images_processed,
        "faces_detected": reply.faces_detected,
        "performers": [_gallery_performer(p, paths) for p in reply.performers],
        "errors": [
            {
                "image_path": paths[e.image_index] if 0 <= e.image_index < len(paths) else None,
                "error": e.message,
            }
            for e in reply.errors[:_MAX_GALLERY_ERRORS]
        ],
        **answered_by(reply.answered_by),
    }


async def _scene_result(request: Request, body: SceneRequest) -> faces_pb2.IdentifyVideoResult:
    message = faces_pb2.IdentifyVideoRequest(
        path=body.video_path,
        num_frames=body.num_frames,
        start_fraction=body.start_offset_pct,
        end_fraction=body.end_offset_pct,
        options=body.options(body.top_k),
    )
    if body.cover_path is not None:
        message.cover.path = body.cover_path
    if body.cluster_threshold is not None:
        message.cluster_distance = body.cluster_threshold
    client = server_of(request)
    call = client.faces.IdentifyVideo(message, timeout=_SCENE_TIMEOUT_S, metadata=client.metadata)

    result: faces_pb2.IdentifyVideoResult = await stream_result(request, call, "scene")
    return result


@router.post("/identify/scene")
async def identify_scene(request: Request, body: SceneRequest) -> dict[str, Any]:
    result = await _scene_result(request, body)
    return {
        "scene_id": body.scene_id,
        "frames_analyzed": result.frames_analyzed,
        "frames_requested": result.frames_requested,
        "faces_detected": result.faces_detected,
        "faces_after_filter": result.faces_after_filter,
        "persons": [person_json(p) for p in result.persons],
        "errors": [],
        "partial": result.partial,
        "partial_reason": result.partial_reason or None,
        "duration": result.duration,
        "timing": timing_json(result.timing),
        **answered_by(result.answered_by),
    }


@router.post("/faces/compare")
async def compare_faces(request: Request, body: CompareRequest) -> dict[str, Any]:
    client = server_of(request)
    message = faces_pb2.CompareFacesRequest(
        first=_image(body.first_path, body.first_base64, "first_base64"),
        second=_image(body.second_path, body.second_base64, "second_base64"),
        filter=body.face_filter(),
    )
    try:
        reply: faces_pb2.CompareFacesResponse = await client.faces.CompareFaces(
            message, timeout=_COMPARE_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None
    return {
        "first_faces": [face_box(f) for f in reply.first_faces],
        "second_faces": [face_box(f) for f in reply.second_faces],
        "pairs": [
            {
                "first_face": p.first_face,
                "second_face": p.second_face,
                "similarity": p.similarity,
                "distance": p.distance,
                "same_person": p.same_person,
                **embedder_distances(p.embedder_distances),
            }
            for p in reply.pairs
        ],
        "same_person_distance": reply.same_person_distance,
        **answered_by(reply.answered_by),
    }


@router.get("/faces/index")
async def face_index(request: Request) -> dict[str, Any]:
    client = server_of(request)
    try:
        reply: faces_pb2.GetFaceIndexResponse = await client.faces.GetFaceIndex(
            faces_pb2.GetFaceIndexRequest(), timeout=_INDEX_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None
    try:
        versions = [version_json(v) for v in (await list_versions(client)).versions]
    except grpc.aio.AioRpcError:
        versions = []  # an older server without IndexService: the rest of the answer still holds
    return {
        **answered_by(reply.answered_by),
        "index_loaded": reply.index_loaded,
        "index_problem": reply.index_problem or None,
        "performer_count": reply.performer_count,
        "face_count": reply.face_count,
        "embedders": list(reply.embedders),
        "detector": reply.detector,
        "max_distance": reply.max_distance,
        "versions": versions,
    }
