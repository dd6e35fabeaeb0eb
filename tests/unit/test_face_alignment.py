"""Unit tests for stash_vision.server.faces.alignment and .embedding.

Synthetic tests check the Umeyama similarity against known transforms and an independent
least-squares solution; the real-model test aligns faces found by YuNet and embeds them with
MobileFaceNet (ONNX Runtime, CPU), failing (never skipping) when the shared files are missing.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from stash_vision.server.faces.alignment import ARCFACE_TEMPLATE_112, align_face, similarity_transform
from stash_vision.server.faces.detection import decode_yunet, to_source_coordinates
from stash_vision.server.faces.embedding import cosine_similarity, l2_normalize
from tests.conftest import shared_file

REPO_ROOT = Path(__file__).resolve().parents[2]
DEEPFACE = "testdata/faces/deepface"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)

Points = npt.NDArray[np.float64]


def similarity_matrix(angle_degrees: float, scale: float, tx: float, ty: float) -> Points:
    angle = math.radians(angle_degrees)
    cos, sin = math.cos(angle), math.sin(angle)
    return np.array([[scale * cos, -scale * sin, tx], [scale * sin, scale * cos, ty]])


def apply(matrix: Points, points: npt.ArrayLike) -> Points:
    array = np.asarray(points, dtype=np.float64)
    mapped: Points = array @ matrix[:, :2].T + matrix[:, 2]
    return mapped


def random_image(height: int, width: int, seed: int = 0) -> npt.NDArray[np.uint8]:
    return np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)


# ---------------------------------------------------------------------------------- similarity_transform


def test_template_constant() -> None:
    assert ARCFACE_TEMPLATE_112.shape == (5, 2)
    assert ARCFACE_TEMPLATE_112.dtype == np.float32
    np.testing.assert_allclose(ARCFACE_TEMPLATE_112[0], [38.2946, 51.6963])
    np.testing.assert_allclose(ARCFACE_TEMPLATE_112[4], [70.7299, 92.2041])


@pytest.mark.parametrize(
    ("angle", "scale", "tx", "ty"),
    [(0.0, 1.0, 0.0, 0.0), (30.0, 1.7, 12.0, -5.0), (-135.0, 0.4, 300.0, 80.0), (179.0, 3.0, -20.0, 7.5)],
)
def test_similarity_transform_recovers_exact_transform(
    angle: float, scale: float, tx: float, ty: float
) -> None:
    expected = similarity_matrix(angle, scale, tx, ty)
    src = ARCFACE_TEMPLATE_112.astype(np.float64) * 2.5 + [40.0, 10.0]
    dst = apply(expected, src)

    matrix = similarity_transform(src, dst)

    assert matrix.shape == (2, 3)
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-9)
    np.testing.assert_allclose(apply(matrix, src), dst, rtol=0, atol=1e-9)


def test_similarity_transform_is_the_least_squares_optimum_on_noisy_points() -> None:
    rng = np.random.default_rng(7)
    src = rng.uniform(0, 200, size=(5, 2))
    dst = apply(similarity_matrix(20.0, 0.6, 5.0, 9.0), src) + rng.normal(0, 2.0, size=(5, 2))

    matrix = similarity_transform(src, dst)

    # Independent solution: with z = x + iy, a similarity is dst = a*src + b (a, b complex), which is
    # linear in (a, b), so ordinary least squares gives the optimum directly.
    src_c, dst_c = src[:, 0] + 1j * src[:, 1], dst[:, 0] + 1j * dst[:, 1]
    (a, b), *_ = np.linalg.lstsq(np.stack([src_c, np.ones(5)], axis=1), dst_c, rcond=None)
    expected = np.array([[a.real, -a.imag, b.real], [a.imag, a.real, b.imag]])
    np.testing.assert_allclose(matrix, expected, rtol=0, atol=1e-9)


def test_similarity_transform_never_reflects() -> None:
    src = ARCFACE_TEMPLATE_112.astype(np.float64)
    mirrored = src * [-1.0, 1.0]  # a mirror image: the best fit with a reflection would be exact
    matrix = similarity_transform(src, mirrored)
    assert np.linalg.det(matrix[:, :2]) > 0
    np.testing.assert_allclose(matrix[0, 0], matrix[1, 1])
    np.testing.assert_allclose(matrix[0, 1], -matrix[1, 0])


def test_similarity_transform_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="same point"):
        similarity_transform(np.ones((5, 2)), ARCFACE_TEMPLATE_112)
    with pytest.raises(ValueError, match="differ in shape"):
        similarity_transform(np.zeros((4, 2)), ARCFACE_TEMPLATE_112)
    with pytest.raises(ValueError, match="shape"):
        similarity_transform(np.zeros(10), ARCFACE_TEMPLATE_112)


# ------------------------------------------------------------------------------------------ align_face


def test_align_face_with_template_landmarks_returns_the_same_crop() -> None:
    image = random_image(150, 200)
    aligned = align_face(image, ARCFACE_TEMPLATE_112)
    assert aligned.shape == (112, 112, 3)
    assert aligned.dtype == np.uint8
    np.testing.assert_array_equal(aligned, image[:112, :112])


def test_align_face_scales_template_with_size() -> None:
    image = random_image(224, 224, seed=1)
    aligned = align_face(image, ARCFACE_TEMPLATE_112 * 2.0, size=224)
    np.testing.assert_array_equal(aligned, image)


def test_landmarks_transformed_by_the_matrix_land_on_the_template() -> None:
    forward = similarity_matrix(-25.0, 2.3, 140.0, 60.0)
    landmarks = apply(forward, ARCFACE_TEMPLATE_112)  # a rotated, enlarged face in a bigger image
    matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE_112)
    np.testing.assert_allclose(apply(matrix, landmarks), ARCFACE_TEMPLATE_112, rtol=0, atol=1e-4)
    # And the recovered warp is the exact inverse of the one that placed the face.
    np.testing.assert_allclose(matrix, cv2.invertAffineTransform(forward), rtol=0, atol=1e-9)


def test_align_face_moves_marked_landmarks_onto_the_template() -> None:
    # Paint a bright disc at each landmark of a rotated, scaled face; after alignment the discs
    # must sit at the template positions.
    landmarks = apply(similarity_matrix(40.0, 1.8, 150.0, 20.0), ARCFACE_TEMPLATE_112)
    image = np.zeros((400, 400, 3), np.uint8)
    for x, y in landmarks:
        cv2.circle(image, (round(x), round(y)), 5, (255, 255, 255), thickness=-1)

    aligned = align_face(image, landmarks)

    for x, y in ARCFACE_TEMPLATE_112:
        assert aligned[round(y), round(x)].min() == 255
    # Away from the discs the crop stays dark (black source, black border).
    assert aligned[5, 5].max() == 0


def test_align_face_fills_outside_with_black_and_validates() -> None:
    image = np.full((60, 60, 3), 200, np.uint8)
    # Landmarks near the top-left corner: most of the crop comes from outside the image.
    aligned = align_face(image, ARCFACE_TEMPLATE_112 - 50.0)
    assert aligned[-1, -1].tolist() == [0, 0, 0]
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        not_uint8: Any = image.astype(np.float32)
        align_face(not_uint8, ARCFACE_TEMPLATE_112)
    with pytest.raises(ValueError, match="HxWx3 uint8"):
        align_face(image[..., 0], ARCFACE_TEMPLATE_112)


# ------------------------------------------------------------------------------------------- embedding


def test_l2_normalize_unit_norm_along_axis_and_zero_safe() -> None:
    vectors = np.array([[3.0, 4.0], [0.0, 0.0], [-2.0, 0.0]], np.float32)
    normalised = l2_normalize(vectors)
    np.testing.assert_allclose(normalised, [[0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]])
    assert normalised.dtype == np.float32
    assert not np.isnan(normalised).any()
    np.testing.assert_allclose(
        l2_normalize(np.array([[3.0, 0.0], [4.0, 0.0]]), axis=0), [[0.6, 0.0], [0.8, 0.0]]
    )
    np.testing.assert_allclose(l2_normalize([1, 1, 1, 1]), [0.5, 0.5, 0.5, 0.5])


def test_cosine_similarity_known_values() -> None:
    assert cosine_similarity([1, 0], [0, 2]) == pytest.approx(0.0)
    assert cosine_similarity([1, 2, 3], [2, 4, 6]) == pytest.approx(1.0)
    assert cosine_similarity([1, 2, 3], [-1, -2, -3]) == pytest.approx(-1.0)
    assert cosine_similarity([1, 1], [1, 0]) == pytest.approx(math.sqrt(0.5))
    assert cosine_similarity([0, 0], [1, 0]) == 0.0
    assert isinstance(cosine_similarity(np.array([1, 0], np.float32), np.array([1, 0], np.float32)), float)
    with pytest.raises(ValueError, match="differ in length"):
        cosine_similarity([1, 0], [1, 0, 0])


# ----------------------------------------------------------------------------------------- real models


def identity_groups() -> dict[str, str]:
    """image file name -> identity group, from lines like `group00: img1.jpg img2.jpg ...`."""
    groups: dict[str, str] = {}
    for line in shared_file(f"{DEEPFACE}/identity_groups.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        group, _, names = line.partition(":")
        for name in names.split():
            groups[name] = group.strip()
    return groups


class FacePipeline:
    """Letterbox -> YuNet -> best face -> 5-point alignment -> MobileFaceNet, all in-process."""

    def __init__(self) -> None:
        providers = ["CPUExecutionProvider"]
        detector_path = shared_file("models/face_detection/yunet_s_dynamic.onnx")
        recogniser_path = shared_file("models/face_recognition/mobilefacenet.onnx")
        self.detector = ort.InferenceSession(str(detector_path), providers=providers)
        self.recogniser = ort.InferenceSession(str(recogniser_path), providers=providers)

    def embed(self, name: str) -> npt.NDArray[np.float32]:
        path = shared_file(f"{DEEPFACE}/{name}")
        decoded = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if decoded is None:
            pytest.fail(f"OpenCV could not decode {path}")
        image = np.asarray(decoded, dtype=np.uint8)
        face = self.detect_best(image)
        aligned = align_face(image, face)
        rgb = aligned[..., ::-1].astype(np.float32) / 255.0
        tensor = ((rgb - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1)[None]
        (embeddings,) = self.recogniser.run(["embeddings"], {"input": np.ascontiguousarray(tensor)})
        assert embeddings.shape == (1, 128)
        return np.asarray(embeddings[0], dtype=np.float32)

    def detect_best(self, image: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
        height, width = image.shape[:2]
        scale = 640 / max(height, width)
        resized = cv2.resize(
            image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR
        )
        canvas = np.zeros((640, 640, 3), np.float32)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        names = [output.name for output in self.detector.get_outputs()]
        feed = np.ascontiguousarray(canvas.transpose(2, 0, 1)[None])
        outputs = dict(zip(names, self.detector.run(names, {"input": feed}), strict=True))
        faces = to_source_coordinates(decode_yunet(outputs), scale, scale, 0.0, 0.0)
        assert faces, "YuNet found no face"
        return max(faces, key=lambda face: face.score).landmarks


def test_mobilefacenet_same_person_is_closer_than_different_person() -> None:
    groups = identity_groups()
    assert groups["img1.jpg"] == groups["img2.jpg"], "img1/img2 are expected to show the same person"
    other = next(name for name, group in sorted(groups.items()) if group != groups["img1.jpg"])

    pipeline = FacePipeline()
    anchor, same, different = (pipeline.embed(name) for name in ("img1.jpg", "img2.jpg", other))

    same_similarity = cosine_similarity(anchor, same)
    different_similarity = cosine_similarity(anchor, different)
    assert same_similarity > different_similarity, (same_similarity, different_similarity, other)
    # The shared README measures the best same/different threshold near cosine 0.46-0.49.
    assert same_similarity > 0.5
    assert different_similarity < 0.4
