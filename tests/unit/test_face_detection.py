"""Unit tests for stash_vision.server.faces.detection: NMS, YuNet/SCRFD decoding, coordinate mapping.

The synthetic tests place one known face in otherwise empty output tensors and check the decoded
numbers against hand-computed values. The real-model tests run the shared ONNX detectors in-process
(ONNX Runtime, CPU) on a real photo; they FAIL, never skip, when the shared files are missing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import pytest

from stash_vision.server.faces.detection import (
    DetectedFace,
    decode_scrfd,
    decode_yunet,
    nms,
    to_source_coordinates,
)
from tests.conftest import shared_file

REPO_ROOT = Path(__file__).resolve().parents[2]
INPUT_SIZE = 640

Outputs = dict[str, npt.NDArray[np.float32]]


# --------------------------------------------------------------------------------------------- helpers


def read_image(path: Path) -> npt.NDArray[np.uint8]:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        pytest.fail(f"OpenCV could not decode {path}")
    return np.asarray(image, dtype=np.uint8)


def letterbox(image: npt.NDArray[np.uint8], size: int = INPUT_SIZE) -> tuple[npt.NDArray[np.float32], float]:
    """Keep aspect, scale = size / max(h, w), paste top-left into a zero size x size BGR float32 canvas."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    resized = cv2.resize(image, (round(width * scale), round(height * scale)), interpolation=cv2.INTER_LINEAR)
    canvas = np.zeros((size, size, 3), dtype=np.float32)
    canvas[: resized.shape[0], : resized.shape[1]] = resized
    return canvas, scale


def run_session(session: ort.InferenceSession, feeds: dict[str, npt.NDArray[np.float32]]) -> Outputs:
    names = [output.name for output in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds), strict=True))


def yunet_feed(canvas: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    # BGR, 0..255, NCHW, no normalisation.
    return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None], dtype=np.float32)


def scrfd_feed(canvas: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    # RGB, (x - 127.5) / 128, NCHW.
    rgb = canvas[..., ::-1]
    return np.ascontiguousarray(((rgb - 127.5) / 128.0).transpose(2, 0, 1)[None], dtype=np.float32)


def cells(size: tuple[int, int], stride: int) -> int:
    return (size[0] // stride) * (size[1] // stride)


def empty_yunet(size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)) -> Outputs:
    outputs: Outputs = {}
    for stride in (8, 16, 32):
        n = cells(size, stride)
        outputs[f"cls_{stride}"] = np.zeros((n, 1), np.float32)
        outputs[f"obj_{stride}"] = np.zeros((n, 1), np.float32)
        outputs[f"bbox_{stride}"] = np.zeros((n, 4), np.float32)
        outputs[f"kps_{stride}"] = np.zeros((n, 10), np.float32)
    return outputs


def empty_scrfd(size: tuple[int, int] = (INPUT_SIZE, INPUT_SIZE)) -> Outputs:
    outputs: Outputs = {}
    for stride in (8, 16, 32):
        n = 2 * cells(size, stride)
        outputs[f"score_{stride}"] = np.zeros((n, 1), np.float32)
        outputs[f"bbox_{stride}"] = np.zeros((n, 4), np.float32)
        outputs[f"kps_{stride}"] = np.zeros((n, 10), np.float32)
    return outputs


KPS_OFFSETS = np.array([-1.0, -0.5, 1.0, -0.5, 0.0, 0.25, -0.75, 1.0, 0.75, 1.0], np.float32)


def box_iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> float:
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union)


# ------------------------------------------------------------------------------------------------ NMS


def test_nms_suppresses_overlapping_lower_score_box() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 20, 30, 30]], np.float32)
    # IoU(0, 1) = 90 / 110 ≈ 0.82; box 2 touches nothing.
    kept = nms(boxes, np.array([0.9, 0.8, 0.7]), iou_threshold=0.5)
    assert kept.tolist() == [0, 2]


def test_nms_visits_boxes_by_descending_score_not_index() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    kept = nms(boxes, np.array([0.2, 0.9, 0.5]), iou_threshold=0.5)
    assert kept.tolist() == [1, 2]


def test_nms_threshold_is_strict_greater_than() -> None:
    # Intersection 2, union 4: IoU exactly 0.5.
    boxes = np.array([[0, 0, 3, 1], [1, 0, 4, 1]], np.float32)
    scores = np.array([0.9, 0.8])
    assert nms(boxes, scores, iou_threshold=0.5).tolist() == [0, 1]
    assert nms(boxes, scores, iou_threshold=0.49).tolist() == [0]


def test_nms_suppressed_box_does_not_suppress_others() -> None:
    # IoU(A, B) = 50 / 150 = 1/3 > 0.3, IoU(B, C) = 1/3 but B is gone; IoU(A, C) = 0.
    boxes = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [10, 0, 20, 10]], np.float32)
    kept = nms(boxes, np.array([0.9, 0.8, 0.7]), iou_threshold=0.3)
    assert kept.tolist() == [0, 2]


def test_nms_equal_scores_keep_lower_index() -> None:
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32)
    assert nms(boxes, np.array([0.5, 0.5]), iou_threshold=0.3).tolist() == [0]


def test_nms_empty_input_and_degenerate_boxes() -> None:
    kept = nms(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), iou_threshold=0.3)
    assert kept.shape == (0,)
    assert kept.dtype == np.intp
    # Two zero-area boxes at the same point: union 0, treated as no overlap (no NaN, no warning).
    points = np.array([[5, 5, 5, 5], [5, 5, 5, 5]], np.float32)
    assert nms(points, np.array([0.9, 0.8]), iou_threshold=0.3).tolist() == [0, 1]


def test_nms_rejects_mismatched_lengths() -> None:
    with pytest.raises(ValueError, match="2 boxes but 3 scores"):
        nms(np.zeros((2, 4)), np.zeros(3), iou_threshold=0.3)


# ----------------------------------------------------------------------------------------- DetectedFace


def test_detected_face_is_immutable_and_validated() -> None:
    face = DetectedFace(box=np.array([1, 2, 3, 4]), score=np.float32(0.5), landmarks=np.zeros((5, 2)))
    assert face.box.dtype == np.float32
    assert face.landmarks.dtype == np.float32
    assert isinstance(face.score, float)
    with pytest.raises(ValueError):
        face.box[0] = 10.0
    with pytest.raises(ValueError, match="box must have 4 values"):
        DetectedFace(box=np.zeros(3), score=0.5, landmarks=np.zeros((5, 2)))
    with pytest.raises(ValueError, match="landmarks must have shape"):
        DetectedFace(box=np.zeros(4), score=0.5, landmarks=np.zeros((4, 2)))


def test_detected_face_copies_its_inputs() -> None:
    box = np.array([1, 2, 3, 4], np.float32)
    face = DetectedFace(box=box, score=0.5, landmarks=np.zeros((5, 2), np.float32))
    box[0] = 99.0
    assert face.box[0] == 1.0


# ------------------------------------------------------------------------------------- YuNet (synthetic)


def place_yunet_face(
    outputs: Outputs, stride: int, index: int, cls: float, obj: float, bbox: list[float]
) -> None:
    outputs[f"cls_{stride}"][index, 0] = cls
    outputs[f"obj_{stride}"][index, 0] = obj
    outputs[f"bbox_{stride}"][index] = bbox
    outputs[f"kps_{stride}"][index] = KPS_OFFSETS


def test_decode_yunet_single_face_exact_geometry() -> None:
    outputs = empty_yunet()
    # Stride 16 on 640: 40 columns. Cell (x=10, y=5) -> row-major index 210, anchor (160, 80), no +0.5.
    place_yunet_face(outputs, 16, 5 * 40 + 10, cls=0.81, obj=1.0, bbox=[0.25, -0.5, math.log(4), math.log(2)])

    faces = decode_yunet(outputs)

    assert len(faces) == 1
    face = faces[0]
    # centre = (160 + 0.25*16, 80 - 0.5*16) = (164, 72); wh = (4*16, 2*16) = (64, 32).
    np.testing.assert_allclose(face.box, [132, 56, 196, 88], rtol=0, atol=1e-4)
    # Score is sqrt(cls * obj), cv2.FaceDetectorYN's scale.
    assert face.score == pytest.approx(0.9, abs=1e-6)
    expected_landmarks = np.array([160, 80], np.float32) + KPS_OFFSETS.reshape(5, 2) * 16
    np.testing.assert_allclose(face.landmarks, expected_landmarks, rtol=0, atol=1e-4)


def test_decode_yunet_each_stride_uses_its_own_grid() -> None:
    outputs = empty_yunet()
    place_yunet_face(outputs, 8, 3 * 80 + 7, cls=1.0, obj=1.0, bbox=[0, 0, 0, 0])  # anchor (56, 24)
    place_yunet_face(outputs, 32, 19 * 20 + 19, cls=1.0, obj=1.0, bbox=[0, 0, 0, 0])  # anchor (608, 608)

    faces = decode_yunet(outputs)

    boxes = sorted(face.box.tolist() for face in faces)
    # exp(0) * s = s: an s x s box centred on the anchor.
    assert boxes == [[52, 20, 60, 28], [592, 592, 624, 624]]


def test_decode_yunet_non_square_input_is_width_by_height_row_major() -> None:
    size = (320, 160)  # (width, height): stride 8 has 40 columns and 20 rows.
    outputs = empty_yunet(size)
    place_yunet_face(outputs, 8, 12 * 40 + 30, cls=1.0, obj=1.0, bbox=[0, 0, 0, 0])

    faces = decode_yunet(outputs, input_size=size)

    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, [236, 92, 244, 100])  # anchor (240, 96)


def test_decode_yunet_threshold_applies_to_sqrt_score_and_inputs_are_clipped() -> None:
    outputs = empty_yunet()
    place_yunet_face(outputs, 16, 0, cls=0.64, obj=0.25, bbox=[0, 0, 0, 0])  # sqrt = 0.4
    place_yunet_face(outputs, 16, 100, cls=1.2, obj=0.81, bbox=[0, 0, 0, 0])  # cls clipped to 1 -> 0.9
    place_yunet_face(outputs, 16, 200, cls=-0.1, obj=1.0, bbox=[0, 0, 0, 0])  # clipped to 0, no NaN

    assert [face.score for face in decode_yunet(outputs)] == pytest.approx([0.9])
    scores = [face.score for face in decode_yunet(outputs, score_threshold=0.39)]
    assert scores == pytest.approx([0.9, 0.4])


def test_decode_yunet_nms_merges_neighbouring_cells() -> None:
    outputs = empty_yunet()
    # Two adjacent stride-32 cells predicting (almost) the same large face: only the better survives.
    place_yunet_face(outputs, 32, 5 * 20 + 5, cls=0.9, obj=0.9, bbox=[0.5, 0, math.log(4), math.log(4)])
    place_yunet_face(outputs, 32, 5 * 20 + 6, cls=0.8, obj=0.8, bbox=[-0.5, 0, math.log(4), math.log(4)])

    faces = decode_yunet(outputs)

    assert len(faces) == 1
    assert faces[0].score == pytest.approx(0.9)


def test_decode_yunet_top_k_limits_candidates() -> None:
    outputs = empty_yunet()
    place_yunet_face(outputs, 8, 0, cls=0.8, obj=0.8, bbox=[0, 0, 0, 0])
    place_yunet_face(outputs, 8, 500, cls=0.9, obj=0.9, bbox=[0, 0, 0, 0])
    faces = decode_yunet(outputs, top_k=1)
    assert [face.score for face in faces] == pytest.approx([0.9])


def test_decode_yunet_accepts_leading_batch_dimension() -> None:
    outputs = empty_yunet()
    place_yunet_face(outputs, 16, 210, cls=0.81, obj=1.0, bbox=[0.25, -0.5, math.log(4), math.log(2)])
    batched = {name: array[None] for name, array in outputs.items()}

    plain, with_batch = decode_yunet(outputs), decode_yunet(batched)

    assert len(with_batch) == 1
    np.testing.assert_array_equal(with_batch[0].box, plain[0].box)
    np.testing.assert_array_equal(with_batch[0].landmarks, plain[0].landmarks)


def test_decode_yunet_no_faces() -> None:
    assert decode_yunet(empty_yunet()) == []


def test_decode_yunet_rejects_wrong_shapes_and_missing_outputs() -> None:
    outputs = empty_yunet()
    with pytest.raises(ValueError, match="implies"):
        decode_yunet(outputs, input_size=(320, 320))
    batch_of_two = {name: np.stack([array, array]) for name, array in outputs.items()}
    with pytest.raises(ValueError, match="batch of 2"):
        decode_yunet(batch_of_two)
    del outputs["kps_32"]
    with pytest.raises(KeyError, match="kps_32"):
        decode_yunet(outputs)


# ------------------------------------------------------------------------------------- SCRFD (synthetic)


def test_decode_scrfd_single_face_exact_geometry_second_anchor() -> None:
    outputs = empty_scrfd()
    # Stride 8 on 640: 80 columns, two anchors per cell. Cell (x=3, y=2) -> cell 163 -> rows 326, 327;
    # use the second one to check that each cell's centre is repeated, not the grid tiled twice.
    row = 2 * (2 * 80 + 3) + 1
    outputs["score_8"][row, 0] = 0.75
    outputs["bbox_8"][row] = [1, 2, 3, 4]
    outputs["kps_8"][row] = KPS_OFFSETS

    faces = decode_scrfd(outputs)

    assert len(faces) == 1
    face = faces[0]
    # anchor (24, 16): box = (24 - 8, 16 - 16, 24 + 24, 16 + 32).
    np.testing.assert_allclose(face.box, [16, 0, 48, 48], rtol=0, atol=1e-5)
    assert face.score == pytest.approx(0.75)
    expected_landmarks = np.array([24, 16], np.float32) + KPS_OFFSETS.reshape(5, 2) * 8
    np.testing.assert_allclose(face.landmarks, expected_landmarks, rtol=0, atol=1e-5)


def test_decode_scrfd_larger_stride_threshold_and_batch_dimension() -> None:
    outputs = empty_scrfd()
    row = 2 * (7 * 20 + 11)  # stride 32, cell (x=11, y=7): anchor (352, 224), first anchor of the cell
    outputs["score_32"][row, 0] = 0.6
    outputs["bbox_32"][row] = [2, 2, 2, 3]
    outputs["score_32"][5, 0] = 0.49  # below the default 0.5
    batched = {name: array[None] for name, array in outputs.items()}

    faces = decode_scrfd(batched)

    assert len(faces) == 1
    np.testing.assert_allclose(faces[0].box, [288, 160, 416, 320])
    assert len(decode_scrfd(outputs, score_threshold=0.4)) == 2


def test_decode_scrfd_nms_keeps_best_of_overlapping_pair() -> None:
    outputs = empty_scrfd()
    # Both anchors of one cell see the same face; the higher score wins.
    outputs["score_16"][[40, 41], 0] = [0.7, 0.95]
    outputs["bbox_16"][[40, 41]] = [[2, 2, 2, 2], [2, 2, 2.2, 2]]
    faces = decode_scrfd(outputs)
    assert [face.score for face in faces] == pytest.approx([0.95])


def test_decode_scrfd_rejects_single_anchor_layout() -> None:
    outputs = empty_scrfd()
    outputs["score_8"] = outputs["score_8"][::2]
    with pytest.raises(ValueError, match="score_8"):
        decode_scrfd(outputs)


# ------------------------------------------------------------------------------------ coordinate mapping


def test_to_source_coordinates_inverts_scale_and_offset() -> None:
    source_box = np.array([100, 200, 300, 450], np.float32)
    source_points = np.array([[150, 260], [250, 262], [200, 320], [160, 390], [240, 392]], np.float32)
    scale_x, scale_y, offset_x, offset_y = 0.32, 0.25, 12.0, 80.0
    scale, offset = np.array([scale_x, scale_y]), np.array([offset_x, offset_y])
    model_face = DetectedFace(
        box=(source_box.reshape(2, 2) * scale + offset).reshape(4),
        score=0.8,
        landmarks=source_points * scale + offset,
    )

    (mapped,) = to_source_coordinates([model_face], scale_x, scale_y, offset_x, offset_y)

    np.testing.assert_allclose(mapped.box, source_box, rtol=1e-6)
    np.testing.assert_allclose(mapped.landmarks, source_points, rtol=1e-6)
    assert mapped.score == pytest.approx(0.8)


def test_to_source_coordinates_letterbox_example_and_validation() -> None:
    # Source 1280x960 letterboxed into 640x640 top-left: scale 0.5, no offset.
    face = DetectedFace(box=np.array([10, 20, 30, 40]), score=0.9, landmarks=np.full((5, 2), 25.0))
    (mapped,) = to_source_coordinates([face], 0.5, 0.5, 0.0, 0.0)
    np.testing.assert_array_equal(mapped.box, [20, 40, 60, 80])
    np.testing.assert_array_equal(mapped.landmarks, np.full((5, 2), 50.0))
    assert to_source_coordinates([], 0.5, 0.5) == []
    with pytest.raises(ValueError, match="positive"):
        to_source_coordinates([face], 0.0, 0.5)


# ---------------------------------------------------------------------------------------- real models


@pytest.fixture(scope="module")
def couple() -> npt.NDArray[np.uint8]:
    return read_image(shared_file("testdata/faces/deepface/couple.jpg"))


def session(relative: str) -> ort.InferenceSession:
    return ort.InferenceSession(str(shared_file(relative)), providers=["CPUExecutionProvider"])


def assert_plausible_faces(faces: list[DetectedFace], image: npt.NDArray[np.uint8]) -> None:
    height, width = image.shape[:2]
    for face in faces:
        x1, y1, x2, y2 = face.box
        assert -0.05 * width <= x1 < x2 <= 1.05 * width
        assert -0.05 * height <= y1 < y2 <= 1.05 * height
        # Every landmark lies inside its own box, and the eyes are above the mouth corners.
        inside = (face.landmarks >= face.box[:2]) & (face.landmarks <= face.box[2:])
        assert inside.all(), f"landmarks {face.landmarks.tolist()} outside box {face.box.tolist()}"
        assert face.landmarks[:2, 1].max() < face.landmarks[3:, 1].min()
    assert box_iou(faces[0].box, faces[1].box) == 0.0


def detect_in_source(
    image: npt.NDArray[np.uint8],
    model: ort.InferenceSession,
    feed: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    decode: Callable[[Outputs], list[DetectedFace]],
) -> list[DetectedFace]:
    canvas, scale = letterbox(image)
    outputs = run_session(model, {model.get_inputs()[0].name: feed(canvas)})
    return to_source_coordinates(decode(outputs), scale, scale, 0.0, 0.0)


def test_yunet_finds_both_faces_in_couple(couple: npt.NDArray[np.uint8]) -> None:
    model = session("models/face_detection/yunet_s_dynamic.onnx")
    faces = detect_in_source(couple, model, yunet_feed, decode_yunet)
    assert len(faces) == 2, [(face.box.tolist(), face.score) for face in faces]
    assert all(face.score >= 0.9 for face in faces)
    assert_plausible_faces(faces, couple)


def test_scrfd_finds_both_faces_in_couple_and_agrees_with_yunet(couple: npt.NDArray[np.uint8]) -> None:
    scrfd = session("models/face_detection/scrfd_500m_bnkps.onnx")
    assert scrfd.get_inputs()[0].name == "input.1"
    faces = detect_in_source(couple, scrfd, scrfd_feed, decode_scrfd)
    assert len(faces) == 2, [(face.box.tolist(), face.score) for face in faces]
    assert_plausible_faces(faces, couple)

    yunet = session("models/face_detection/yunet_s_dynamic.onnx")
    reference = detect_in_source(couple, yunet, yunet_feed, decode_yunet)
    for face in faces:
        # Two independently trained detectors: same faces, boxes overlap strongly.
        assert max(box_iou(face.box, other.box) for other in reference) > 0.8


def test_decode_yunet_matches_opencv_face_detector_yn(couple: npt.NDArray[np.uint8]) -> None:
    # cv2.FaceDetectorYN wraps the same fixed-size model: our decode must reproduce its numbers,
    # including the sqrt(cls * obj) score scale.
    model_path = shared_file("models/face_detection/yunet_s_640_640.onnx")
    canvas, _ = letterbox(couple)
    pixels = canvas.astype(np.uint8)
    detector = cv2.FaceDetectorYN.create(str(model_path), "", (INPUT_SIZE, INPUT_SIZE), 0.6, 0.3, 5000)
    _, rows = detector.detect(pixels)
    assert rows is not None and len(rows) == 2

    model = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    faces = decode_yunet(run_session(model, {"input": yunet_feed(pixels.astype(np.float32))}))

    assert len(faces) == len(rows)
    for face, row in zip(sorted(faces, key=lambda f: -f.score), rows[np.argsort(-rows[:, 14])], strict=True):
        x, y, w, h = row[:4]
        np.testing.assert_allclose(face.box, [x, y, x + w, y + h], atol=0.05)
        np.testing.assert_allclose(face.landmarks, row[4:14].reshape(5, 2), atol=0.05)
        assert face.score == pytest.approx(float(row[14]), abs=1e-4)
