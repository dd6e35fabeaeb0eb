"""gRPC servicers of stash_vision.v1: thin translation between protobuf and the domain services."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import grpc

from stash_vision.server.api import convert
from stash_vision.server.api.status import mapped_errors, mapped_stream_errors
from stash_vision.server.inference import ModelInference
from stash_vision.server.model_registry import ModelRegistry
from stash_vision.server.tagging.aitagger_format.marker_optimizer import optimize_marker_settings
from stash_vision.server.tagging.image_flow import ImageTagging, TaggingOptions
from stash_vision.server.tagging.taggers.base import Tagger
from stash_vision.server.tagging.video_flow import VideoOptions, VideoProgress, VideoTagging
from stash_vision.v1 import (
    inference_pb2,
    inference_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    tagging_pb2,
    tagging_pb2_grpc,
    video_tagging_pb2,
    video_tagging_pb2_grpc,
)


class ModelServicer(models_pb2_grpc.ModelServiceServicer):  # type: ignore[misc]
    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry

    @mapped_errors
    async def ListModels(
        self, request: models_pb2.ListModelsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> models_pb2.ListModelsResponse:
        return models_pb2.ListModelsResponse(
            models=[convert.model(info) for info in await self.registry.list()]
        )


class InferenceServicer(inference_pb2_grpc.InferenceServiceServicer):  # type: ignore[misc]
    def __init__(self, inference: ModelInference) -> None:
        self.inference = inference

    @mapped_errors
    async def Infer(
        self, request: inference_pb2.InferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> inference_pb2.InferResponse:
        self.inference.entry(request.model)  # an unknown model is the first thing to report
        ref = convert.image_ref(request.image)
        remaining = context.time_remaining()
        result = await self.inference.infer(
            request.model,
            ref,
            list(request.outputs),
            timeout_s=max(remaining - 0.05, 0.01) if remaining is not None else None,
        )
        return inference_pb2.InferResponse(
            model=result.model,
            model_version=result.version,
            outputs=[convert.tensor(name, array) for name, array in result.outputs.items()],
            preprocessing=convert.geometry(result.geometry),
        )


class TaggingServicer(tagging_pb2_grpc.TaggingServiceServicer):  # type: ignore[misc]
    def __init__(self, tagging: ImageTagging, registry: ModelRegistry) -> None:
        self.tagging = tagging
        self.registry = registry

    async def _taggers(self, taggers: list[Tagger]) -> list[tagging_pb2.Tagger]:
        ready = {info.entry.name: info.status.ready for info in await self.registry.list()}
        return [convert.tagger(t, ready.get(t.model, False)) for t in taggers]

    @mapped_errors
    async def ListTaggers(
        self, request: tagging_pb2.ListTaggersRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tagging_pb2.ListTaggersResponse:
        return tagging_pb2.ListTaggersResponse(taggers=await self._taggers(self.tagging.taggers))

    @mapped_errors
    async def TagImages(
        self, request: tagging_pb2.TagImagesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> tagging_pb2.TagImagesResponse:
        options = TaggingOptions(
            threshold=request.threshold if request.HasField("threshold") else None,
            return_confidence=request.return_confidence,
            original_names=request.naming == tagging_pb2.TAG_NAMING_ORIGINAL,
            skip_categories=frozenset(request.categories_to_skip),
        )
        refs = [convert.image_ref(image) for image in request.images]
        outcome = await self.tagging.tag(refs, options)
        return tagging_pb2.TagImagesResponse(
            results=[convert.image_tags(result) for result in outcome.results],
            taggers=await self._taggers(outcome.taggers),
            metrics=tagging_pb2.TaggingMetrics(
                preprocess_seconds=outcome.preprocess_seconds,
                inference_seconds=outcome.inference_seconds,
                image_count=len(outcome.results),
                model_count=len(outcome.taggers),
                total_seconds=outcome.total_seconds,
            ),
        )


class VideoTaggingServicer(video_tagging_pb2_grpc.VideoTaggingServiceServicer):  # type: ignore[misc]
    def __init__(self, videos: VideoTagging) -> None:
        self.videos = videos

    @mapped_stream_errors
    async def TagVideo(
        self, request: video_tagging_pb2.TagVideoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[video_tagging_pb2.TagVideoResponse]:
        v3 = request.schema == video_tagging_pb2.VIDEO_RESULT_SCHEMA_V3
        options = VideoOptions(
            frame_interval=request.frame_interval,
            threshold=request.threshold if request.HasField("threshold") else None,
            # Schema 3 runs carry no confidence (the original hard-codes return_confidence=False
            # there), so frames merge into runs across small gaps whatever their confidence.
            return_confidence=request.return_confidence and not v3,
            vr=request.vr_video,
            existing=convert.json_or_none(request.existing_json, "existing_json"),
            skip_categories=frozenset(request.categories_to_skip),
            v3=v3,
        )
        async for event in self.videos.tag(request.path, options):
            if isinstance(event, VideoProgress):
                yield video_tagging_pb2.TagVideoResponse(progress=convert.video_progress(event))
            else:
                yield video_tagging_pb2.TagVideoResponse(result=convert.video_result(event))

    @mapped_errors
    async def OptimizeMarkerSettings(
        self,
        request: video_tagging_pb2.OptimizeMarkerSettingsRequest,
        context: grpc.aio.ServicerContext[Any, Any],
    ) -> video_tagging_pb2.OptimizeMarkerSettingsResponse:
        existing = convert.json_or_none(request.existing_json, "existing_json")
        desired = convert.json_or_none(request.desired_timespan_json, "desired_timespan_json")
        best = await asyncio.to_thread(optimize_marker_settings, self.videos.categories, existing, desired)
        return video_tagging_pb2.OptimizeMarkerSettingsResponse(best_settings_json=json.dumps(best))
