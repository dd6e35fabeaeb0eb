"""The AITagger video routes (aitagger-contract.md §1.3, §1.4, §2): the plugin's request bodies
translated to a TagVideo stream (the route waits for its result) and the result reshaped into the
plugin's JSON. A result from a partly decodable file says so (`partial`, `partial_reason`)."""

from __future__ import annotations

import json
import logging
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr

from stash_vision.adapter.server_client import http_error, server_of
from stash_vision.adapter.streaming import stream_result
from stash_vision.v1 import video_tagging_pb2

log = logging.getLogger("stash_vision.adapter")
router = APIRouter()

_VIDEO_TIMEOUT_S = 7200.0


class VideoRequest(BaseModel):
    """Body of /process_video/ and /v3/process_video/. Unknown keys are ignored. Absent fields take
    the defaults below; an explicit `null` for a number or flag is refused (422), as the original."""

    model_config = ConfigDict(extra="ignore")

    path: StrictStr
    # Annotated without None: absent -> default, null -> validation error.
    frame_interval: Annotated[float, Field(gt=0)] = 2.0
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = Field(default=None, validate_default=False)  # type: ignore[assignment]
    return_confidence: StrictBool = True
    vr_video: StrictBool = False
    existing_json_data: Any = None
    categories_to_skip: list[StrictStr] = Field(default_factory=list)


class OptimizeRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    existing_json_data: dict[str, Any]
    desired_timespan_data: dict[str, list[Any]]


async def _run(
    request: Request, body: VideoRequest, schema: video_tagging_pb2.VideoResultSchema
) -> video_tagging_pb2.VideoResult:
    message = video_tagging_pb2.TagVideoRequest(
        path=body.path,
        frame_interval=body.frame_interval,
        return_confidence=body.return_confidence,
        vr_video=body.vr_video,
        existing_json=json.dumps(body.existing_json_data) if body.existing_json_data is not None else "",
        categories_to_skip=body.categories_to_skip,
        schema=schema,
    )
    if body.threshold is not None:
        message.threshold = body.threshold
    client = server_of(request)
    call = client.videos.TagVideo(message, timeout=_VIDEO_TIMEOUT_S, metadata=client.metadata)
    result: video_tagging_pb2.VideoResult = await stream_result(request, call, "video")
    return result


def _metrics(result: video_tagging_pb2.VideoResult) -> dict[str, Any]:
    m = result.metrics
    return {
        "preprocess_seconds": round(m.preprocess_seconds, 4),
        "frames_preprocessed": m.frames_preprocessed,
        "preprocess_backend": f"pyav:{m.decode_strategy}" if m.decode_strategy else "none",
        "average_frame_preprocess_seconds": round(m.preprocess_seconds / m.frames_preprocessed, 4)
        if m.frames_preprocessed
        else 0.0,
        "ai_inference_seconds": round(m.inference_seconds, 4),
        "ai_model_count": m.model_count,
        "total_runtime_seconds": round(m.total_seconds, 4),
    }


@router.post("/process_video/")
async def process_video(request: Request, body: VideoRequest) -> dict[str, Any]:
    result = await _run(request, body, video_tagging_pb2.VIDEO_RESULT_SCHEMA_V1)
    answer: dict[str, Any] = {
        "json_result": result.json_result if result.HasField("json_result") else None,
        "video_tag_info": json.loads(result.video_tag_info_json),
    }
    if result.partial:
        answer["partial"] = True
        answer["partial_reason"] = result.partial_reason
    return {"result": answer}


@router.post("/v3/process_video/")
async def process_video_v3(request: Request, body: VideoRequest) -> dict[str, Any]:
    result = await _run(
        request,
        body.model_copy(update={"existing_json_data": None}),
        video_tagging_pb2.VIDEO_RESULT_SCHEMA_V3,
    )
    answer: dict[str, Any] = {"result": json.loads(result.v3_result_json), "metrics": _metrics(result)}
    if result.partial:
        answer["partial"] = True
        answer["partial_reason"] = result.partial_reason
    return answer


@router.post("/optimize_timeframe_settings/")
async def optimize_timeframe_settings(request: Request, body: OptimizeRequest) -> list[dict[str, Any]]:
    client = server_of(request)
    message = video_tagging_pb2.OptimizeMarkerSettingsRequest(
        existing_json=json.dumps(body.existing_json_data),
        desired_timespan_json=json.dumps(body.desired_timespan_data),
    )
    try:
        reply = await client.videos.OptimizeMarkerSettings(message, timeout=600, metadata=client.metadata)
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None
    best: list[dict[str, Any]] = json.loads(reply.best_settings_json)
    # The plugin ignores the body; the log is where the original server showed these.
    for rank, settings in enumerate(best, 1):
        log.info("marker settings #%d: %s", rank, settings)
    return best
