"""AI Overhaul: health, the queue (submit, status) and /ai-jobs (contract B.2, B.3), on our
persisted jobs of the `stash-ai-identify-*` kinds.

Submitting stores the images as an upload in the shared data directory (bounded body, bad base64 a
422 like the original) and queues a job naming the upload. A request the server refuses (too many
images, no such kind, jobs unavailable) is `200 {"success": false, "error"}`, which the plugin
shows in its alert; our own HTTP errors use the gateway's body `{success, error, code, timestamp}`."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated, Any, TypeVar

import grpc
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from stash_vision import __version__
from stash_vision.adapter.server_client import ServerClient, server_of
from stash_vision.server.api import job_convert
from stash_vision.server.jobs.kinds.stash_ai_results import KIND_OF_TYPE, utc_iso
from stash_vision.server.jobs.kinds.stash_ai_uploads import Uploads, uploads_in
from stash_vision.server.jobs.model import Job
from stash_vision.settings import Settings
from stash_vision.v1 import faces_pb2, jobs_pb2

from . import gateway_jobs
from .bodies import (
    BodyTooLarge,
    FacialRecognitionRequest,
    GalleryIdentificationRequest,
    RequestBase,
    SceneIdentificationRequest,
    gateway_error,
    parse_body,
    read_capped,
    too_large,
)
from .queue_socket import hub_of

router = APIRouter(prefix="/api/v1")

_HEALTH_TIMEOUT_S = 2.0  # the plugin aborts its health check after 5 s
_STARTED = time.time()
M = TypeVar("M", bound=RequestBase)


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def read_request(request: Request, model: type[M]) -> M | JSONResponse:
    """The validated body (422 raised for an invalid one), or the 413 answer for one over the cap."""
    limit = settings_of(request).stash_ai_max_body_bytes
    try:
        body = await read_capped(request, limit)
    except BodyTooLarge:
        return too_large(limit)
    return parse_body(model, body)


# ------------------------------------------------------------------------------------------ health


async def _visage(client: ServerClient) -> str:
    """Our stand-in for the original's Visage service: healthy when a face index is loaded."""
    try:
        reply = await client.faces.GetFaceIndex(
            faces_pb2.GetFaceIndexRequest(), timeout=_HEALTH_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError:
        return "unhealthy"
    return "healthy" if reply.index_loaded else "unhealthy"


async def _queue_summary(client: ServerClient) -> dict[str, Any]:
    try:
        return await asyncio.wait_for(gateway_jobs.queue_status(client), _HEALTH_TIMEOUT_S)
    except (grpc.aio.AioRpcError, TimeoutError) as error:
        detail = error.code().name if isinstance(error, grpc.aio.AioRpcError) else "timeout"
        return {
            "active_jobs": [],
            "active_jobs_count": 0,
            "total_tests": 0,
            "total_active_tests": 0,
            "completed_tests": 0,
            "failed_tests": 0,
            "suggested_polling_interval": 30,
            "error": f"the stash-vision server's jobs are unavailable ({detail})",
        }


@router.get("/health")
async def health(request: Request) -> dict[str, Any]:
    started = time.perf_counter()
    client = server_of(request)
    visage, queue = await asyncio.gather(_visage(client), _queue_summary(client))
    healthy = visage == "healthy"
    return {
        "success": True,
        "message": "StashAI Server is healthy. 1/1 services available"
        if healthy
        else "stash-vision is up, but no face index is loaded (build one: stash-vision index build)",
        "error": None,
        "request_id": None,
        "service_name": "stash-ai-server",
        "status": "healthy" if healthy else "degraded",
        "version": __version__,
        "uptime": round(time.time() - _STARTED, 1),
        "processing_time": round(time.perf_counter() - started, 4),
        "timestamp": utc_iso(),
        "dependencies": {"visage": visage},
        "metrics": {
            "total_services": 1,
            "healthy_services": 1 if healthy else 0,
            "active_batch_jobs": queue.get("active_jobs_count", 0),
            "queue_status": queue,
        },
    }


# ------------------------------------------------------------------------------------------ submit


async def _store(uploads: Uploads, images: list[bytes | None]) -> str:
    def store() -> str:
        uploads.sweep()
        return uploads.store(images)

    return await asyncio.to_thread(store)


async def _submit(
    request: Request, job_type: str, params: dict[str, Any], images: list[bytes | None] | None = None
) -> dict[str, Any]:
    """Stores the images (if any), queues the job; the plugin's `{success, job_id, message}`."""
    uploads = uploads_in(settings_of(request).data_dir)
    if images is not None:
        try:
            params["upload"] = await _store(uploads, images)
        except OSError as error:
            return {"success": False, "error": f"cannot store the uploaded images in {uploads.root}: {error}"}
    client = server_of(request)
    message = jobs_pb2.SubmitJobRequest(kind=KIND_OF_TYPE[job_type], params=job_convert.to_struct(params))
    try:
        reply = await client.jobs.SubmitJob(
            message, timeout=gateway_jobs.CALL_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        if "upload" in params:
            await asyncio.to_thread(uploads.discard_all, params["upload"])
        return {
            "success": False,
            "error": error.details() or f"the job could not be queued ({error.code().name})",
        }
    job = job_convert.job_from_proto(reply.job)
    hub_of(request).submitted(job)
    return {
        "success": True,
        "job_id": job.id,
        "message": f"{job_type.capitalize()} job {job.id} submitted to queue",
    }


@router.post("/queue/submit/image", response_model=None)
async def submit_image(request: Request) -> dict[str, Any] | JSONResponse:
    body = await read_request(request, FacialRecognitionRequest)
    if isinstance(body, JSONResponse):
        return body
    if body.image_data is None:
        return {"success": False, "error": "No image data provided"}
    return await _submit(request, "image", body.job_params(), [body.image_data.content])


@router.post("/queue/submit/gallery", response_model=None)
async def submit_gallery(request: Request) -> dict[str, Any] | JSONResponse:
    body = await read_request(request, GalleryIdentificationRequest)
    if isinstance(body, JSONResponse):
        return body
    if not body.images:
        return {"success": False, "error": "No images provided for gallery identification"}
    limit = settings_of(request).max_images_per_request
    if len(body.images) > limit:
        return {
            "success": False,
            "error": f"{len(body.images)} images in one gallery; the limit is {limit} "
            "(STASH_VISION_MAX_IMAGES_PER_REQUEST)",
        }
    decoded = [image.decoded() for image in body.images]
    described = [
        {
            **image.meta(),
            "uploaded": isinstance(data, bytes),
            **({"error": data} if isinstance(data, str) else {}),
        }
        for image, data in zip(body.images, decoded, strict=True)
    ]
    params = {**body.job_params(), "images": described}
    return await _submit(request, "gallery", params, [d if isinstance(d, bytes) else None for d in decoded])


@router.post("/queue/submit/scene", response_model=None)
async def submit_scene(request: Request) -> dict[str, Any] | JSONResponse:
    """Only the entity is sent: the scene is resolved through the Stash connection and identified
    from its frames (the original could not identify a scene without an image)."""
    body = await read_request(request, SceneIdentificationRequest)
    if isinstance(body, JSONResponse):
        return body
    return await _submit(request, "scene", body.job_params())


# ------------------------------------------------------------------------------------------ status


async def _job_or_404(request: Request, job_id: str) -> Job | JSONResponse:
    try:
        job = await gateway_jobs.fetch_job(server_of(request), job_id)
    except grpc.aio.AioRpcError as error:
        return gateway_error(503, f"Failed to get job status: {error.details() or error.code().name}")
    return job if job is not None else gateway_error(404, f"Job {job_id} not found")


@router.get("/queue/status/{job_id}", response_model=None)
async def queue_status(request: Request, job_id: str) -> dict[str, Any] | JSONResponse:
    job = await _job_or_404(request, job_id)
    if isinstance(job, JSONResponse):
        return job
    try:
        outcome = await gateway_jobs.outcome(server_of(request), job)
    except grpc.aio.AioRpcError as error:
        return gateway_error(503, f"Failed to get job status: {error.details() or error.code().name}")
    return gateway_jobs.status_record(job, outcome)


@router.get("/ai-jobs/{job_id}", response_model=None)
async def ai_job(
    request: Request,
    job_id: str,
    include_results: Annotated[bool, Query()] = False,
    include_tests: Annotated[bool, Query()] = False,
) -> dict[str, Any] | JSONResponse:
    """The job as the plugin's interaction tracking and results dropdown read it; our items are
    the original's "tests", so `include_tests` adds nothing."""
    job = await _job_or_404(request, job_id)
    if isinstance(job, JSONResponse):
        return job
    outcome = None
    if include_results:
        try:
            outcome = await gateway_jobs.outcome(server_of(request), job)
        except grpc.aio.AioRpcError as error:
            return gateway_error(
                503, f"Failed to get the job's results: {error.details() or error.code().name}"
            )
    return gateway_jobs.ai_job_record(job, outcome)
