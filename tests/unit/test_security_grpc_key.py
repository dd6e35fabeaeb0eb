"""Every gRPC method of every stash_vision.v1 service refuses a caller without the API key.

The methods are enumerated from the generated descriptors (not a hand-written list), so a new RPC
or a new service is covered the moment its stubs are generated. The server is a real grpc.aio
server with the real ApiKeyInterceptor and the generated base servicers (which answer
UNIMPLEMENTED): a call that gets past the key check reaches the servicer and says so, a call that
does not is UNAUTHENTICATED. Health and reflection stay open (probes, grpcurl)."""

from __future__ import annotations

import asyncio
import importlib
import pkgutil
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message_factory import GetMessageClass
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

import stash_vision.v1
from stash_vision.server.auth import ApiKeyInterceptor

KEY = "s3cret-key"
TIMEOUT_S = 10.0
PROTO_DIR = Path(__file__).resolve().parents[2] / "proto" / "stash_vision" / "v1"


def every_method() -> Iterator[MethodDescriptor]:
    for module in pkgutil.iter_modules(stash_vision.v1.__path__):
        if not module.name.endswith("_pb2"):
            continue
        descriptor = importlib.import_module(f"stash_vision.v1.{module.name}").DESCRIPTOR
        for service in descriptor.services_by_name.values():
            yield from service.methods


def add_base_servicers(server: grpc.aio.Server) -> None:
    """The generated base class of every service: each method answers UNIMPLEMENTED."""
    for module in pkgutil.iter_modules(stash_vision.v1.__path__):
        if not module.name.endswith("_pb2_grpc"):
            continue
        generated = importlib.import_module(f"stash_vision.v1.{module.name}")
        for name in dir(generated):
            if name.startswith("add_") and name.endswith("Servicer_to_server"):
                base = getattr(generated, name.removeprefix("add_").removesuffix("_to_server"))
                getattr(generated, name)(base(), server)


async def call(channel: grpc.aio.Channel, method: MethodDescriptor, metadata: Any) -> grpc.StatusCode:
    path = f"/{method.containing_service.full_name}/{method.name}"
    request_type = GetMessageClass(method.input_type)
    response_type = GetMessageClass(method.output_type)
    assert not method.client_streaming, f"{path}: client streaming is not handled by the interceptor's deny"
    kwargs: dict[str, Any] = {
        "request_serializer": request_type.SerializeToString,
        "response_deserializer": response_type.FromString,
    }
    try:
        if method.server_streaming:
            async for _ in channel.unary_stream(path, **kwargs)(
                request_type(), metadata=metadata, timeout=TIMEOUT_S
            ):
                pass
        else:
            await channel.unary_unary(path, **kwargs)(request_type(), metadata=metadata, timeout=TIMEOUT_S)
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


def run_against_guarded_server(calls: list[tuple[MethodDescriptor, Any]]) -> list[grpc.StatusCode]:
    async def main() -> list[grpc.StatusCode]:
        server = grpc.aio.server(interceptors=[ApiKeyInterceptor(KEY)])
        add_base_servicers(server)
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return [await call(channel, method, metadata) for method, metadata in calls]
        finally:
            await server.stop(None)

    return asyncio.run(asyncio.wait_for(main(), 120))


def test_the_enumeration_finds_every_service() -> None:
    services = {method.containing_service.name for method in every_method()}
    assert {"ModelService", "InferenceService", "TaggingService", "VideoTaggingService"} <= services
    assert {"FaceService", "JobService", "IndexService"} <= services
    declared = {
        match
        for proto in PROTO_DIR.glob("*.proto")
        for match in re.findall(r"^\s*rpc\s+(\w+)\s*\(", proto.read_text(), re.MULTILINE)
    }
    assert {method.name for method in every_method()} == declared


def test_every_rpc_refuses_without_the_key_and_with_a_wrong_one() -> None:
    methods = list(every_method())
    wrong = [
        None,
        (("x-api-key", "wrong"),),
        (("authorization", "Bearer wrong"),),
        (("authorization", f"Basic {KEY}"),),  # not a bearer token
        (("x-api-key", KEY.upper()),),
        (("x-api-key", ""),),
        (("x-api-key-bin", KEY.encode()),),
        (("junk-bin", b"\xff\xfe"),),  # binary metadata that is not UTF-8
    ]
    calls = [(method, metadata) for method in methods for metadata in wrong]
    codes = run_against_guarded_server(calls)
    refused = {
        f"/{m.containing_service.full_name}/{m.name} {md!r}": code
        for (m, md), code in zip(calls, codes, strict=True)
        if code != grpc.StatusCode.UNAUTHENTICATED
    }
    assert refused == {}


def test_every_rpc_passes_the_key_check_with_the_key() -> None:
    methods = list(every_method())
    calls = [(m, (("x-api-key", KEY),)) for m in methods] + [
        (m, (("junk-bin", b"\xff"), ("authorization", f"Bearer {KEY}"))) for m in methods
    ]
    codes = run_against_guarded_server(calls)
    assert set(codes) == {grpc.StatusCode.UNIMPLEMENTED}


def test_health_stays_open_without_the_key() -> None:
    async def main() -> int:
        server = grpc.aio.server(interceptors=[ApiKeyInterceptor(KEY)])
        health_pb2_grpc.add_HealthServicer_to_server(health.aio.HealthServicer(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                reply = await health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(), timeout=TIMEOUT_S
                )
                return int(reply.status)
        finally:
            await server.stop(None)

    assert asyncio.run(main()) == health_pb2.HealthCheckResponse.SERVING
