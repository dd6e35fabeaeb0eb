"""The two JSON routes the dashboard needed that the API lacked, usable by any client like the
others: a connection test of the configured Stash and stash-boxes (a fresh probe each, unlike the
10 s cache of /health), and the tags of an uploaded image (the plugin's tagging routes take
server-side paths only)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import asdict
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from stash_vision.adapter.server_client import http_error, server_of
from stash_vision.adapter.ui.context import settings_of
from stash_vision.server.connections import StashConnection
from stash_vision.server.connections.stashbox import StashBoxConnection
from stash_vision.v1 import media_pb2, tagging_pb2

router = APIRouter(prefix="/ui/api")

_PROBE_TIMEOUT_S = 5.0
_TAG_TIMEOUT_S = 120.0


@router.get("/connections")
async def test_connections(request: Request) -> dict[str, Any]:
    """Each configured remote: reachable, its version, whether the key works (one query each)."""
    settings = settings_of(request)
    stash = StashConnection.from_settings(settings, timeout_s=_PROBE_TIMEOUT_S, retries=0)
    boxes = [
        StashBoxConnection(box, timeout_s=_PROBE_TIMEOUT_S, retries=0) for box in settings.stashbox_endpoints
    ]
    try:
        stash_status = await stash.status() if stash else None
        box_statuses = await asyncio.gather(*(box.status() for box in boxes))
    finally:
        if stash:
            await stash.aclose()
        for box in boxes:
            await box.aclose()
    answers = [asdict(s) for s in box_statuses]
    return {
        "stash": {"url": settings.stash_url, **asdict(stash_status)}
        if stash_status
        else {"configured": False},
        "stashboxes": [
            {"name": box.name, "endpoint": box.endpoint, **answer}
            for box, answer in zip(settings.stashbox_endpoints, answers, strict=True)
        ],
    }


class TagImageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    image_base64: Annotated[StrictStr, Field(min_length=1)]
    threshold: Annotated[float | None, Field(ge=0.0, le=1.0)] = None


@router.post("/tag-image")
async def tag_image(request: Request, body: TagImageRequest) -> dict[str, Any]:
    """Every active tagger's tags for one uploaded image, with confidences, by category."""
    try:
        data = base64.b64decode(body.image_base64, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(status_code=400, detail="image_base64 is not valid base64") from None
    message = tagging_pb2.TagImagesRequest(
        images=[media_pb2.ImageSource(data=data)],
        return_confidence=True,
        naming=tagging_pb2.TAG_NAMING_RENAMED,
    )
    if body.threshold is not None:
        message.threshold = body.threshold
    client = server_of(request)
    try:
        reply: tagging_pb2.TagImagesResponse = await client.tagging.TagImages(
            message, timeout=_TAG_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None
    result = reply.results[0]
    if result.error:
        raise HTTPException(status_code=400, detail=result.error)
    return {
        "categories": {
            c.category: [{"tag": t.name, "confidence": round(t.confidence, 3)} for t in c.tags]
            for c in result.categories
        }
    }
