"""RequestDecodingInterceptor on a real grpc.aio server: a request whose string field is not UTF-8
(what a client in another language can send, found by the gRPC fuzzer) is answered
INVALID_ARGUMENT naming the problem, for unary and server-streaming methods alike, instead of grpc's
UNKNOWN "Unexpected DecodeError"; a request that parses reaches the servicer unchanged."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest

from stash_vision.server.request_decoding import RequestDecodingInterceptor
from stash_vision.v1 import jobs_pb2, jobs_pb2_grpc

MARKER = "kind-marker"


class _Jobs(jobs_pb2_grpc.JobServiceServicer):  # type: ignore[misc]
    async def ListJobs(self, request: jobs_pb2.ListJobsRequest, context: Any) -> jobs_pb2.ListJobsResponse:
        return jobs_pb2.ListJobsResponse(next_page_token=request.page_token)

    async def WatchJob(self, request: jobs_pb2.WatchJobRequest, context: Any) -> AsyncIterator[Any]:
        yield jobs_pb2.WatchJobResponse()


def _invalid_utf8(message: Any, marker: str) -> bytes:
    encoded = marker.encode()
    return bytes(message.SerializeToString().replace(encoded, b"\xff" * len(encoded)))


async def _exchange(method: str, payload: bytes, streaming: bool) -> tuple[grpc.StatusCode, str, bytes]:
    server = grpc.aio.server(interceptors=[RequestDecodingInterceptor()])
    jobs_pb2_grpc.add_JobServiceServicer_to_server(_Jobs(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            path = f"/stash_vision.v1.JobService/{method}"
            try:
                if streaming:
                    replies = [r async for r in channel.unary_stream(path)(payload, timeout=10)]
                    return grpc.StatusCode.OK, "", replies[0] if replies else b""
                reply = await channel.unary_unary(path)(payload, timeout=10)
                return grpc.StatusCode.OK, "", reply
            except grpc.aio.AioRpcError as error:
                return error.code(), error.details() or "", b""
    finally:
        await server.stop(None)


@pytest.mark.parametrize(
    ("method", "streaming", "request_message"),
    [
        ("ListJobs", False, jobs_pb2.ListJobsRequest(page_token=MARKER)),
        ("WatchJob", True, jobs_pb2.WatchJobRequest(job_id=MARKER)),
    ],
)
def test_a_string_that_is_not_utf8_is_invalid_argument(
    method: str, streaming: bool, request_message: Any
) -> None:
    code, details, _ = asyncio.run(_exchange(method, _invalid_utf8(request_message, MARKER), streaming))
    assert code == grpc.StatusCode.INVALID_ARGUMENT, (code, details)
    assert "UTF-8" in details and "does not parse" in details


def test_a_request_that_parses_reaches_the_servicer() -> None:
    payload = jobs_pb2.ListJobsRequest(page_token="tag-library").SerializeToString()
    code, _, reply = asyncio.run(_exchange("ListJobs", payload, streaming=False))
    assert code == grpc.StatusCode.OK
    assert jobs_pb2.ListJobsResponse.FromString(reply).next_page_token == "tag-library"
