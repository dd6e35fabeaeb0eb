"""The AITagger image routes (aitagger-contract.md §1.2 and §2): translation to TaggingService
calls and back into the plugin's exact JSON shapes. Rules (thresholds, naming, per-image errors)
live in the server; this module only reshapes."""

from __future__ import annotations

from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from stash_vision.adapter.server_client import http_error, server_of
from stash_vision.v1 import media_pb2, tagging_pb2

router = APIRouter()

# Long requests: the plugin allows 3700 s (AITagger) / 7200 s (successor) per request.
_TAG_TIMEOUT_S = 3600.0


class ImageRequest(BaseModel):
    """Body of /process_images/ and /v3/process_images/. Unknown keys are ignored, as the original
    server does; `null` for threshold or return_confidence means "use the default"."""

    model_config = ConfigDict(extra="ignore")

    paths: Annotated[list[StrictStr], Field(min_length=1)]
    threshold: Annotated[float | None, Field(ge=0.0, le=1.0)] = None
    return_confidence: StrictBool | None = None
    pipeline_name: str | None = None
    categories_to_skip: list[StrictStr] = Field(default_factory=list)


async def _tag(
    request: Request, body: ImageRequest, naming: tagging_pb2.TagNaming
) -> tagging_pb2.TagImagesResponse:
    message = tagging_pb2.TagImagesRequest(
        images=[media_pb2.ImageSource(path=path) for path in body.paths],
        return_confidence=bool(body.return_confidence),
        naming=naming,
        categories_to_skip=body.categories_to_skip,
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
    return reply


def _entries(reply: tagging_pb2.TagImagesResponse, return_confidence: bool) -> list[dict[str, Any]]:
    entries: list[dict[str, Any]] = []
    for result in reply.results:
        if result.error:
            entries.append({"error": result.error})
            continue
        entries.append(
            {
                c.category: [
                    [t.name, round(t.confidence, 2)] if return_confidence else t.name for t in c.tags
                ]
                for c in result.categories
            }
        )
    return entries


def _model_info(tagger: tagging_pb2.Tagger) -> dict[str, Any]:
    return {
        "name": tagger.name,
        "identifier": tagger.identifier,
        "version": round(tagger.version, 4),
        "categories": list(tagger.categories),
        "type": tagger.type,
    }


@router.post("/process_images/")
async def process_images(request: Request, body: ImageRequest) -> dict[str, Any]:
    reply = await _tag(request, body, tagging_pb2.TAG_NAMING_RENAMED)
    return {"result": _entries(reply, bool(body.return_confidence)), "models": None}


@router.post("/v3/process_images/")
async def process_images_v3(request: Request, body: ImageRequest) -> dict[str, Any]:
    reply = await _tag(request, body, tagging_pb2.TAG_NAMING_ORIGINAL)
    metrics = reply.metrics
    return {
        "result": _entries(reply, bool(body.return_confidence)),
        "models": [_model_info(t) for t in reply.taggers],
        "metrics": {
            "preprocess_seconds": round(metrics.preprocess_seconds, 4),
            "ai_inference_seconds": round(metrics.inference_seconds, 4),
            "image_count": metrics.image_count,
            "ai_model_count": metrics.model_count,
            "total_runtime_seconds": round(metrics.total_seconds, 4),
            "images_per_second": round(metrics.image_count / metrics.total_seconds, 3)
            if metrics.total_seconds
            else None,
        },
    }


@router.get("/v3/current_ai_models/")
async def current_ai_models(request: Request) -> list[dict[str, Any]]:
    client = server_of(request)
    try:
        reply = await client.tagging.ListTaggers(
            tagging_pb2.ListTaggersRequest(), timeout=10, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None
    return [_model_info(t) for t in reply.taggers]
