"""Unit tests for stash_vision.server.faces.pipeline: yaw estimate, profile checks, and FacePipeline
through the InferenceSession seam.

Two kinds of session stand in for Triton: a fake that records every call and answers canned
tensors (exact checks of what is sent: shapes, chunking at max_batch_size, mirrored crops), and
bench.in_process.OrtSession running the real shared models in-process (what a real photo gives).
The stash-sense profile runs end to end with synthetic ONNX embedders built here, since its real
embedders are not in the shared mirror."""

from __future__ import annotations

import asyncio
import math
import shutil
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import cv2
import numpy as np
import numpy.typing as npt
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from bench.in_process import OrtSession
from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.server.arrays import AnyArray, BgrImage
from stash_vision.server.faces.pipeline import (
    EmbeddedFace,
    Face,
    FaceGates,
    FacePipeline,
    check_profile,
    estimate_yaw,
)
from stash_vision.server.faces.profile import FaceProfile, ProfileError, load_profile
from stash_vision.server.media.images import ImageLimits, decode_image
from stash_vision.server.triton_session import ModelStatus
from stash_vision.server.workers import CpuPool
from tests.conftest import shared_dir, shared_file

T = TypeVar("T")
Outputs = dict[str, npt.NDArray[np.float32]]

LIMITS = ImageLimits(max_pixels=50_000_000, max_file_bytes=64 * 2**20)
# SCRFD landmark offsets in stride units (right eye, left eye, nose, mouth corners): a frontal face.
FRONTAL_KPS = np.array([-1.0, -0.5, 1.0, -0.5, 0.0, 0.25, -0.75, 1.0, 0.75, 1.0], np.float32)


# --------------------------------------------------------------------------------------------- helpers


@dataclass
class Call:
    model: str
    inputs: dict[str, AnyArray]
    outputs: list[str]
    timeout_s: float | None


class FakeSession:
    """InferenceSession that records calls and answers from per-model functions of the inputs."""

    def __init__(
        self, answers: Mapping[str, Callable[[Mapping[str, AnyArray]], Mapping[str, AnyArray]]]
    ) -> None:
        self.answers = answers
        self.calls: list[Call] = []

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, AnyArray],
        outputs: Sequence[str],
        timeout_s: float | None = None,
    ) -> dict[str, AnyArray]:
        self.calls.append(Call(model, {k: np.array(v) for k, v in inputs.items()}, list(outputs), timeout_s))
        produced = self.answers[model](inputs)
        return {name: np.asarray(produced[name]) for name in outputs}

    async def server_ready(self) -> bool:
        return True

    async def model_status(self, model: str) -> ModelStatus:
        return ModelStatus(ready=model in self.answers, device="cpu")

    async def close(self) -> None:
        return None

    def calls_to(self, model: str) -> list[Call]:
        return [call for call in self.calls if call.model == model]


class RecordingSession:
    """Wraps a real session and records the batch size of every call per model."""

    def __init__(self, inner: OrtSession) -> None:
        self.inner = inner
        self.calls: list[tuple[str, dict[str, AnyArray]]] = []

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, AnyArray],
        outputs: Sequence[str],
        timeout_s: float | None = None,
    ) -> dict[str, AnyArray]:
        self.calls.append((model, {k: np.array(v) for k, v in inputs.items()}))
        return await self.inner.infer(model, inputs, outputs, timeout_s)

    async def server_ready(self) -> bool:
        return True

    async def model_status(self, model: str) -> ModelStatus:
        return await self.inner.model_status(model)

    async def close(self) -> None:
        await self.inner.close()


def run_with_pool(scenario: Callable[[CpuPool], Awaitable[T]]) -> T:
    async def main() -> T:
        pool = CpuPool(4)
        try:
            return await asyncio.wait_for(scenario(pool), 60)
        finally:
            pool.shutdown()

    return asyncio.run(main())


def catalog_entries(profile: FaceProfile) -> dict[str, CatalogEntry]:
    catalog = Catalog.load()
    return {model: catalog.get(model) for model in profile.models}


def with_max_batch(entry: CatalogEntry, max_batch: int, folder: Path) -> CatalogEntry:
    """The entry with its Triton config's max_batch_size changed (config copied to `folder`)."""
    shutil.copytree(entry.folder, folder)
    config = folder / "config.pbtxt"
    text = config.read_text()
    old = f"max_batch_size: {entry.triton_config.max_batch_size}"
    assert old in text
    config.write_text(text.replace(old, f"max_batch_size: {max_batch}"))
    changed = CatalogEntry.model_validate({**entry.model_dump(), "folder": folder})
    assert changed.triton_config.max_batch_size == max_batch
    return changed


def read_bgr(path: Path) -> BgrImage:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        pytest.fail(f"OpenCV could not decode {path}")
    return np.asarray(image, np.uint8)


def shrink(image: BgrImage, longest: int) -> BgrImage:
    scale = longest / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (round(image.shape[1] * scale), round(image.shape[0] * scale))
    return np.asarray(cv2.resize(image, size, interpolation=cv2.INTER_AREA), np.uint8)


def cosine_distance(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    return 1.0 - float(a @ b) / (float(np.linalg.norm(a)) * float(np.linalg.norm(b)))


# ----------------------------------------------------------------------------- synthetic SCRFD outputs


def empty_scrfd() -> Outputs:
    outputs: Outputs = {}
    for stride in (8, 16, 32):
        anchors = 2 * (640 // stride) ** 2
        outputs[f"score_{stride}"] = np.zeros((anchors, 1), np.float32)
        outputs[f"bbox_{stride}"] = np.zeros((anchors, 4), np.float32)
        outputs[f"kps_{stride}"] = np.zeros((anchors, 10), np.float32)
    return outputs


def place_face(
    outputs: Outputs,
    stride: int,
    cell: tuple[int, int],
    score: float,
    half_size: float,
    kps: npt.NDArray[np.float32] = FRONTAL_KPS,
) -> None:
    """One face centred on cell (column, row) of a stride's grid, `half_size` stride units each way."""
    column, row_ = cell
    anchor = 2 * (row_ * (640 // stride) + column)
    outputs[f"score_{stride}"][anchor, 0] = score
    outputs[f"bbox_{stride}"][anchor] = half_size
    outputs[f"kps_{stride}"][anchor] = kps


def gradient_image(width: int, height: int) -> BgrImage:
    """Left dark, right bright, with a vertical ramp in green: no crop of it is mirror-symmetric."""
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :].repeat(height, 0)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None].repeat(width, 1)
    return np.asarray(np.stack([x, y, 255 - x], axis=2), np.uint8)


def halves_embedder(dimensions: int) -> Callable[[Mapping[str, AnyArray]], Mapping[str, AnyArray]]:
    """Fake NCHW embedder: [mean of the left half, mean of the right half, 1, 0, ...] per crop, so a
    crop and its mirror give swapped first components and their average has them equal."""

    def answer(inputs: Mapping[str, AnyArray]) -> Mapping[str, AnyArray]:
        (batch,) = inputs.values()
        width = batch.shape[3]
        out = np.zeros((batch.shape[0], dimensions), np.float32)
        out[:, 0] = batch[:, :, :, : width // 2].mean(axis=(1, 2, 3))
        out[:, 1] = batch[:, :, :, width // 2 :].mean(axis=(1, 2, 3))
        out[:, 2] = 1.0
        return {"embeddings": out}

    return answer


# ------------------------------------------------------------------------------- synthetic ONNX models


def projection_embedder_onnx(size: int, output: str, seed: int, dimensions: int = 512) -> bytes:
    """input [N,size,size,3] NHWC -> `output` [N,dimensions]: an 8x8 mean-pool of the pixels
    (192 values, position-dependent, so a mirror image differs) times a fixed random matrix."""
    pool = size // 8
    projection = np.random.default_rng(seed).normal(size=(3 * 8 * 8, dimensions)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "AveragePool", ["nchw"], ["pooled"], kernel_shape=[pool, pool], strides=[pool, pool]
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "projection"], [output]),
    ]
    graph = helper.make_graph(
        nodes,
        f"synthetic_{output}",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", dimensions])],
        initializer=[numpy_helper.from_array(projection, "projection")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


@pytest.fixture(scope="module")
def default_files() -> dict[str, Path]:
    catalog = Catalog.load()
    files = {}
    for model in load_profile("default").models:
        mirror = catalog.get(model).weights.mirror_path
        assert mirror is not None
        files[model] = shared_file(f"models/{mirror}")
    return files


@pytest.fixture(scope="module")
def default_session(default_files: dict[str, Path]) -> OrtSession:
    return OrtSession(default_files, threads=4)


def default_pipeline(session: Any, pool: CpuPool) -> FacePipeline:
    profile = load_profile("default")
    return FacePipeline(profile, catalog_entries(profile), session, pool)


async def detect_and_embed(
    pipeline: FacePipeline, image: BgrImage
) -> tuple[list[Face], int, list[EmbeddedFace]]:
    faces, found = await pipeline.detect(image)
    return faces, found, await pipeline.embed(image, faces)


# ---------------------------------------------------------------------------------------- estimate_yaw


def test_estimate_yaw_frontal_is_zero() -> None:
    landmarks = [[40, 50], [80, 50], [60, 70], [45, 90], [75, 90]]
    assert estimate_yaw(landmarks) == pytest.approx(0.0)


def test_estimate_yaw_nose_under_an_eye_is_45_degrees() -> None:
    # atan2(nose_x - eye_centre_x, eye_width / 2): nose under the second eye -> atan2(20, 20) = 45°.
    assert estimate_yaw([[40, 50], [80, 50], [80, 70], [45, 90], [75, 90]]) == pytest.approx(45.0)
    assert estimate_yaw([[40, 50], [80, 50], [40, 70], [45, 90], [75, 90]]) == pytest.approx(-45.0)
    # Half way: atan2(10, 20).
    assert estimate_yaw(np.array([40, 50, 80, 50, 70, 70, 45, 90, 75, 90], np.float32)) == pytest.approx(
        math.degrees(math.atan2(10, 20))
    )


def test_estimate_yaw_profile_view_approaches_90_degrees() -> None:
    # Eyes almost on top of each other (a face in profile), nose well to the side.
    yaw = estimate_yaw(np.array([[60, 50], [60.5, 50], [90, 70], [60, 90], [61, 90]]))
    assert 85.0 < yaw <= 90.0
    assert math.isfinite(estimate_yaw(np.array([[60, 50], [60, 50], [90, 70], [60, 90], [61, 90]])))


# --------------------------------------------------------------------------------------- check_profile


@pytest.mark.parametrize("name", ["default", "stash-sense"])
def test_check_profile_accepts_builtin_profiles(name: str) -> None:
    profile = load_profile(name)
    check_profile(profile, catalog_entries(profile))


def test_check_profile_names_a_missing_model() -> None:
    profile = load_profile("stash-sense")
    entries = catalog_entries(profile)
    del entries["arcface"]
    with pytest.raises(ProfileError, match=r"needs model 'arcface'.*models fetch arcface"):
        check_profile(profile, entries)


def test_check_profile_names_a_wrong_input_or_output() -> None:
    profile = load_profile("default")
    entries = catalog_entries(profile)
    data = profile.model_dump(mode="json")
    data["embedders"][0]["output"] = "logits"
    with pytest.raises(ProfileError, match="has no output 'logits'"):
        check_profile(FaceProfile.model_validate(data), entries)
    data = profile.model_dump(mode="json")
    data["detector"]["input"]["tensor"] = "images"
    with pytest.raises(ProfileError, match="has no input 'images'"):
        check_profile(FaceProfile.model_validate(data), entries)
    pool = CpuPool(1)
    try:
        with pytest.raises(ProfileError):
            FacePipeline(FaceProfile.model_validate(data), entries, FakeSession({}), pool)
    finally:
        pool.shutdown()


# ------------------------------------------------------------------------------- fake session: detect


def test_face_gates() -> None:
    gates = FaceGates(min_confidence=0.5, min_face_size=40)
    box = np.array([0, 0, 50, 40], np.float32)
    landmarks = np.zeros((5, 2), np.float32)
    assert gates.passes(Face(box, 0.5, landmarks, 0.0))
    assert not gates.passes(Face(box, 0.49, landmarks, 0.0))
    assert not gates.passes(Face(np.array([0, 0, 50, 39.5], np.float32), 0.9, landmarks, 0.0))


def test_detect_maps_faces_to_source_pixels_and_applies_gates() -> None:
    # Source 320x240: letterboxed into 640x640 at scale 2, no offset.
    outputs = empty_scrfd()
    # A: stride 32, cell (5, 3) -> anchor (160, 96), ±64 input px -> source box (48, 16, 112, 80).
    place_face(outputs, 32, (5, 3), score=0.9, half_size=2.0)
    # B: crosses the right edge: anchor (608, 384), ±64 -> source (272, 160, 336, 224), clipped
    # to x2 = 320 (48 x 64). Nose under the second eye: yaw 45°.
    turned = FRONTAL_KPS.copy()
    turned[4] = 1.0
    place_face(outputs, 32, (19, 12), score=0.8, half_size=2.0, kps=turned)
    # C: stride 8, anchor (480, 160), ±16 -> source (232, 72, 248, 88): too small, found then gated.
    place_face(outputs, 8, (60, 20), score=0.95, half_size=2.0)
    # D: stride 16, anchor (320, 160), ±48 -> source (136, 56, 184, 104), 48 x 48: above the
    # decoder's 0.3 but below the query gate 0.5.
    place_face(outputs, 16, (20, 10), score=0.4, half_size=3.0)
    session = FakeSession({"scrfd_500m": lambda inputs: outputs})
    image = gradient_image(320, 240)

    async def scenario(pool: CpuPool) -> tuple[list[Face], int]:
        pipeline = default_pipeline(session, pool)
        pipeline.timeout_s = 3.0
        return await pipeline.detect(image)

    faces, found = run_with_pool(scenario)
    assert found == 4
    assert len(faces) == 2
    a, b = faces  # largest first
    np.testing.assert_allclose(a.box, [48, 16, 112, 80], atol=1e-4)
    assert a.confidence == pytest.approx(0.9)
    assert a.yaw_degrees == pytest.approx(0.0, abs=1e-4)
    # Landmarks: anchor + offset·stride, halved: right eye (160 - 32, 96 - 16) / 2.
    np.testing.assert_allclose(a.landmarks[0], [64, 40], atol=1e-4)
    assert a.landmarks.shape == (5, 2)
    np.testing.assert_allclose(b.box, [272, 160, 320, 224], atol=1e-4)
    assert b.width == pytest.approx(48)
    assert b.height == pytest.approx(64)
    assert b.yaw_degrees == pytest.approx(45.0, abs=1e-3)

    (call,) = session.calls
    assert call.model == "scrfd_500m"
    assert list(call.inputs) == ["input.1"]
    assert call.inputs["input.1"].shape == (1, 3, 640, 640)
    assert call.inputs["input.1"].dtype == np.float32
    assert sorted(call.outputs) == sorted(outputs)
    assert call.timeout_s == 3.0

    # Looser gates keep C and D as well.
    async def loose(pool: CpuPool) -> tuple[list[Face], int]:
        return await default_pipeline(session, pool).detect(image, FaceGates(0.3, 1))

    faces, found = run_with_pool(loose)
    assert found == 4
    # Largest first: A (64 x 64), B (48 x 64), D (48 x 48), C (16 x 16).
    assert [round(f.confidence, 2) for f in faces] == [0.9, 0.8, 0.4, 0.95]
    np.testing.assert_allclose(faces[2].box, [136, 56, 184, 104], atol=1e-4)
    np.testing.assert_allclose(faces[3].box, [232, 72, 248, 88], atol=1e-4)


def test_detect_nothing() -> None:
    session = FakeSession({"scrfd_500m": lambda inputs: empty_scrfd()})

    async def scenario(pool: CpuPool) -> tuple[list[Face], int]:
        return await default_pipeline(session, pool).detect(gradient_image(64, 64))

    assert run_with_pool(scenario) == ([], 0)


# -------------------------------------------------------------------------------- fake session: embed


def synthetic_faces(count: int) -> list[Face]:
    faces = []
    for i in range(count):
        x, y = 40 + 90 * i, 60
        landmarks = np.array(
            [[x + 20, y + 30], [x + 50, y + 30], [x + 35, y + 45], [x + 23, y + 60], [x + 47, y + 60]],
            np.float32,
        )
        faces.append(Face(np.array([x, y, x + 70, y + 80], np.float32), 0.9, landmarks, 0.0))
    return faces


def test_embed_flip_averages_and_chunks_at_max_batch_size(tmp_path: Path) -> None:
    profile = load_profile("default")
    entries = catalog_entries(profile)
    entries["mobilefacenet"] = with_max_batch(entries["mobilefacenet"], 4, tmp_path / "mobilefacenet")
    session = FakeSession({"mobilefacenet": halves_embedder(128)})
    image = gradient_image(400, 200)
    faces = synthetic_faces(3)

    async def scenario(pool: CpuPool) -> list[EmbeddedFace]:
        return await FacePipeline(profile, entries, session, pool, timeout_s=2.5).embed(image, faces)

    embedded = run_with_pool(scenario)
    # 3 faces + 3 mirrors = 6 crops in chunks of at most 4.
    assert [call.inputs["input"].shape for call in session.calls] == [(4, 3, 112, 112), (2, 3, 112, 112)]
    assert all(call.outputs == ["embeddings"] and call.timeout_s == 2.5 for call in session.calls)
    batch = np.concatenate([call.inputs["input"] for call in session.calls])
    # Crops 3..5 are crops 0..2 mirrored (along the width axis of NCHW).
    np.testing.assert_allclose(batch[3:], batch[:3, :, :, ::-1], atol=1e-5)
    assert not np.allclose(batch[0], batch[0, :, :, ::-1])
    assert [e.face for e in embedded] == faces
    for i, item in enumerate(embedded):
        assert list(item.vectors) == ["mobilefacenet"]
        vector = item.vectors["mobilefacenet"]
        assert vector.shape == (128,)
        assert vector.dtype == np.float32
        assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
        # Averaged with its mirror: the left- and right-half means are equal.
        assert vector[0] == pytest.approx(vector[1], abs=1e-5)
        raw = (
            np.array([batch[i, :, :, :56].mean(), batch[i, :, :, 56:].mean(), 1.0])
            + np.array([batch[i + 3, :, :, :56].mean(), batch[i + 3, :, :, 56:].mean(), 1.0])
        ) / 2
        np.testing.assert_allclose(vector[:3], raw / np.linalg.norm(raw), atol=1e-5)


def test_embed_without_flip_sends_n_crops(tmp_path: Path) -> None:
    data = load_profile("default").model_dump(mode="json")
    data["embedders"][0]["flip_average"] = False
    profile = FaceProfile.model_validate(data)
    session = FakeSession({"mobilefacenet": halves_embedder(128)})
    image = gradient_image(400, 200)

    async def scenario(pool: CpuPool) -> list[EmbeddedFace]:
        return await FacePipeline(profile, catalog_entries(profile), session, pool).embed(
            image, synthetic_faces(3)
        )

    embedded = run_with_pool(scenario)
    assert [call.inputs["input"].shape[0] for call in session.calls] == [3]
    # No mirror: the gradient crop's halves differ.
    assert all(abs(e.vectors["mobilefacenet"][0] - e.vectors["mobilefacenet"][1]) > 1e-3 for e in embedded)


def test_embed_no_faces_calls_nothing() -> None:
    session = FakeSession({})

    async def scenario(pool: CpuPool) -> list[EmbeddedFace]:
        return await default_pipeline(session, pool).embed(gradient_image(64, 64), [])

    assert run_with_pool(scenario) == []
    assert session.calls == []


def test_embed_wrong_dimensions_is_a_profile_error() -> None:
    session = FakeSession({"mobilefacenet": halves_embedder(64)})

    async def scenario(pool: CpuPool) -> list[EmbeddedFace]:
        return await default_pipeline(session, pool).embed(gradient_image(400, 200), synthetic_faces(1))

    with pytest.raises(ProfileError, match="expects 128 dimensions"):
        run_with_pool(scenario)


# ---------------------------------------------------------------------------------------- real models


def test_couple_has_exactly_two_faces(default_session: OrtSession) -> None:
    image = read_bgr(shared_file("testdata/faces/deepface/couple.jpg"))

    async def scenario(pool: CpuPool) -> tuple[list[Face], int, list[EmbeddedFace]]:
        return await detect_and_embed(default_pipeline(default_session, pool), image)

    faces, _, embedded = run_with_pool(scenario)
    assert len(faces) == 2
    height, width = image.shape[:2]
    for face in faces:
        assert face.confidence >= 0.5
        assert min(face.width, face.height) >= 40
        assert 0 <= face.box[0] < face.box[2] <= width
        assert 0 <= face.box[1] < face.box[3] <= height
        # Landmarks sit inside their face's box.
        assert np.all(face.landmarks[:, 0] >= face.box[0]) and np.all(face.landmarks[:, 0] <= face.box[2])
        assert np.all(face.landmarks[:, 1] >= face.box[1]) and np.all(face.landmarks[:, 1] <= face.box[3])
    assert faces[0].area >= faces[1].area
    # Two people side by side: the boxes do not overlap.
    first, second = faces
    assert first.box[2] <= second.box[0] or second.box[2] <= first.box[0]
    vectors = [e.vectors["mobilefacenet"] for e in embedded]
    for vector in vectors:
        assert vector.shape == (128,)
        assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
    # Two different people: farther apart than the profile's same-person distance.
    assert cosine_distance(vectors[0], vectors[1]) > load_profile("default").thresholds.max_distance


def test_face_free_images_give_no_face(default_session: OrtSession) -> None:
    paths = sorted((shared_dir() / "testdata" / "images").iterdir())
    assert len(paths) >= 5

    async def scenario(pool: CpuPool) -> list[tuple[str, int]]:
        pipeline = default_pipeline(default_session, pool)
        found = []
        for path in paths:
            faces, _ = await pipeline.detect(decode_image(path.read_bytes(), LIMITS))
            found.append((path.name, len(faces)))
        return found

    assert run_with_pool(scenario) == [(path.name, 0) for path in paths]


def test_grayscale_and_rgba_photos_still_give_a_face(default_session: OrtSession, tmp_path: Path) -> None:
    colour = shrink(read_bgr(shared_file("testdata/faces/deepface/img1.jpg")), 800)
    grey_path, rgba_path = tmp_path / "grey.png", tmp_path / "rgba.png"
    assert cv2.imwrite(str(grey_path), cv2.cvtColor(colour, cv2.COLOR_BGR2GRAY))
    bgra = cv2.cvtColor(colour, cv2.COLOR_BGR2BGRA)
    bgra[:, :, 3] = 200
    assert cv2.imwrite(str(rgba_path), bgra)
    assert cv2.imread(str(grey_path), cv2.IMREAD_UNCHANGED).ndim == 2
    assert cv2.imread(str(rgba_path), cv2.IMREAD_UNCHANGED).shape[2] == 4
    images = {
        "colour": colour,
        "grey (decode_image)": decode_image(grey_path.read_bytes(), LIMITS),
        "rgba (decode_image)": decode_image(rgba_path.read_bytes(), LIMITS),
        "grey (cv2.imread)": read_bgr(grey_path),
        "rgba (cv2.imread)": read_bgr(rgba_path),
    }

    async def scenario(pool: CpuPool) -> dict[str, list[EmbeddedFace]]:
        pipeline = default_pipeline(default_session, pool)
        results = {}
        for name, image in images.items():
            assert image.ndim == 3 and image.shape[2] == 3, name
            _, _, embedded = await detect_and_embed(pipeline, image)
            results[name] = embedded
        return results

    results = run_with_pool(scenario)
    assert {name: len(embedded) for name, embedded in results.items()} == dict.fromkeys(images, 1)
    reference = results["colour"][0]
    for name, (embedded,) in results.items():
        # The same face, same place, and still recognised as the same person.
        np.testing.assert_allclose(embedded.face.box, reference.face.box, atol=8, err_msg=name)
        distance = cosine_distance(embedded.vectors["mobilefacenet"], reference.vectors["mobilefacenet"])
        assert distance < load_profile("default").thresholds.max_distance, name


def test_stash_sense_profile_end_to_end_with_synthetic_embedders(
    default_files: dict[str, Path], tmp_path: Path
) -> None:
    profile = load_profile("stash-sense")
    entries = catalog_entries(profile)
    facenet_file, arcface_file = tmp_path / "facenet512.onnx", tmp_path / "arcface.onnx"
    facenet_file.write_bytes(projection_embedder_onnx(160, "Bottleneck_BatchNorm", seed=1))
    arcface_file.write_bytes(projection_embedder_onnx(112, "embedding", seed=2))
    session = RecordingSession(
        OrtSession(
            {"scrfd_500m": default_files["scrfd_500m"], "facenet512": facenet_file, "arcface": arcface_file},
            threads=4,
        )
    )
    image = read_bgr(shared_file("testdata/faces/deepface/couple.jpg"))

    async def scenario(pool: CpuPool) -> tuple[list[Face], int, list[EmbeddedFace]]:
        return await detect_and_embed(FacePipeline(profile, entries, session, pool), image)

    faces, _, embedded = run_with_pool(scenario)
    assert len(faces) == 2
    assert [model for model, _ in session.calls].count("scrfd_500m") == 1
    sent = {model: inputs["input"] for model, inputs in session.calls if model != "scrfd_500m"}
    # Flip averaging: one call per embedder with 2N crops (N = 2 faces), NHWC at each size.
    assert [model for model, _ in session.calls[1:]] in (["facenet512", "arcface"], ["arcface", "facenet512"])
    assert sent["facenet512"].shape == (4, 160, 160, 3)
    assert sent["arcface"].shape == (4, 112, 112, 3)
    # The second half is the mirror image of the first (width is axis 2 of NHWC). ArcFace takes the
    # 112 crop as is; FaceNet's 112 -> 160 resize may differ by rounding at the mirrored edge.
    np.testing.assert_allclose(sent["arcface"][2:], sent["arcface"][:2, :, ::-1, :], atol=1e-5)
    assert float(np.abs(sent["facenet512"][2:] - sent["facenet512"][:2, :, ::-1, :]).mean()) < 0.02
    # ArcFace input is (x - 127.5) / 128, FaceNet's (x - 127.5) / 127.5: both within [-1, 1].
    assert sent["arcface"].min() >= -1.0 and sent["arcface"].max() <= 1.0
    assert sent["facenet512"].min() >= -1.0 - 1e-6 and sent["facenet512"].max() <= 1.0 + 1e-6

    checker = {
        name: OrtSession({name: path})
        for name, path in (("facenet512", facenet_file), ("arcface", arcface_file))
    }
    outputs = {"facenet512": "Bottleneck_BatchNorm", "arcface": "embedding"}
    for face_index, item in enumerate(embedded):
        assert list(item.vectors) == ["facenet", "arcface"]
        for spec in profile.embedders:
            vector = item.vectors[spec.name]
            assert vector.shape == (512,)
            assert vector.dtype == np.float32
            assert float(np.linalg.norm(vector)) == pytest.approx(1.0, abs=1e-5)
            # Equal to the normalised mean of the raw outputs for the crop and its mirror.
            raw = asyncio.run(
                checker[spec.model].infer(spec.model, {"input": sent[spec.model]}, [outputs[spec.model]])
            )
            rows = np.asarray(raw[outputs[spec.model]])
            mean = (rows[face_index] + rows[face_index + 2]) / 2
            np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)
    # The two faces are two different inputs: their vectors differ.
    assert cosine_distance(embedded[0].vectors["arcface"], embedded[1].vectors["arcface"]) > 1e-4
