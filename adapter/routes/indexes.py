"""Face index version routes under /faces/index: list, describe, diff, activate, roll back, delete,
export (a release .zip download), import (a release .zip on the server). Builds are jobs (POST /jobs, kind build-face-index). The server
does the work and the checks; this module reshapes and maps errors. A refused lifecycle action
(deleting the active version, activating one that cannot serve) is 409, not 503: the server is
fine, the action is not possible."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import grpc
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from stash_vision.adapter.server_client import ServerClient, http_error, server_of
from stash_vision.v1 import indexes_pb2

router = APIRouter()

_TIMEOUT_S = 30.0
_ACTIVATE_TIMEOUT_S = 600.0  # loading and checking a large version (hashing hundreds of MB)
_EXPORT_TIMEOUT_S = 3600.0


def _error(error: grpc.aio.AioRpcError) -> HTTPException:
    if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
        return HTTPException(status_code=409, detail=error.details() or "conflict")
    return http_error(error)


def version_json(version: indexes_pb2.IndexVersion) -> dict[str, Any]:
    return {
        "version": version.version,
        "created_at": version.created_at,
        "sources": list(version.sources),
        "performer_count": version.performer_count,
        "face_count": version.face_count,
        "size_bytes": version.size_bytes,
        "recipe": json.loads(version.recipe_json) if version.recipe_json else None,
        "parent_version": version.parent_version or None,
        "build_job_id": version.build_job_id or None,
        "origin": version.origin or None,
        "active": version.active,
        "previous": version.previous,
    }


def _source_json(diff: indexes_pb2.SourceDiff) -> dict[str, Any]:
    return {
        "performers_added": diff.performers_added,
        "performers_removed": diff.performers_removed,
        "faces_added": diff.faces_added,
        "faces_removed": diff.faces_removed,
    }


async def list_versions(client: ServerClient) -> indexes_pb2.ListIndexVersionsResponse:
    reply: indexes_pb2.ListIndexVersionsResponse = await client.indexes.ListIndexVersions(
        indexes_pb2.ListIndexVersionsRequest(), timeout=_TIMEOUT_S, metadata=client.metadata
    )
    return reply


@router.get("/faces/index/versions")
async def index_versions(request: Request) -> dict[str, Any]:
    try:
        reply = await list_versions(server_of(request))
    except grpc.aio.AioRpcError as error:
        raise _error(error) from None
    return {
        "profile": reply.profile,
        "active_version": reply.active_version or None,
        "previous_version": reply.previous_version or None,
        "versions": [version_json(v) for v in reply.versions],
    }


@router.get("/faces/index/versions/{version}")
async def index_version(request: Request, version: str) -> dict[str, Any]:
    client = server_of(request)
    try:
        reply: indexes_pb2.GetIndexVersionResponse = await client.indexes.GetIndexVersion(
            indexes_pb2.GetIndexVersionRequest(version=version), timeout=_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        raise _error(error) from None
    return version_json(reply.version)


@router.get("/faces/index/versions/{base}/diff/{other}")
async def diff_versions(request: Request, base: str, other: str) -> dict[str, Any]:
    client = server_of(request)
    try:
        reply: indexes_pb2.DiffIndexVersionsResponse = await client.indexes.DiffIndexVersions(
            indexes_pb2.DiffIndexVersionsRequest(base=base, other=other),
            timeout=_ACTIVATE_TIMEOUT_S,
            metadata=client.metadata,
        )
    except grpc.aio.AioRpcError as error:
        raise _error(error) from None
    return {
        "base": reply.base,
        "other": reply.other,
        **_source_json(reply.total),
        "sources": {s.source: _source_json(s) for s in reply.sources},
        "added_performer_ids": list(reply.added_performer_ids),
        "removed_performer_ids": list(reply.removed_performer_ids),
    }


async def _activate(request: Request, message: indexes_pb2.ActivateIndexVersionRequest) -> dict[str, Any]:
    client = server_of(request)
    try:
        reply: indexes_pb2.ActivateIndexVersionResponse = await client.indexes.ActivateIndexVersion(
            message, timeout=_ACTIVATE_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        raise _error(error) from None
    return {"version": version_json(reply.version), "replaced_version": reply.replaced_version or None}


@router.post("/faces/index/versions/{version}/activate")
async def activate_version(request: Request, version: str) -> dict[str, Any]:
    return await _activate(request, indexes_pb2.ActivateIndexVersionRequest(version=version))


@router.post("/faces/index/rollback")
async def rollback(request: Request) -> dict[str, Any]:
    return await _activate(request, indexes_pb2.ActivateIndexVersionRequest(rollback=True))


class ImportBody(BaseModel):
    path: str = Field(min_length=1, description="server-side path of the release .zip")
    activate: bool = False


@router.post("/faces/index/import", status_code=201)
async def import_release(request: Request, body: ImportBody) -> dict[str, Any]:
    """A release .zip already on the server (ours, or a Stash Sense release) as a new version."""
    client = server_of(request)
    try:
        reply: indexes_pb2.ImportIndexReleaseResponse = await client.indexes.ImportIndexRelease(
            indexes_pb2.ImportIndexReleaseRequest(path=body.path, activate=body.activate),
            timeout=_ACTIVATE_TIMEOUT_S,
            metadata=client.metadata,
        )
    except grpc.aio.AioRpcError as error:
        raise _error(error) from None
    return version_json(reply.version)


@router.delete("/faces/index/versions/{version}")
async def delete_version(request: Request, version: str) -> dict[str, Any]:
    client = server_of(request)
    try:
        await client.indexes.DeleteIndexVersion(
            indexes_pb2.DeleteIndexVersionRequest(version=version),
            timeout=_TIMEOUT_S,
            metadata=client.metadata,
        )
    except grpc.aio.AioRpcError as error:
        raise _error(error) from None
    return {"deleted": version}


@router.get("/faces/index/versions/{version}/export")
async def export_version(request: Request, version: str) -> StreamingResponse:
    """The release .zip as a download. The first message (name, size) is awaited before answering,
    so an unknown version is a 404 rather than a broken download."""
    client = server_of(request)
    call = client.indexes.ExportIndexVersion(
        indexes_pb2.ExportIndexVersionRequest(version=version),
        timeout=_EXPORT_TIMEOUT_S,
        metadata=client.metadata,
    )
    stream = call.__aiter__()
    try:
        head: indexes_pb2.ExportIndexVersionChunk = await stream.__anext__()
    except grpc.aio.AioRpcError as error:
        raise _error(error) from None

    async def body() -> AsyncIterator[bytes]:
        try:
            async for chunk in stream:
                yield chunk.data
        finally:
            call.cancel()

    return StreamingResponse(
        body(),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="{head.file_name}"',
            "Content-Length": str(head.size_bytes),
        },
    )
