"""The adapter's only way to the world: gRPC stubs of the stash-vision server."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import TypeVar

import grpc
from fastapi import HTTPException, Request
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stash_vision.server_channel import api_key_metadata, server_channel
from stash_vision.settings import Settings
from stash_vision.v1 import (
    faces_pb2_grpc,
    indexes_pb2_grpc,
    inference_pb2_grpc,
    jobs_pb2_grpc,
    models_pb2,
    models_pb2_grpc,
    tagging_pb2_grpc,
    video_tagging_pb2_grpc,
)

R = TypeVar("R")

# gRPC status -> HTTP status for errors the adapter passes on.
HTTP_STATUS = {
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 413,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    # No usable face index or a face profile whose models are not served: like Stash Sense while
    # its database is missing, the service cannot answer yet.
    grpc.StatusCode.FAILED_PRECONDITION: 503,
}


class ServerClient:
    def __init__(self, settings: Settings) -> None:
        self.target = settings.server_target
        self.channel = server_channel(settings)
        self.metadata = api_key_metadata(settings)
        self.health = health_pb2_grpc.HealthStub(self.channel)
        self.models = models_pb2_grpc.ModelServiceStub(self.channel)
        self.inference = inference_pb2_grpc.InferenceServiceStub(self.channel)
        self.tagging = tagging_pb2_grpc.TaggingServiceStub(self.channel)
        self.videos = video_tagging_pb2_grpc.VideoTaggingServiceStub(self.channel)
        self.faces = faces_pb2_grpc.FaceServiceStub(self.channel)
        self.jobs = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.indexes = indexes_pb2_grpc.IndexServiceStub(self.channel)

    async def serving(self) -> bool:
        try:
            reply = await self.health.Check(health_pb2.HealthCheckRequest(service=""), timeout=2.0)
        except grpc.aio.AioRpcError:
            return False
        return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    async def list_models(self) -> list[models_pb2.Model]:
        reply = await self.models.ListModels(
            models_pb2.ListModelsRequest(), timeout=5.0, metadata=self.metadata
        )
        return list(reply.models)

    async def close(self) -> None:
        await self.channel.close()


def server_of(request: Request) -> ServerClient:
    """The app's one ServerClient (created in the lifespan)."""
    client: ServerClient = request.app.state.server
    return client


async def answer_of(call: Awaitable[R]) -> R:
    """A unary call's reply, or its failure as the HTTP error the plugin sees (http_error)."""
    try:
        return await call
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None


def http_error(error: grpc.aio.AioRpcError) -> HTTPException:
    """A failed call as the HTTP error the plugin sees: status by gRPC code, the server's message as detail."""
    return HTTPException(
        status_code=HTTP_STATUS.get(error.code(), 500), detail=error.details() or error.code().name
    )
