"""What the Stash Sense plugin page shows about this service, asked of the server over gRPC: its
models (and so whether it runs on a GPU), the active face index and its versions. Shared by the
plugin page, the settings and the queue routes."""

from __future__ import annotations

from typing import Any

import grpc
from fastapi import HTTPException, Request

from stash_vision.adapter.server_client import http_error, server_of
from stash_vision.v1 import faces_pb2, indexes_pb2, models_pb2

_TIMEOUT_S = 10.0


async def ready_models(request: Request) -> list[models_pb2.Model]:
    """Every configured model; 503 with the reason when the server cannot be reached."""
    try:
        return await server_of(request).list_models()
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None


async def uses_gpu(request: Request) -> bool:
    """True when a ready model runs on a GPU (Triton knows; this process may not see the GPU);
    False when the server cannot say."""
    try:
        models = await server_of(request).list_models()
    except grpc.aio.AioRpcError:
        return False
    return any(m.device == "gpu" and m.state == models_pb2.MODEL_STATE_READY for m in models)


async def hardware_tier(request: Request) -> str:
    """The original's tier names are `gpu-high`, `gpu-low` and `cpu`; we do not measure the GPU's
    memory, so a GPU host is just `gpu` (the tab shows the text)."""
    return "gpu" if await uses_gpu(request) else "cpu"


async def _unary(request: Request, stub: Any, rpc: str, message: Any) -> Any:
    client = server_of(request)
    try:
        return await getattr(stub(client), rpc)(message, timeout=_TIMEOUT_S, metadata=client.metadata)
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None


async def face_index(request: Request) -> faces_pb2.GetFaceIndexResponse:
    reply: faces_pb2.GetFaceIndexResponse = await _unary(
        request, lambda c: c.faces, "GetFaceIndex", faces_pb2.GetFaceIndexRequest()
    )
    return reply


async def index_versions(request: Request) -> indexes_pb2.ListIndexVersionsResponse:
    """The active profile's versions, newest first."""
    reply: indexes_pb2.ListIndexVersionsResponse = await _unary(
        request, lambda c: c.indexes, "ListIndexVersions", indexes_pb2.ListIndexVersionsRequest()
    )
    return reply


async def active_version_or_none(request: Request) -> str | None:
    """The active index version; None when there is none or the server cannot say."""
    try:
        return (await face_index(request)).answered_by.index_version or None
    except HTTPException:
        return None
