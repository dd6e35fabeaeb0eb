"""The server's Prometheus metrics (names after go-grpc-prometheus) and the interceptor that
records them once each RPC has finished, with its final status code."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed, by method and status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
HANDLING_SECONDS = Histogram(
    "grpc_server_handling_seconds",
    "RPC duration until the last response.",
    ["grpc_service", "grpc_method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800),
)
STAGE_SECONDS = Histogram(
    "stash_vision_stage_seconds",
    "Time spent per processing stage.",
    ["stage"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)
IMAGES_DECODED = Counter("stash_vision_images_decoded_total", "Images decoded.")
VIDEO_FRAMES_DECODED = Counter(
    "stash_vision_video_frames_decoded_total",
    "Video frames decoded (sampled or not), by the decode strategy chosen for the file.",
    ["strategy"],
)
VIDEO_FRAMES_IN_FLIGHT = Gauge(
    "stash_vision_video_frames_in_flight",
    "Sampled video frames being decoded, preprocessed or in Triton, across all videos.",
)

MODEL_DEVICE = Gauge(
    "stash_vision_model_device",
    "1 for the device each ready model runs on, as its runner reports it (cpu, gpu; unknown when unreported).",
    ["model", "device"],
)

JOBS = Gauge("stash_vision_jobs", "Jobs in the job database, by kind and state.", ["kind", "state"])
JOBS_FINISHED = Counter(
    "stash_vision_jobs_finished_total", "Jobs that reached an end state (or paused) here.", ["kind", "state"]
)
JOB_ITEMS = Counter("stash_vision_job_items_total", "Job items finished, by outcome.", ["kind", "outcome"])
JOB_ITEM_SECONDS = Histogram(
    "stash_vision_job_item_seconds",
    "Time one job item took, retries included.",
    ["kind"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
RESULT_STORE_LOOKUPS = Counter(
    "stash_vision_result_store_lookups_total",
    "Result store look-ups, by what was looked up and outcome.",
    ["kind", "outcome"],
)


def _split(method: str) -> tuple[str, str]:
    _, service, name = method.split("/", 2) if method.count("/") >= 2 else ("", "unknown", method)
    return service, name


def _code_name(context: grpc.aio.ServicerContext[Any, Any], failed: bool) -> str:
    code = context.code()
    if code is None:
        return "UNKNOWN" if failed else "OK"
    name = getattr(code, "name", None)
    return str(name) if name else str(code)


class MetricsInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None:
            return handler
        service, method = _split(handler_call_details.method)

        def record(start: float, context: grpc.aio.ServicerContext[Any, Any], failed: bool) -> None:
            HANDLING_SECONDS.labels(service, method).observe(time.perf_counter() - start)
            HANDLED.labels(service, method, _code_name(context, failed)).inc()

        if handler.unary_unary:
            inner = handler.unary_unary

            async def unary(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                start, failed = time.perf_counter(), False
                try:
                    return await inner(request, context)
                except BaseException:
                    failed = True
                    raise
                finally:
                    record(start, context, failed)

            return grpc.unary_unary_rpc_method_handler(
                unary,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        if handler.unary_stream:
            inner_stream = handler.unary_stream

            async def streaming(
                request: Any, context: grpc.aio.ServicerContext[Any, Any]
            ) -> AsyncIterator[Any]:
                # Times the whole stream, not just its first message.
                start, failed = time.perf_counter(), False
                try:
                    async for response in inner_stream(request, context):
                        yield response
                except BaseException:
                    failed = True
                    raise
                finally:
                    record(start, context, failed)

            return grpc.unary_stream_rpc_method_handler(
                streaming,
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer,
            )
        return handler
