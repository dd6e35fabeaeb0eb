"""GET /ready and GET /health in the shapes the successor client ("Skier AI Tagging") reads
(aitagger-contract.md §2), plus GET /metrics."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import grpc
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from stash_vision import __version__
from stash_vision.adapter.server_client import ServerClient, server_of
from stash_vision.adapter.stash_health import StashHealth
from stash_vision.settings import Settings
from stash_vision.v1 import models_pb2

router = APIRouter()


async def _ready_models(client: ServerClient) -> list[models_pb2.Model]:
    return [m for m in await client.list_models() if m.state == models_pb2.MODEL_STATE_READY]


@router.get("/ready")
async def ready(request: Request) -> JSONResponse:
    client = server_of(request)
    try:
        if await client.serving():
            models = await _ready_models(client)
            return JSONResponse({"ready": True, "loaded_pipelines": [m.name for m in models]})
        reason = "models are still loading or Triton is restarting"
    except grpc.aio.AioRpcError as error:
        reason = f"stash-vision server at {client.target} is unreachable ({error.code().name})"
    return JSONResponse({"detail": f"No pipelines loaded: {reason}"}, status_code=503)


def _stash_health(request: Request) -> StashHealth:
    """One per app, made on first use from the app's settings (the environment when it has none)."""
    state = request.app.state
    if getattr(state, "stash_health", None) is None:
        state.stash_health = StashHealth(getattr(state, "settings", None) or Settings())
    health: StashHealth = state.stash_health
    return health


@router.get("/health")
async def health(request: Request) -> JSONResponse:
    client = server_of(request)
    # Stash is asked at the same time as the server: an unreachable Stash costs its 2 s timeout
    # once per cache period, never on top of the server's answer.
    stash = asyncio.create_task(_stash_health(request).status())
    body: dict[str, Any] = {
        "status": "ok",
        "version": __version__,
        "time": datetime.now(UTC).isoformat(),
        "pipelines": {},
        "total_ai_models": 0,
        "outstanding_requests": request.app.state.outstanding - 1,  # not counting this request
        "cuda_available": False,
        "cuda_device_count": 0,
        "current_device": "cpu",
        "current_device_name": "cpu",
        "cuda_memory_allocated_bytes": None,
        "cuda_memory_reserved_bytes": None,
        # Added for the dashboard; the successor client ignores keys it does not read.
    }
    try:
        serving = await client.serving()
        models = await client.list_models()
    except grpc.aio.AioRpcError as error:
        body["status"] = "unavailable"
        body["detail"] = f"stash-vision server at {client.target} is unreachable ({error.code().name})"
        body["stash"] = await stash
        return JSONResponse(body)
    body["stash"] = await stash
    ready = [m for m in models if m.state == models_pb2.MODEL_STATE_READY]
    gpu = any(m.device == "gpu" for m in ready)
    body.update(
        status="ok" if serving else "degraded",
        pipelines={
            m.name: {
                "version": m.version,
                "short_name": m.name,
                "task": m.task,
                "ready": m.state == models_pb2.MODEL_STATE_READY,
                "device": m.device,
                "precision": m.precision,
                "precision_reason": m.precision_reason,
                "ai_models_count": 1,
                "ai_models": [m.name],
            }
            for m in models
        },
        total_ai_models=len(ready),
        cuda_available=gpu,
        current_device="cuda" if gpu else "cpu",
        current_device_name="Triton GPU instance" if gpu else "cpu",
    )
    # The GPU count is Triton's to know; on CPU it is 0 and on GPU at least 1.
    body["cuda_device_count"] = 1 if gpu else 0
    return JSONResponse(body)


@router.get("/metrics")
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
