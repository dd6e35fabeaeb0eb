"""Unit tests of the real grpc.aio server (stash_vision.server.app.start) with a fake InferenceSession
in place of Triton: inference round trips, error-to-status mapping, message limits, health tied to
readiness, ListModels, reflection and the API key.

Each test runs its own server on a free loopback port inside asyncio.run (no pytest-asyncio). The
real JPEG comes from the shared testdata folder; a missing folder fails the test."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from PIL import Image

from stash_vision.catalog.entries import Catalog
from stash_vision.server.app import BindError, RunningServer, start
from stash_vision.server.errors import BackendUnavailable, DeadlineExceeded, InferenceFailed
from stash_vision.server.triton_session import ModelStatus
from stash_vision.settings import Settings
from stash_vision.v1 import inference_pb2, inference_pb2_grpc, media_pb2, models_pb2, models_pb2_grpc

AnyArray = npt.NDArray[Any]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
ALL_MODELS = ["mobilefacenet", "nudenet_320n", "open_nsfw", "scrfd_500m", "yunet"]
TEST_TIMEOUT_S = 30.0


# ------------------------------------------------------------------------------------------ fake session


@dataclass
class InferCall:
    model: str
    inputs: dict[str, AnyArray]
    outputs: list[str]
    timeout_s: float | None


@dataclass
class FakeSession:
    """Implements the InferenceSession protocol; records calls, returns fixed arrays or raises."""

    outputs: dict[str, AnyArray] = field(default_factory=dict)
    error: BaseException | None = None
    ready: bool = False
    model_ready: dict[str, bool] = field(default_factory=dict)
    device: str = "cpu"
    calls: list[InferCall] = field(default_factory=list)
    closed: bool = False

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, AnyArray],
        outputs: Sequence[str],
        timeout_s: float | None = None,
    ) -> dict[str, AnyArray]:
        self.calls.append(
            InferCall(model, {k: np.array(v) for k, v in inputs.items()}, list(outputs), timeout_s)
        )
        if self.error is not None:
            raise self.error
        return {name: self.outputs.get(name, np.zeros((1, 1), np.float32)) for name in outputs}

    async def server_ready(self) -> bool:
        return self.ready

    async def model_status(self, model: str) -> ModelStatus:
        ready = self.model_ready.get(model, True)
        return ModelStatus(ready=ready, device=self.device if ready else "")

    async def close(self) -> None:
        self.closed = True


# ------------------------------------------------------------------------------------------------ harness


def make_settings(tmp_path: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "host": "127.0.0.1",
        "grpc_port": 0,  # the OS picks a free port; RunningServer.port says which
        "data_dir": tmp_path / "data",
        "models": [],
        "api_key": None,
        "library_roots": [],
        "path_mappings": {},
        "decode_threads": 2,
        "triton_url": "127.0.0.1:9",  # never dialled: the fake session replaces Triton
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Client:
    running: RunningServer
    channel: grpc.aio.Channel

    @property
    def inference(self) -> Any:
        return inference_pb2_grpc.InferenceServiceStub(self.channel)

    @property
    def models(self) -> Any:
        return models_pb2_grpc.ModelServiceStub(self.channel)

    @property
    def health(self) -> Any:
        return health_pb2_grpc.HealthStub(self.channel)


@contextlib.asynccontextmanager
async def serving(settings: Settings, session: FakeSession) -> AsyncIterator[Client]:
    running = await start(settings, session=session)
    channel = grpc.aio.insecure_channel(
        f"127.0.0.1:{running.port}", options=[("grpc.max_send_message_length", 16 * 1024 * 1024)]
    )
    try:
        yield Client(running, channel)
    finally:
        await channel.close()
        await running.stop(grace_s=0.5)


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    async def bounded() -> None:
        await asyncio.wait_for(scenario(), TEST_TIMEOUT_S)

    asyncio.run(bounded())


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await call
    return raised.value


def infer_request(model: str, data: bytes | None = None, path: str | None = None, **kw: Any) -> Any:
    if data is not None:
        image = media_pb2.ImageSource(data=data)
    elif path is not None:
        image = media_pb2.ImageSource(path=path)
    else:
        return inference_pb2.InferRequest(model=model, **kw)
    return inference_pb2.InferRequest(model=model, image=image, **kw)


@pytest.fixture
def jpeg_path(shared: Path) -> Path:
    path = shared / "testdata" / "images" / "fruits.jpg"
    if not path.is_file():
        pytest.fail(f"shared test image missing: {path} (set STASH_VISION_SHARED_DIR)", pytrace=False)
    return path


# ---------------------------------------------------------------------------------------------- inference


def test_infer_with_real_jpeg_returns_fake_outputs_as_tensors(tmp_path: Path, jpeg_path: Path) -> None:
    embedding = (np.arange(128, dtype=np.float32) / 7).reshape(1, 128)
    session = FakeSession(outputs={"embeddings": embedding})
    width, height = Image.open(jpeg_path).size

    async def scenario() -> None:
        async with serving(make_settings(tmp_path), session) as client:
            response = await client.inference.Infer(
                infer_request("mobilefacenet", data=jpeg_path.read_bytes()), timeout=10
            )
        assert response.model == "mobilefacenet"
        assert response.model_version == "1"
        assert [t.name for t in response.outputs] == ["embeddings"]
        tensor = response.outputs[0]
        assert tensor.datatype == "FP32"
        assert list(tensor.shape) == [1, 128]
        np.testing.assert_array_equal(np.frombuffer(tensor.data, "<f4").reshape(1, 128), embedding)
        geometry = response.preprocessing
        assert (geometry.source_width, geometry.source_height) == (width, height)
        assert (geometry.input_width, geometry.input_height) == (112, 112)
        assert geometry.scale_x == pytest.approx(112 / width)

    run(scenario)
    (call,) = session.calls
    assert call.model == "mobilefacenet"
    assert list(call.inputs) == ["input"]  # the catalog's input tensor name
    assert call.inputs["input"].shape == (1, 3, 112, 112)
    assert call.inputs["input"].dtype == np.float32
    assert call.outputs == ["embeddings"]
    # The caller's 10 s deadline is passed on, a little shorter.
    assert call.timeout_s is not None and 8.0 < call.timeout_s < 10.0
    assert session.closed, "stopping the server closes the session"


def test_infer_nhwc_model_sends_its_input_name_and_layout(tmp_path: Path, jpeg_path: Path) -> None:
    session = FakeSession(outputs={"outputs": np.array([[0.9, 0.1]], np.float32)})

    async def scenario() -> None:
        async with serving(make_settings(tmp_path), session) as client:
            response = await client.inference.Infer(infer_request("open_nsfw", data=jpeg_path.read_bytes()))
        assert np.frombuffer(response.outputs[0].data, "<f4").tolist() == pytest.approx([0.9, 0.1])

    run(scenario)
    (call,) = session.calls
    assert list(call.inputs) == ["input:0"]
    assert call.inputs["input:0"].shape == (1, 224, 224, 3)
    assert call.inputs["input:0"].dtype == np.float32


def test_infer_requested_outputs_only_and_integer_datatype(tmp_path: Path, jpeg_path: Path) -> None:
    session = FakeSession(outputs={"kps_32": np.arange(6, dtype=np.int64).reshape(1, 2, 3)})

    async def scenario() -> None:
        async with serving(make_settings(tmp_path), session) as client:
            response = await client.inference.Infer(
                infer_request("yunet", data=jpeg_path.read_bytes(), outputs=["kps_32"])
            )
        (tensor,) = response.outputs
        assert (tensor.name, tensor.datatype, list(tensor.shape)) == ("kps_32", "INT64", [1, 2, 3])
        assert np.frombuffer(tensor.data, "<i8").tolist() == [0, 1, 2, 3, 4, 5]

    run(scenario)
    assert session.calls[0].outputs == ["kps_32"]
    assert session.calls[0].inputs["input"].shape == (1, 3, 640, 640)


def test_infer_by_server_side_path(tmp_path: Path, jpeg_path: Path) -> None:
    session = FakeSession()

    async def scenario() -> None:
        async with serving(make_settings(tmp_path), session) as client:
            response = await client.inference.Infer(infer_request("yunet", path=str(jpeg_path)))
        assert response.preprocessing.source_width == Image.open(jpeg_path).size[0]
        assert len(response.outputs) == 12

    run(scenario)
    assert len(session.calls) == 1


# ---------------------------------------------------------------------------------------------- bad input


def test_unknown_model_is_invalid_argument_listing_served_models(tmp_path: Path, jpeg_path: Path) -> None:
    session = FakeSession()

    async def scenario() -> None:
        async with serving(make_settings(tmp_path), session) as client:
            error = await rpc_error(
                client.inference.Infer(infer_request("nope", data=jpeg_path.read_bytes()))
            )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "nope" in error.details()
        for name in ALL_MODELS:
            assert name in error.details()

    run(scenario)
    assert session.calls == []


def test_model_outside_configured_models_is_invalid_argument(tmp_path: Path, jpeg_path: Path) -> None:
    async def scenario() -> None:
        settings = make_settings(tmp_path, models=["yunet"])
        async with serving(settings, FakeSession()) as client:
            error = await rpc_error(
                client.inference.Infer(infer_request("open_nsfw", data=jpeg_path.read_bytes()))
            )
            listed = await client.models.ListModels(models_pb2.ListModelsRequest())
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "served models: yunet" in error.details()
        assert [m.name for m in listed.models] == ["yunet"]

    run(scenario)


def test_missing_image_and_missing_model_are_invalid_argument(tmp_path: Path, jpeg_path: Path) -> None:
    async def scenario() -> None:
        async with serving(make_settings(tmp_path), FakeSession()) as client:
            no_image = await rpc_error(client.inference.Infer(infer_request("yunet")))
            empty_data = await rpc_error(client.inference.Infer(infer_request("yunet", data=b"")))
            no_model = await rpc_error(client.inference.Infer(infer_request("", data=jpeg_path.read_bytes())))
        assert no_image.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "image is required" in no_image.details()
        assert empty_data.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert no_model.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "model is required" in no_model.details()

    run(scenario)


def test_corrupt_bytes_are_invalid_argument(tmp_path: Path) -> None:
    session = FakeSession()

    async def scenario() -> None:
        async with serving(make_settings(tmp_path), session) as client:
            error = await rpc_error(client.inference.Infer(infer_request("yunet", data=b"\x00garbage" * 50)))
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "not an image" in error.details()

    run(scenario)
    assert session.calls == []


def test_unknown_output_is_invalid_argument_listing_outputs(tmp_path: Path, jpeg_path: Path) -> None:
    async def scenario() -> None:
        async with serving(make_settings(tmp_path), FakeSession()) as client:
            error = await rpc_error(
                client.inference.Infer(
                    infer_request("mobilefacenet", data=jpeg_path.read_bytes(), outputs=["x"])
                )
            )
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "embeddings" in error.details()

    run(scenario)


def test_missing_file_path_is_not_found(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(make_settings(tmp_path), FakeSession()) as client:
            error = await rpc_error(
                client.inference.Infer(infer_request("yunet", path=str(tmp_path / "no.jpg")))
            )
        assert error.code() == grpc.StatusCode.NOT_FOUND
        assert "STASH_VISION_PATH_MAPPINGS" in error.details()

    run(scenario)


def test_path_outside_library_roots_is_permission_denied(tmp_path: Path, jpeg_path: Path) -> None:
    root = tmp_path / "library"
    root.mkdir()

    async def scenario() -> None:
        async with serving(make_settings(tmp_path, library_roots=[root]), FakeSession()) as client:
            error = await rpc_error(client.inference.Infer(infer_request("yunet", path=str(jpeg_path))))
        assert error.code() == grpc.StatusCode.PERMISSION_DENIED

    run(scenario)


def test_image_above_pixel_limit_is_resource_exhausted(tmp_path: Path, jpeg_path: Path) -> None:
    async def scenario() -> None:
        async with serving(make_settings(tmp_path, max_image_pixels=1000), FakeSession()) as client:
            error = await rpc_error(
                client.inference.Infer(infer_request("yunet", data=jpeg_path.read_bytes()))
            )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert "STASH_VISION_MAX_IMAGE_PIXELS" in error.details()

    run(scenario)


def test_message_above_max_message_bytes_is_resource_exhausted(tmp_path: Path) -> None:
    session = FakeSession()

    async def scenario() -> None:
        settings = make_settings(tmp_path, max_message_bytes=1024 * 1024)
        async with serving(settings, session) as client:
            error = await rpc_error(
                client.inference.Infer(infer_request("yunet", data=b"\xff" * (2 * 1024 * 1024)), timeout=10)
            )
        assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

    run(scenario)
    assert session.calls == []


# ------------------------------------------------------------------------------------------ session errors


@pytest.mark.parametrize(
    ("raised", "code", "text"),
    [
        (
            BackendUnavailable("Triton is not available for model yunet"),
            grpc.StatusCode.UNAVAILABLE,
            "Triton",
        ),
        (DeadlineExceeded("Triton did not answer in time"), grpc.StatusCode.DEADLINE_EXCEEDED, "in time"),
        (InferenceFailed("model yunet failed: boom"), grpc.StatusCode.INTERNAL, "boom"),
    ],
)
def test_session_domain_errors_map_to_status_codes(
    tmp_path: Path, jpeg_path: Path, raised: Exception, code: grpc.StatusCode, text: str
) -> None:
    async def scenario() -> None:
        async with serving(make_settings(tmp_path), FakeSession(error=raised)) as client:
            error = await rpc_error(
                client.inference.Infer(infer_request("yunet", data=jpeg_path.read_bytes()), timeout=10)
            )
        assert error.code() == code
        assert text in error.details()

    run(scenario)


def test_unexpected_error_is_internal_with_incident_id_and_no_traceback(
    tmp_path: Path, jpeg_path: Path
) -> None:
    async def scenario() -> None:
        session = FakeSession(error=RuntimeError("secret internal detail"))
        async with serving(make_settings(tmp_path), session) as client:
            error = await rpc_error(
                client.inference.Infer(infer_request("yunet", data=jpeg_path.read_bytes()))
            )
        details = error.details()
        assert error.code() == grpc.StatusCode.INTERNAL
        assert re.search(r"incident [0-9a-f]{8}", details), details
        assert "Traceback" not in details
        assert "secret internal detail" not in details
        assert "RuntimeError" not in details

    run(scenario)


# --------------------------------------------------------------------------------------------------- health


async def check(client: Client, service: str = "") -> int:
    response = await client.health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
    return int(response.status)


async def wait_for_status(client: Client, wanted: int, within_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        if await check(client) == wanted:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(f"health did not become {wanted} within {within_s} s")


def test_health_follows_triton_and_model_readiness(tmp_path: Path) -> None:
    session = FakeSession(ready=False)

    async def scenario() -> None:
        async with serving(make_settings(tmp_path), session) as client:
            # Not ready: NOT_SERVING for the server and each service, across watcher rounds.
            for _ in range(3):
                assert await check(client) == NOT_SERVING
                for service in ("stash_vision.v1.InferenceService", "stash_vision.v1.ModelService"):
                    assert await check(client, service) == NOT_SERVING
                await asyncio.sleep(0.4)

            session.ready = True
            assert await wait_for_status(client, SERVING, within_s=3.0) < 3.0
            assert await check(client, "stash_vision.v1.InferenceService") == SERVING
            assert await check(client, "stash_vision.v1.ModelService") == SERVING

            # One model dropping out makes the server NOT_SERVING again.
            session.model_ready["open_nsfw"] = False
            await wait_for_status(client, NOT_SERVING, within_s=3.0)

    run(scenario)


def test_health_unknown_service_is_not_found(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(make_settings(tmp_path), FakeSession()) as client:
            error = await rpc_error(
                client.health.Check(health_pb2.HealthCheckRequest(service="nope.Service"))
            )
        assert error.code() == grpc.StatusCode.NOT_FOUND

    run(scenario)


# ---------------------------------------------------------------------------------------------- ListModels


def test_list_models_reports_state_and_config_batching(tmp_path: Path) -> None:
    session = FakeSession(ready=True, model_ready={"yunet": False}, device="cpu")
    catalog = Catalog.load()

    async def scenario() -> None:
        async with serving(make_settings(tmp_path), session) as client:
            response = await client.models.ListModels(models_pb2.ListModelsRequest())
        assert [m.name for m in response.models] == ALL_MODELS
        for model in response.models:
            entry = catalog.get(model.name)
            config = entry.triton_config
            if model.name == "yunet":
                assert model.state == models_pb2.MODEL_STATE_UNAVAILABLE
                assert model.device == ""
            else:
                assert model.state == models_pb2.MODEL_STATE_READY
                assert model.device == "cpu"
            assert model.version == "1"
            assert model.task == entry.task
            assert model.licence == entry.licence
            assert list(model.labels) == entry.labels
            assert model.batching.max_batch_size == config.max_batch_size
            assert model.batching.dynamic_batching is True
            assert (
                model.batching.max_queue_delay_microseconds
                == config.dynamic_batching.max_queue_delay_microseconds
            )
            assert model.batching.instance_count == 1
            assert [(t.name, t.datatype, list(t.dims)) for t in model.inputs] == [
                (t.name, "FP32", list(t.dims)) for t in config.input
            ]
            assert [t.name for t in model.outputs] == [t.name for t in config.output]
            contract = model.input_contract
            assert (contract.layout, contract.color_order) == (entry.input.layout, entry.input.color_order)
            assert (contract.width, contract.height) == (entry.input.width, entry.input.height)
            assert contract.resize == entry.input.resize.value
            assert list(contract.mean) == pytest.approx(list(entry.input.mean))
            assert list(contract.std) == pytest.approx(list(entry.input.std))
            assert contract.scale == pytest.approx(entry.input.scale)

    run(scenario)


# ---------------------------------------------------------------------------------------------- reflection


async def reflect(channel: grpc.aio.Channel, request: Any) -> Any:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    call = stub.ServerReflectionInfo(iter([request]), timeout=5)
    responses = [response async for response in call]
    assert len(responses) == 1
    return responses[0]


def test_reflection_lists_the_services_and_resolves_their_descriptors(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with serving(make_settings(tmp_path), FakeSession()) as client:
            listed = await reflect(client.channel, reflection_pb2.ServerReflectionRequest(list_services=""))
            symbol = await reflect(
                client.channel,
                reflection_pb2.ServerReflectionRequest(
                    file_containing_symbol="stash_vision.v1.InferenceService"
                ),
            )
        services = {s.name for s in listed.list_services_response.service}
        assert {
            "stash_vision.v1.InferenceService",
            "stash_vision.v1.ModelService",
            "grpc.health.v1.Health",
        } <= services
        assert len(symbol.file_descriptor_response.file_descriptor_proto) >= 1

    run(scenario)


# ------------------------------------------------------------------------------------------------- API key


def test_api_key_is_required_except_for_health_and_reflection(tmp_path: Path, jpeg_path: Path) -> None:
    session = FakeSession(ready=True)

    async def scenario() -> None:
        async with serving(make_settings(tmp_path, api_key="s3cret"), session) as client:
            request = infer_request("yunet", data=jpeg_path.read_bytes())
            no_key = await rpc_error(client.inference.Infer(request))
            wrong_key = await rpc_error(client.inference.Infer(request, metadata=(("x-api-key", "nope"),)))
            no_key_list = await rpc_error(client.models.ListModels(models_pb2.ListModelsRequest()))
            for error in (no_key, wrong_key, no_key_list):
                assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert session.calls == []

            await client.inference.Infer(request, metadata=(("x-api-key", "s3cret"),))
            await client.inference.Infer(request, metadata=(("authorization", "Bearer s3cret"),))
            listed = await client.models.ListModels(
                models_pb2.ListModelsRequest(), metadata=(("x-api-key", "s3cret"),)
            )
            assert len(listed.models) == len(ALL_MODELS)
            assert len(session.calls) == 2

            # Probes and grpcurl keep working without the key.
            assert await check(client) in (SERVING, NOT_SERVING)
            reflected = await reflect(
                client.channel, reflection_pb2.ServerReflectionRequest(list_services="")
            )
            assert reflected.list_services_response.service

    run(scenario)


# ------------------------------------------------------------------------------------------------ binding


def test_server_listens_on_the_configured_port(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        async with serving(make_settings(tmp_path, grpc_port=port), FakeSession()) as client:
            assert client.running.port == port
            assert await check(client) == NOT_SERVING

    run(scenario)


def test_port_in_use_raises_bind_error_naming_the_setting(tmp_path: Path) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        async def scenario() -> None:
            with pytest.raises(BindError, match="STASH_VISION_GRPC_PORT"):
                await start(make_settings(tmp_path, grpc_port=port), session=FakeSession())

        run(scenario)
