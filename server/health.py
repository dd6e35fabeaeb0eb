"""Ties grpc.health.v1 to Triton: SERVING only while Triton is up and every served model is ready."""

from __future__ import annotations

import asyncio
import logging

from grpc_health.v1 import health, health_pb2

from stash_vision.server.model_registry import ModelRegistry

log = logging.getLogger("stash_vision.server")

SERVICES = (
    "stash_vision.v1.InferenceService",
    "stash_vision.v1.ModelService",
    "stash_vision.v1.TaggingService",
    "stash_vision.v1.VideoTaggingService",
    "stash_vision.v1.FaceService",
    "stash_vision.v1.JobService",
    "stash_vision.v1.IndexService",
)


class ReadinessWatcher:
    def __init__(self, registry: ModelRegistry, servicer: health.aio.HealthServicer, interval_s: float = 1.0):
        self.registry = registry
        self.servicer = servicer
        self.interval_s = interval_s
        self.ready: bool | None = None

    async def publish(self, ready: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if ready else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for service in (health.OVERALL_HEALTH, *SERVICES):
            await self.servicer.set(service, status)
        if ready != self.ready:
            log.info("health: %s", "SERVING" if ready else "NOT_SERVING (Triton or a model is not ready)")
        self.ready = ready

    async def run(self) -> None:
        await self.publish(False)
        while True:
            try:
                ready = await self.registry.all_ready()
            except Exception:  # a probe must never kill the watcher
                log.exception("readiness probe failed")
                ready = False
            if ready != self.ready:
                await self.publish(ready)
            await asyncio.sleep(self.interval_s)
