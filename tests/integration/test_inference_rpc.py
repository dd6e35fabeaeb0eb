"""The Infer RPC end to end: real images through gRPC, the server's preprocessing, the embedded
Triton and the real models."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from stash_vision.server.faces.alignment import align_face
from stash_vision.server.faces.detection import DetectedFace, decode_yunet, to_source_coordinates
from stash_vision.server.faces.embedding import cosine_similarity, l2_normalize
from stash_vision.v1 import inference_pb2, inference_pb2_grpc, models_pb2, models_pb2_grpc
from tests.conftest import shared_file
from tests.integration.grpc_helpers import channel, infer, tensors
from tests.stack import Stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def grpc_channel(stack: Stack) -> grpc.Channel:
    return channel(stack.grpc_target)


@pytest.fixture(scope="module")
def stub(grpc_channel: grpc.Channel) -> inference_pb2_grpc.InferenceServiceStub:
    return inference_pb2_grpc.InferenceServiceStub(grpc_channel)


def detect_faces(stub: inference_pb2_grpc.InferenceServiceStub, **image: object) -> list[DetectedFace]:
    response = infer(stub, "yunet", **image)  # type: ignore[arg-type]
    g = response.preprocessing
    faces = decode_yunet(tensors(response), input_size=(g.input_width, g.input_height))
    return to_source_coordinates(faces, g.scale_x, g.scale_y, g.offset_x, g.offset_y)


def test_yunet_finds_both_faces_in_the_couple_photo(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    path = shared_file("testdata/faces/deepface/couple.jpg")
    height, width = cv2.imread(str(path)).shape[:2]
    by_path = detect_faces(stub, path=str(path))
    by_bytes = detect_faces(stub, data=path.read_bytes())
    assert len(by_path) == 2
    assert len(by_bytes) == 2
    for face in by_path:
        x1, y1, x2, y2 = face.box
        assert 0 <= x1 < x2 <= width + 2 and 0 <= y1 < y2 <= height + 2
        assert face.score > 0.8
    # Same pixels whichever way the image arrives.
    np.testing.assert_allclose(
        sorted(f.box[0] for f in by_path), sorted(f.box[0] for f in by_bytes), atol=0.5
    )


def test_yunet_finds_no_faces_on_images_without_people(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    for name in ("building.jpg", "fruits.jpg", "starry_night.jpg"):
        assert detect_faces(stub, path=str(shared_file(f"testdata/images/{name}"))) == [], name


def test_open_nsfw_scores_benign_images_low(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    images = sorted(shared_file("testdata/images").iterdir())
    assert len(images) == 7
    for image in images:
        response = infer(stub, "open_nsfw", path=str(image))
        scores = tensors(response)["outputs"]
        assert scores.shape == (1, 2)
        assert abs(float(scores.sum()) - 1.0) < 1e-3, "softmax output"
        assert float(scores[0, 1]) < 0.2, f"{image.name}: nsfw score {scores[0, 1]:.3f}"


def test_nudenet_output_has_the_configured_shape(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    response = infer(stub, "nudenet_320n", path=str(shared_file("testdata/images/building.jpg")))
    output = tensors(response)["output0"]
    assert output.shape == (1, 22, 2100)
    # No body part on a building: every class score stays low.
    assert float(output[0, 4:].max()) < 0.2


def embed(stub: inference_pb2_grpc.InferenceServiceStub, image_path: Path) -> np.ndarray:
    faces = detect_faces(stub, path=str(image_path))
    assert faces, f"no face found in {image_path.name}"
    largest = max(faces, key=lambda f: (f.box[2] - f.box[0]) * (f.box[3] - f.box[1]))
    aligned = align_face(cv2.imread(str(image_path)), largest.landmarks)
    ok, png = cv2.imencode(".png", aligned)
    assert ok
    response = infer(stub, "mobilefacenet", data=png.tobytes())
    embedding = tensors(response)["embeddings"][0]
    assert embedding.shape == (128,)
    return l2_normalize(embedding.astype(np.float32))


def identity_groups() -> list[list[str]]:
    groups = []
    for line in shared_file("testdata/faces/deepface/identity_groups.txt").read_text().splitlines():
        if ":" in line:
            groups.append(line.split(":", 1)[1].split())
    return groups


def test_mobilefacenet_embeddings_separate_people(stub: inference_pb2_grpc.InferenceServiceStub) -> None:
    folder = shared_file("testdata/faces/deepface")
    groups = [g[:3] for g in identity_groups()[:3] if len(g) >= 2]
    assert len(groups) >= 3
    embeddings = {name: embed(stub, folder / name) for name in itertools.chain.from_iterable(groups)}
    same = [
        cosine_similarity(embeddings[a], embeddings[b])
        for g in groups
        for a, b in itertools.combinations(g, 2)
    ]
    different = [
        cosine_similarity(embeddings[a], embeddings[b])
        for g1, g2 in itertools.combinations(groups, 2)
        for a in g1
        for b in g2
    ]
    assert min(same) > max(different), f"same {sorted(same)} vs different {sorted(different)}"


def test_list_models_reports_every_model_ready_with_its_batching(grpc_channel: grpc.Channel) -> None:
    reply = models_pb2_grpc.ModelServiceStub(grpc_channel).ListModels(
        models_pb2.ListModelsRequest(), timeout=10
    )
    models = {m.name: m for m in reply.models}
    assert set(models) == {"mobilefacenet", "nudenet_320n", "open_nsfw", "scrfd_500m", "yunet"}
    assert all(m.state == models_pb2.MODEL_STATE_READY for m in models.values())
    assert all(m.device == "cpu" for m in models.values())
    nudenet = models["nudenet_320n"]
    assert nudenet.batching.max_batch_size == 32 and nudenet.batching.dynamic_batching
    assert nudenet.labels[0] == "FEMALE_GENITALIA_COVERED" and len(nudenet.labels) == 18
    assert list(models["open_nsfw"].inputs[0].dims) == [224, 224, 3]
    assert models["open_nsfw"].input_contract.layout == "NHWC"


def test_health_is_serving_and_reflection_lists_the_api(grpc_channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(grpc_channel)
    for service in ("", "stash_vision.v1.InferenceService", "stash_vision.v1.ModelService"):
        reply = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(grpc_channel)
    responses = list(
        reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    )
    names = {s.name for s in responses[0].list_services_response.service}
    assert {
        "stash_vision.v1.InferenceService",
        "stash_vision.v1.ModelService",
        "grpc.health.v1.Health",
    } <= names


@pytest.mark.parametrize(
    ("request_", "code", "fragment"),
    [
        (inference_pb2.InferRequest(model="nope"), grpc.StatusCode.INVALID_ARGUMENT, "unknown model"),
        (
            inference_pb2.InferRequest(model="open_nsfw"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image is required",
        ),
        (
            inference_pb2.InferRequest(model="open_nsfw", image={"data": b"\xff\xd8 not really a jpeg"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "image",
        ),
        (
            inference_pb2.InferRequest(model="open_nsfw", image={"path": "/no/such/file.jpg"}),
            grpc.StatusCode.NOT_FOUND,
            "file not found",
        ),
        (
            inference_pb2.InferRequest(model="open_nsfw", image={"path": "relative.jpg"}),
            grpc.StatusCode.INVALID_ARGUMENT,
            "absolute",
        ),
    ],
)
def test_bad_requests_get_clear_errors(
    stub: inference_pb2_grpc.InferenceServiceStub,
    request_: inference_pb2.InferRequest,
    code: grpc.StatusCode,
    fragment: str,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.Infer(request_, timeout=30)
    assert raised.value.code() == code
    assert fragment in raised.value.details()
    assert "Traceback" not in raised.value.details()


def test_truncated_jpeg_and_oversized_message_are_refused(
    stub: inference_pb2_grpc.InferenceServiceStub,
) -> None:
    jpeg = shared_file("testdata/faces/deepface/couple.jpg").read_bytes()
    with pytest.raises(grpc.RpcError) as truncated:
        infer(stub, "yunet", data=jpeg[: len(jpeg) // 2])
    assert truncated.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "truncated" in truncated.value.details()
    # Above the server's 64 MiB default message limit: refused by gRPC before any decoding.
    with pytest.raises(grpc.RpcError) as oversized:
        infer(stub, "yunet", data=b"\0" * (65 << 20))
    assert oversized.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    # The server keeps serving after both.
    assert len(detect_faces(stub, data=jpeg)) == 2


def test_the_stack_serves_concurrent_requests_in_shared_batches(
    stack: Stack, stub: inference_pb2_grpc.InferenceServiceStub
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    data = shared_file("testdata/images/fruits.jpg").read_bytes()
    before = triton_counts(stack, "open_nsfw")
    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(lambda _: tensors(infer(stub, "open_nsfw", data=data))["outputs"], range(64)))
    after = triton_counts(stack, "open_nsfw")
    assert all(np.allclose(r, results[0], atol=1e-5) for r in results)
    inferences, executions = after[0] - before[0], after[1] - before[1]
    assert inferences == 64
    assert executions < inferences, "dynamic batching should merge concurrent requests"


def triton_counts(stack: Stack, model: str) -> tuple[float, float]:
    import urllib.request

    text = (
        urllib.request.urlopen(f"http://127.0.0.1:{stack.triton_metrics_port}/metrics", timeout=5)
        .read()
        .decode()
    )
    values = {}
    for line in text.splitlines():
        for metric in ("nv_inference_count", "nv_inference_exec_count"):
            if line.startswith(f'{metric}{{model="{model}"'):
                values[metric] = float(line.rsplit(" ", 1)[1])
    return values["nv_inference_count"], values["nv_inference_exec_count"]
