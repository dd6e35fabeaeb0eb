"""Decoding of face-detector outputs (YuNet, SCRFD) into boxes, scores and 5-point landmarks.

Pure numpy: no Triton, no I/O. The decoders work in MODEL-INPUT pixel coordinates;
`to_source_coordinates` undoes the letterbox/resize that produced the model input.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
IndexArray = npt.NDArray[np.intp]

# Both detectors have three heads, at feature strides 8, 16 and 32.
STRIDES: tuple[int, ...] = (8, 16, 32)
NUM_LANDMARKS = 5


# eq=False: the generated __eq__/__hash__ would compare ndarray fields, which raises
# ("truth value of an array is ambiguous") or fails to hash. Identity semantics are what we want.
@dataclass(frozen=True, eq=False)
class DetectedFace:
    """One detected face. `box` is (x1, y1, x2, y2); `landmarks` is five (x, y) points in the order
    right eye, left eye, nose, right mouth corner, left mouth corner (image-left first)."""

    box: FloatArray
    score: float
    landmarks: FloatArray

    def __post_init__(self) -> None:
        box = np.array(self.box, dtype=np.float32).reshape(-1)
        landmarks = np.array(self.landmarks, dtype=np.float32)
        if box.shape != (4,):
            raise ValueError(f"box must have 4 values, got shape {np.shape(self.box)}")
        if landmarks.shape != (NUM_LANDMARKS, 2):
            raise ValueError(f"landmarks must have shape (5, 2), got {landmarks.shape}")
        # Private read-only copies, so "frozen" also holds for the array contents.
        box.setflags(write=False)
        landmarks.setflags(write=False)
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "landmarks", landmarks)
        object.__setattr__(self, "score", float(self.score))


def nms(boxes: npt.ArrayLike, scores: npt.ArrayLike, iou_threshold: float) -> IndexArray:
    """Greedy non-maximum suppression.

    Visits boxes by descending score (ties: lower index first) and drops every later box whose IoU
    with an already kept box is strictly greater than `iou_threshold`. Returns the kept indices in
    the order they were kept (best first).
    """
    boxes_arr = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    scores_arr = np.asarray(scores, dtype=np.float64).reshape(-1)
    if boxes_arr.shape[0] != scores_arr.shape[0]:
        raise ValueError(f"{boxes_arr.shape[0]} boxes but {scores_arr.shape[0]} scores")

    x1, y1, x2, y2 = boxes_arr.T
    # Continuous coordinates: no "+1" pixel convention, a degenerate box has zero area.
    areas = np.clip(x2 - x1, 0.0, None) * np.clip(y2 - y1, 0.0, None)
    # Stable sort on the negated scores keeps equal scores in index order, so results are deterministic.
    order = np.argsort(-scores_arr, kind="stable")

    keep: list[int] = []
    while order.size > 0:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        inter_w = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0.0, None)
        inter_h = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0.0, None)
        inter = inter_w * inter_h
        union = areas[best] + areas[rest] - inter
        # Two zero-area boxes have no meaningful overlap; treat it as 0 rather than dividing by zero.
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        order = rest[iou <= iou_threshold]
    return np.asarray(keep, dtype=np.intp)


def _per_image(outputs: Mapping[str, npt.ArrayLike], name: str, width: int) -> FloatArray:
    """Fetch one head's output as an (N, width) float32 array, dropping a leading batch dim of 1."""
    if name not in outputs:
        raise KeyError(f"detector output {name!r} is missing (have: {sorted(outputs)})")
    array = np.asarray(outputs[name], dtype=np.float32)
    if array.ndim == 3:
        if array.shape[0] != 1:
            raise ValueError(f"{name}: expected one image, got a batch of {array.shape[0]}")
        array = array[0]
    if array.ndim != 2 or array.shape[1] != width:
        raise ValueError(f"{name}: expected shape [N, {width}] or [1, N, {width}], got {array.shape}")
    return array


def _grid_anchors(input_size: tuple[int, int], stride: int, anchors_per_cell: int) -> FloatArray:
    """Anchor points (x*s, y*s) of a stride's feature map, row-major; each cell's point is repeated
    `anchors_per_cell` times consecutively (SCRFD has two anchor sizes per cell sharing one centre)."""
    width, height = input_size
    # A stride-2 conv/pool chain yields ceil(size / stride) cells; equal to size // stride for the
    # multiples of 32 the models are meant to be fed.
    cols, rows = math.ceil(width / stride), math.ceil(height / stride)
    ys, xs = np.mgrid[0:rows, 0:cols]
    points = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float32) * stride
    return np.repeat(points, anchors_per_cell, axis=0)


def _check_count(name: str, array: FloatArray, anchors: FloatArray, input_size: tuple[int, int]) -> None:
    # A mismatch here almost always means input_size does not describe the tensor the model was fed.
    if array.shape[0] != anchors.shape[0]:
        raise ValueError(
            f"{name} has {array.shape[0]} rows but input_size {input_size} (width, height) "
            f"implies {anchors.shape[0]} anchors"
        )


def _collect(
    boxes: Sequence[FloatArray],
    scores: Sequence[FloatArray],
    landmarks: Sequence[FloatArray],
    nms_iou: float,
    top_k: int | None,
) -> list[DetectedFace]:
    """Concatenate the per-stride candidates, keep the best `top_k`, run NMS, build the faces."""
    all_boxes = np.concatenate(boxes, axis=0)
    all_scores = np.concatenate(scores, axis=0)
    all_landmarks = np.concatenate(landmarks, axis=0)
    if top_k is not None and all_scores.shape[0] > top_k:
        # Same role as cv::dnn::NMSBoxes' top_k: bound the O(n²) NMS by pre-selecting candidates.
        best = np.argsort(-all_scores, kind="stable")[:top_k]
        all_boxes, all_scores, all_landmarks = all_boxes[best], all_scores[best], all_landmarks[best]
    kept = nms(all_boxes, all_scores, nms_iou)
    return [
        DetectedFace(box=all_boxes[i], score=float(all_scores[i]), landmarks=all_landmarks[i]) for i in kept
    ]


def decode_yunet(
    outputs: Mapping[str, npt.ArrayLike],
    input_size: tuple[int, int] = (640, 640),
    score_threshold: float = 0.6,
    nms_iou: float = 0.3,
    top_k: int = 5000,
) -> list[DetectedFace]:
    """Decode YuNet's 12 outputs (cls/obj/bbox/kps at strides 8, 16, 32) for ONE image.

    `input_size` is the model input's (width, height). Returns faces in model-input pixels, best
    first. `top_k` bounds the candidates that enter NMS (as in cv2.FaceDetectorYN).
    """
    boxes: list[FloatArray] = []
    scores: list[FloatArray] = []
    landmarks: list[FloatArray] = []
    for stride in STRIDES:
        cls = _per_image(outputs, f"cls_{stride}", 1)[:, 0]
        obj = _per_image(outputs, f"obj_{stride}", 1)[:, 0]
        bbox = _per_image(outputs, f"bbox_{stride}", 4)
        kps = _per_image(outputs, f"kps_{stride}", 2 * NUM_LANDMARKS)
        anchors = _grid_anchors(input_size, stride, anchors_per_cell=1)
        for name, array in (
            (f"cls_{stride}", cls),
            (f"obj_{stride}", obj),
            (f"bbox_{stride}", bbox),
            (f"kps_{stride}", kps),
        ):
            _check_count(name, array, anchors, input_size)

        # The model's cls*obj is a squared confidence. cv2.FaceDetectorYN reports sqrt(cls*obj), and
        # its documented thresholds (0.6..0.9) are on that scale, so we report the same sqrt so that
        # thresholds carry over unchanged. Clip first: both heads are sigmoids, but exported graphs
        # can overshoot by rounding, and sqrt of a negative would be NaN.
        score = np.sqrt(np.clip(cls, 0.0, 1.0) * np.clip(obj, 0.0, 1.0))
        selected = score >= score_threshold
        if not np.any(selected):
            continue
        anchor = anchors[selected]
        b = bbox[selected]
        centre = anchor + b[:, :2] * stride
        half_wh = np.exp(b[:, 2:4]) * stride / 2.0
        boxes.append(np.concatenate([centre - half_wh, centre + half_wh], axis=1).astype(np.float32))
        scores.append(score[selected].astype(np.float32))
        points = kps[selected].reshape(-1, NUM_LANDMARKS, 2)
        landmarks.append((anchor[:, None, :] + points * stride).astype(np.float32))
    if not boxes:
        return []
    return _collect(boxes, scores, landmarks, nms_iou, top_k)


def decode_scrfd(
    outputs: Mapping[str, npt.ArrayLike],
    input_size: tuple[int, int] = (640, 640),
    score_threshold: float = 0.5,
    nms_iou: float = 0.4,
) -> list[DetectedFace]:
    """Decode SCRFD (bnkps variants) outputs score/bbox/kps at strides 8, 16, 32 for ONE image.

    `input_size` is the model input's (width, height). Two anchors per cell; boxes are distances
    (left, top, right, bottom) from the anchor point in stride units; scores are already sigmoided.
    Returns faces in model-input pixels, best first.
    """
    boxes: list[FloatArray] = []
    scores: list[FloatArray] = []
    landmarks: list[FloatArray] = []
    for stride in STRIDES:
        score = _per_image(outputs, f"score_{stride}", 1)[:, 0]
        dist = _per_image(outputs, f"bbox_{stride}", 4)
        kps = _per_image(outputs, f"kps_{stride}", 2 * NUM_LANDMARKS)
        anchors = _grid_anchors(input_size, stride, anchors_per_cell=2)
        for name, array in ((f"score_{stride}", score), (f"bbox_{stride}", dist), (f"kps_{stride}", kps)):
            _check_count(name, array, anchors, input_size)

        selected = score >= score_threshold
        if not np.any(selected):
            continue
        anchor = anchors[selected]
        d = dist[selected] * stride
        boxes.append(np.concatenate([anchor - d[:, :2], anchor + d[:, 2:4]], axis=1).astype(np.float32))
        scores.append(score[selected].astype(np.float32))
        points = kps[selected].reshape(-1, NUM_LANDMARKS, 2)
        landmarks.append((anchor[:, None, :] + points * stride).astype(np.float32))
    if not boxes:
        return []
    return _collect(boxes, scores, landmarks, nms_iou, top_k=None)


def to_source_coordinates(
    faces: Sequence[DetectedFace],
    scale_x: float,
    scale_y: float,
    offset_x: float = 0.0,
    offset_y: float = 0.0,
) -> list[DetectedFace]:
    """Map faces from model-input pixels back to source-image pixels.

    The preprocessing is described as input = source * scale + offset (per axis), so
    source = (input - offset) / scale. Boxes are not clipped: the caller knows the source size.
    """
    if scale_x <= 0 or scale_y <= 0:
        raise ValueError(f"scales must be positive, got ({scale_x}, {scale_y})")
    offset = np.array([offset_x, offset_y], dtype=np.float64)
    scale = np.array([scale_x, scale_y], dtype=np.float64)
    mapped: list[DetectedFace] = []
    for face in faces:
        corners = (face.box.reshape(2, 2).astype(np.float64) - offset) / scale
        points = (face.landmarks.astype(np.float64) - offset) / scale
        mapped.append(
            DetectedFace(
                box=corners.reshape(4).astype(np.float32),
                score=face.score,
                landmarks=points.astype(np.float32),
            )
        )
    return mapped
