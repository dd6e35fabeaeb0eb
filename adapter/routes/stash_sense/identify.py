"""Stash Sense: `GET /health` and the identify routes (contract part A, §A.3.1–A.3.4). The plugin
sends only Stash ids; the server reads the media from the user's Stash (its file when readable
here, else through Stash with the key). Requests take exactly Stash Sense's fields, defaults and
limits; unknown fields are ignored. Thresholds the plugin leaves out (it sends none but `top_k`)
are the face profile's, which are tuned to its models, rather than Stash Sense's numbers for its
own. Answers are shaped in identify_shapes.py; failures follow R1 (see the package docstring):
Stash unreachable or a wrong key is a 503 naming Stash and the setting to fix."""

from __future__ import annotations

from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Request
from pydantic import Field

from stash_vision.adapter.face_options import FaceMatching
from stash_vision.adapter.face_replies import answered_by, timing_json
from stash_vision.adapter.server_client import ServerClient, answer_of, server_of
from stash_vision.adapter.streaming import stream_result
from stash_vision.v1 import faces_pb2, media_pb2

from .identify_shapes import gallery_errors, gallery_note, gallery_performers, image_faces, scene_persons

router = APIRouter()

# Each answer (or a clear error) comes back before the plugin gives up: scene 180 s, image 30 s,
# gallery 300 s.
_SCENE_TIMEOUT_S = 170.0
_IMAGE_TIMEOUT_S = 28.0
_GALLERY_TIMEOUT_S = 290.0
_HEALTH_TIMEOUT_S = 5.0
# Stash Sense answers 422 above 10; the plugin sends its "max results" setting as top_k, so a user
# who sets 20 would see "Identification failed" for a harmless choice. Clamped instead.
_SCENE_MAX_TOP_K = 10

StashId = Annotated[str, Field(min_length=1, max_length=64)]


class _Request(FaceMatching):
    """Fields Stash Sense declares and ignores (use_body, ...) are accepted and ignored too."""

    use_multi_signal: bool = True
    use_body: bool = True
    use_tattoo: bool = True


class SceneIdentifyRequest(_Request):
    scene_id: StashId
    num_frames: Annotated[int, Field(ge=5, le=120)] = 60
    start_offset_pct: Annotated[float, Field(ge=0.0, le=0.5)] = 0.05
    end_offset_pct: Annotated[float, Field(ge=0.5, le=1.0)] = 0.95
    min_face_size: Annotated[int, Field(ge=20, le=200)] | None = None
    min_face_confidence: Annotated[float, Field(ge=0.1, le=1.0)] | None = None
    top_k: Annotated[int, Field(ge=1)] = 3
    cluster_threshold: Annotated[float, Field(ge=0.2, le=3.0)] | None = None
    matching_mode: str = "frequency"
    scene_performer_stashdb_ids: list[str] = Field(default_factory=list)
    # Declared by Stash Sense and ignored there too: the server's own Stash settings apply.
    stash_url: str | None = None
    api_key: str | None = None

    @property
    def effective_top_k(self) -> int:
        return min(self.top_k, _SCENE_MAX_TOP_K)


class ImageIdentifyRequest(_Request):
    image_id: StashId
    top_k: Annotated[int, Field(ge=1, le=20)] = 5


class GalleryIdentifyRequest(_Request):
    gallery_id: StashId
    top_k: Annotated[int, Field(ge=1, le=20)] = 5


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    """Always 200 (the plugin only shows connected / disconnected): `degraded` until a face index
    is loaded, or while the server cannot be asked."""
    client: ServerClient = server_of(request)
    try:
        reply: faces_pb2.GetFaceIndexResponse = await client.faces.GetFaceIndex(
            faces_pb2.GetFaceIndexRequest(), timeout=_HEALTH_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        problem = f"the stash-vision server cannot be reached: {error.details() or error.code().name}"
        return {
            "status": "degraded",
            "database_loaded": False,
            "performer_count": 0,
            "face_count": 0,
            "problem": problem,
        }
    return {
        "status": "healthy" if reply.index_loaded else "degraded",
        "database_loaded": reply.index_loaded,
        "performer_count": reply.performer_count,
        "face_count": reply.face_count,
        "problem": reply.index_problem or None,
        **answered_by(reply.answered_by),
    }


@router.post("/identify/scene")
async def identify_scene(request: Request, body: SceneIdentifyRequest) -> dict[str, Any]:
    message = faces_pb2.IdentifyVideoRequest(
        stash_scene_id=body.scene_id,
        num_frames=body.num_frames,
        start_fraction=body.start_offset_pct,
        end_fraction=body.end_offset_pct,
        options=body.options(body.effective_top_k),
    )
    if body.cluster_threshold is not None:
        message.cluster_distance = body.cluster_threshold
    client = server_of(request)
    call = client.faces.IdentifyVideo(message, timeout=_SCENE_TIMEOUT_S, metadata=client.metadata)
    result: faces_pb2.IdentifyVideoResult = await stream_result(request, call, "scene")
    tagged = frozenset(body.scene_performer_stashdb_ids)
    return {
        "scene_id": body.scene_id,
        "frames_analyzed": result.frames_analyzed,
        "frames_requested": body.num_frames,
        "faces_detected": result.faces_detected,
        "faces_after_filter": result.faces_after_filter,
        "persons": scene_persons(result.persons, tagged, body.effective_top_k),
        # Why fewer frames than planned were read (a stream that broke off): shown, never hidden.
        "errors": [result.partial_reason] if result.partial_reason else [],
        "fingerprint_saved": False,
        "fingerprint_error": None,
        "timing": timing_json(result.timing),
        "multi_signal_used": False,
        **answered_by(result.answered_by),
    }


@router.post("/identify/image")
async def identify_image(request: Request, body: ImageIdentifyRequest) -> dict[str, Any]:
    client = server_of(request)
    message = faces_pb2.IdentifyImageRequest(
        image=media_pb2.ImageSource(stash_image_id=body.image_id),
        options=body.options(body.top_k),
    )
    reply: faces_pb2.IdentifyImageResponse = await answer_of(
        client.faces.IdentifyImage(message, timeout=_IMAGE_TIMEOUT_S, metadata=client.metadata)
    )
    return {
        "faces": image_faces(reply.faces),
        "face_count": len(reply.faces),
        **answered_by(reply.answered_by),
    }


@router.post("/identify/gallery")
async def identify_gallery(request: Request, body: GalleryIdentifyRequest) -> dict[str, Any]:
    client = server_of(request)
    message = faces_pb2.IdentifyGalleryRequest(
        stash_gallery_id=body.gallery_id, options=body.options(body.top_k)
    )
    reply: faces_pb2.IdentifyGalleryResponse = await answer_of(
        client.faces.IdentifyGallery(message, timeout=_GALLERY_TIMEOUT_S, metadata=client.metadata)
    )
    return {
        "gallery_id": body.gallery_id,
        "total_images": reply.total_images,
        "images_processed": reply.images_processed,
        "images_selected": reply.images_selected,
        "faces_detected": reply.faces_detected,
        "performers": gallery_performers(reply),
        "errors": gallery_errors(reply),
        "note": gallery_note(reply),
        **answered_by(reply.answered_by),
    }
