"""Every RPC of every service, enumerated from the generated descriptors, fed Hypothesis-generated
messages (tests/integration/grpc_fuzzing.py) against the real server on the real stack (issue 17,
Fuzzing): no answer is INTERNAL or UNKNOWN (a crash in a handler), none hangs past its deadline, and
the server still answers its health check after each example. Each example is also sent with a
string field as invalid UTF-8 on the wire, and once more cancelled right after sending; a
server-streaming RPC is read for at most two messages, then cancelled."""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Iterator

import grpc
import pytest
from google.protobuf.descriptor import MethodDescriptor
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import given

import stash_vision.v1
from tests.integration.file_bombs import peak_rss_mib
from tests.integration.fuzz_world import fuzz_world
from tests.integration.grpc_fuzzing import UTF8_MARKER, invalid_utf8, message_strategy
from tests.integration.http_fuzzing import bounded
from tests.stack import Stack

pytestmark = pytest.mark.integration

# The CI bound; a longer run: STASH_VISION_FUZZ_GRPC_EXAMPLES=500 pytest tests/integration/test_fuzz_grpc.py
EXAMPLES_PER_RPC = int(os.environ.get("STASH_VISION_FUZZ_GRPC_EXAMPLES", "25"))
UNARY_DEADLINE_S = 30.0
STREAM_DEADLINE_S = 10.0
STREAM_MESSAGES_READ = 2
MEMORY_CAP_MIB = 512
CRASHES = frozenset({grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN})


def all_methods() -> list[MethodDescriptor]:
    methods = []
    for module in pkgutil.iter_modules(stash_vision.v1.__path__):
        if module.name.endswith("_pb2"):
            file = importlib.import_module(f"stash_vision.v1.{module.name}").DESCRIPTOR
            for service in file.services_by_name.values():
                methods.extend(service.methods)
    return methods


METHODS = all_methods()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with fuzz_world(tmp_path_factory.mktemp("fuzz-grpc")) as world:
        yield world.stack


@pytest.fixture(scope="module")
def peaks_before(stack: Stack) -> dict[str, float]:
    return peak_rss_mib(stack.process.pid)


@pytest.fixture(scope="module")
def channel(stack: Stack) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(
        stack.grpc_target, options=[("grpc.max_send_message_length", 256 << 20)]
    ) as ch:
        yield ch


def raw_callable(
    channel: grpc.Channel, method: MethodDescriptor
) -> grpc.UnaryUnaryMultiCallable | grpc.UnaryStreamMultiCallable:
    """The method taking serialized bytes (so invalid UTF-8 can go on the wire), answering bytes."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    if method.server_streaming:
        return channel.unary_stream(path)
    return channel.unary_unary(path)


def call(channel: grpc.Channel, method: MethodDescriptor, payload: bytes) -> grpc.StatusCode:
    """Sends the payload; the status the server answered with (OK when it answered)."""
    callable_ = raw_callable(channel, method)
    try:
        if method.server_streaming:
            stream = callable_(payload, timeout=STREAM_DEADLINE_S)
            for read, _ in enumerate(stream, start=1):
                if read >= STREAM_MESSAGES_READ:
                    stream.cancel()
                    break
        else:
            callable_(payload, timeout=UNARY_DEADLINE_S)
    except grpc.RpcError as error:
        code: grpc.StatusCode = error.code()
        if code == grpc.StatusCode.CANCELLED:  # we cancelled the stream ourselves
            return grpc.StatusCode.OK
        if code == grpc.StatusCode.DEADLINE_EXCEEDED and method.server_streaming:
            return grpc.StatusCode.OK  # a live stream (a running job's events) sends no more yet
        if code in CRASHES or code == grpc.StatusCode.DEADLINE_EXCEEDED:
            raise AssertionError(f"{method.full_name} answered {code.name}: {error.details()}") from error
        return code
    return grpc.StatusCode.OK


def cancelled_right_after_sending(channel: grpc.Channel, method: MethodDescriptor, payload: bytes) -> None:
    callable_ = raw_callable(channel, method)
    if method.server_streaming:
        callable_(payload, timeout=UNARY_DEADLINE_S).cancel()
    else:
        callable_.future(payload, timeout=UNARY_DEADLINE_S).cancel()


def assert_serving(channel: grpc.Channel, stack: Stack, after: str) -> None:
    assert stack.process.poll() is None, f"serve exited after {after}:\n{stack.log()[-3000:]}"
    health = health_pb2_grpc.HealthStub(channel)
    reply = health.Check(health_pb2.HealthCheckRequest(), timeout=10)
    assert reply.status == health_pb2.HealthCheckResponse.SERVING, f"not serving after {after}"


@pytest.mark.parametrize("method", METHODS, ids=[m.full_name for m in METHODS])
def test_rpc_survives_fuzzed_messages(
    method: MethodDescriptor, channel: grpc.Channel, stack: Stack, peaks_before: dict[str, float]
) -> None:
    statuses: dict[str, int] = {}

    def example(request: Message) -> None:
        payload = request.SerializeToString()
        for sent in (payload, invalid_utf8(payload)) if UTF8_MARKER.encode() in payload else (payload,):
            code = call(channel, method, sent)
            statuses[code.name] = statuses.get(code.name, 0) + 1
        cancelled_right_after_sending(channel, method, payload)
        assert_serving(channel, stack, f"{method.full_name}({str(request)[:300]!r})")

    bounded(EXAMPLES_PER_RPC, given(request=message_strategy(method.input_type))(example))()
    # The answers per status, for docs/fuzzing.md (an RPC without fields has one distinct example).
    print(f"{method.full_name}: {statuses}")
    assert statuses


def test_server_alive_and_memory_bounded_after_fuzzing(stack: Stack, peaks_before: dict[str, float]) -> None:
    """Runs last (file order): the stack is healthy after every RPC's fuzzing, and no process's
    peak resident memory grew past MEMORY_CAP_MIB (enormous repeated fields are refused by the
    message size limit before anything is allocated for them)."""
    with grpc.insecure_channel(stack.grpc_target) as ch:
        assert_serving(ch, stack, "all the fuzzing")
    after = peak_rss_mib(stack.process.pid)
    growth = {name: after[name] - peaks_before[name] for name in after if name in peaks_before}
    print("peak RSS growth (MiB) during the gRPC fuzzing:", {k: round(v) for k, v in growth.items()})
    assert growth and max(growth.values()) < MEMORY_CAP_MIB, growth
