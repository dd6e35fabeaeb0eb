"""Builds and runs the grpc.aio server: servicers, health tied to Triton, reflection, metrics,
explicit message limits, graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from prometheus_client import start_http_server

from stash_vision.catalog.entries import CatalogEntry, CatalogError
from stash_vision.catalog.serving import active_profile, served_entries
from stash_vision.precision.selection import ServedPrecision
from stash_vision.server.api.face_servicer import FaceServicer
from stash_vision.server.api.index_servicer import IndexServicer
from stash_vision.server.api.job_servicer import add_to_server as add_job_servicer
from stash_vision.server.api.servicers import (
    InferenceServicer,
    ModelServicer,
    TaggingServicer,
    VideoTaggingServicer,
)
from stash_vision.server.auth import ApiKeyInterceptor
from stash_vision.server.connections.stash import StashConnection
from stash_vision.server.faces.identification import FaceIdentification
from stash_vision.server.faces.index_holder import IndexHolder
from stash_vision.server.faces.pipeline import FacePipeline
from stash_vision.server.faces.profile import ProfileError
from stash_vision.server.faces.stash_media import StashMedia
from stash_vision.server.health import SERVICES, ReadinessWatcher
from stash_vision.server.image_source import ImageLoader
from stash_vision.server.inference import ModelInference
from stash_vision.server.jobs.api import Jobs
from stash_vision.server.jobs.setup import close_jobs, job_kinds, open_jobs, open_result_cache
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.metrics import MetricsInterceptor
from stash_vision.server.model_registry import ModelRegistry
from stash_vision.server.request_decoding import RequestDecodingInterceptor
from stash_vision.server.results.cache import ResultCache
from stash_vision.server.tagging.image_flow import ImageTagging
from stash_vision.server.tagging.taggers.registry import build_taggers
from stash_vision.server.tagging.video_flow import VideoTagging
from stash_vision.server.triton_session import InferenceSession, TritonSession
from stash_vision.server.workers import CpuPool
from stash_vision.settings import Settings
from stash_vision.v1 import (
    faces_pb2_grpc,
    indexes_pb2_grpc,
    inference_pb2_grpc,
    models_pb2_grpc,
    tagging_pb2_grpc,
    video_tagging_pb2_grpc,
)

log = logging.getLogger("stash_vision.server")


class BindError(RuntimeError):
    pass


@dataclass
class RunningServer:
    server: grpc.aio.Server
    health: health.aio.HealthServicer
    watcher_task: asyncio.Task[None]
    session: InferenceSession
    pool: CpuPool
    port: int
    jobs: Jobs
    stash: StashMedia | None = None

    async def stop(self, grace_s: float = 5.0) -> None:
        # Flip health first, so load balancers stop sending work, then drain. Running jobs stop
        # uncommitted items and stay `running` in the database: the next start resumes them.
        await self.health.enter_graceful_shutdown()
        await close_jobs(self.jobs)
        await self.server.stop(grace_s)
        self.watcher_task.cancel()
        await self.session.close()
        if self.stash is not None:
            await self.stash.aclose()
        self.pool.shutdown()


def build_face_identification(
    settings: Settings,
    entries: list[CatalogEntry],
    session: InferenceSession,
    loader: ImageLoader,
    pool: CpuPool,
    results: ResultCache | None = None,
) -> FaceIdentification:
    profile = active_profile(settings)
    pipeline: FacePipeline | None = None
    problem = ""
    try:
        pipeline = FacePipeline(
            profile, {e.name: e for e in entries}, session, pool, settings.triton_client_timeout_s
        )
    except ProfileError as error:
        # Tagging still works; face calls answer FAILED_PRECONDITION with this message.
        problem = str(error)
        if settings.models and not set(profile.models) & set(settings.models):
            # STASH_VISION_MODELS lists none of the profile's models: a tagging-only server by
            # choice, which is information, not an error.
            log.info(
                "face identification off: STASH_VISION_MODELS serves none of profile %r's models",
                profile.name,
            )
        else:
            log.error("face identification unavailable: %s", problem)
    return FaceIdentification(
        profile,
        pipeline,
        problem,
        IndexHolder(
            settings.face_indexes_dir, profile, pool, keep_versions=settings.face_index_keep_versions
        ),
        loader,
        loader.paths,
        pool,
        query_k=settings.face_query_k,
        query_ef=settings.face_query_ef,
        max_images=settings.max_images_per_request,
        results=results,
        stash=StashConnection.from_settings(settings),
        stash_gallery_max_images=settings.stash_gallery_max_images,
    )


async def start(settings: Settings, session: InferenceSession | None = None) -> RunningServer:
    entries = served_entries(settings)
    session = session or TritonSession(settings.triton_target, settings.triton_client_timeout_s)
    pool = CpuPool(settings.effective_decode_threads)
    loader = ImageLoader(
        MediaPaths(settings.library_roots, settings.path_mappings),
        ImageLimits(settings.max_image_pixels, settings.max_image_file_bytes),
    )
    registry = ModelRegistry(entries, session, ServedPrecision(settings.models_dir, settings.precision))
    results = open_result_cache(settings)
    # RequestDecodingInterceptor last: innermost, it wraps the servicers' own deserializers.
    interceptors: list[grpc.aio.ServerInterceptor] = [MetricsInterceptor(), RequestDecodingInterceptor()]
    if settings.api_key:
        interceptors.insert(0, ApiKeyInterceptor(settings.api_key))
    server = grpc.aio.server(
        interceptors=interceptors,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
            # Without this, a second server could silently share the port with the first.
            ("grpc.so_reuseport", 0),
        ],
        maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
    )
    models_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(registry), server)
    inference_pb2_grpc.add_InferenceServiceServicer_to_server(
        InferenceServicer(ModelInference(entries, session, loader, pool)), server
    )
    tagging = ImageTagging(
        build_taggers(entries),
        session,
        loader,
        pool,
        use_category_image_thresholds=settings.use_category_image_thresholds,
        max_images=settings.max_images_per_request,
        global_in_flight=settings.images_in_flight,
        results=results,
    )
    tagging_pb2_grpc.add_TaggingServiceServicer_to_server(TaggingServicer(tagging, registry), server)
    videos = VideoTagging(
        tagging.taggers,
        session,
        loader.paths,
        pool,
        max_concurrent_videos=settings.effective_video_decoders,
        global_frames_in_flight=settings.video_frames_in_flight,
        reprocess_with_more_accurate_same_model=settings.reprocess_with_more_accurate_same_model,
        results=results,
    )
    video_tagging_pb2_grpc.add_VideoTaggingServiceServicer_to_server(VideoTaggingServicer(videos), server)
    faces = build_face_identification(settings, entries, session, loader, pool, results)
    faces_pb2_grpc.add_FaceServiceServicer_to_server(FaceServicer(faces), server)
    jobs = await open_jobs(settings, job_kinds(settings, tagging, videos, faces, loader.paths))
    add_job_servicer(server, jobs)
    indexes_pb2_grpc.add_IndexServiceServicer_to_server(
        IndexServicer(faces.indexes, pool, jobs, loader.paths), server
    )
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    reflection.enable_server_reflection((*SERVICES, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    address = f"{settings.host}:{settings.grpc_port}"
    try:
        port = server.add_insecure_port(address)
    except RuntimeError as error:
        await close_jobs(jobs)
        await session.close()
        pool.shutdown()
        raise BindError(f"cannot listen on {address} (STASH_VISION_GRPC_PORT): {error}") from None
    watcher = ReadinessWatcher(registry, health_servicer)
    await watcher.publish(False)  # NOT_SERVING from the first moment, until Triton proves ready
    await server.start()
    task = asyncio.create_task(watcher.run(), name="readiness-watcher")
    log.info("gRPC server on %s (Triton at %s)", address, settings.triton_target)
    return RunningServer(server, health_servicer, task, session, pool, port, jobs, faces.stash)


async def serve(settings: Settings) -> None:
    running = await start(settings)
    start_http_server(settings.server_metrics_port, addr=settings.host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    log.info("gRPC server stopping")
    await running.stop()


def main() -> int:
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(serve(settings))
    except (BindError, OSError, ProfileError, CatalogError) as error:
        log.error("%s", error)
        return 1
    return 0
