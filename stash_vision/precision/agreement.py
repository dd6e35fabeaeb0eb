"""The accuracy guard's rules (issue 16): how a variant's answers must agree with fp32's on the
calibration images for the variant to be used. Pure functions over already-decoded answers.

- tagger: the same tag decision at the model's thresholds on >= 99 % of (image, tag) pairs, and
  max |delta confidence| <= 0.03;
- detector: the same detections at its threshold, each pair with box IoU >= 0.9;
- embedder: cosine(fp32, variant) >= 0.995 for every face, and the same identification answers."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

TAG_DECISION_AGREEMENT = 0.99
TAG_MAX_DELTA = 0.03
BOX_MIN_IOU = 0.9
EMBEDDING_MIN_COSINE = 0.995

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str
    figures: dict[str, float] = field(default_factory=dict)


def tag_agreement(
    fp32: Sequence[dict[str, float]], variant: Sequence[dict[str, float]], thresholds: dict[str, list[float]]
) -> Verdict:
    """`fp32`/`variant`: per image, tag -> confidence; `thresholds`: tag -> the cuts it is decided at
    (the model's threshold and the tag's CSV TagThreshold)."""
    pairs = same = 0
    max_delta = 0.0
    worst = ""
    for index, (ours, theirs) in enumerate(zip(fp32, variant, strict=True)):
        for tag, confidence in ours.items():
            other = theirs[tag]
            delta = abs(other - confidence)
            if delta > max_delta:
                max_delta, worst = delta, f"image {index} tag {tag}: {confidence:.4f} vs {other:.4f}"
            pairs += 1
            same += all((confidence >= cut) == (other >= cut) for cut in thresholds.get(tag, [0.5]))
    agreement = same / pairs if pairs else 0.0
    figures = {"decision_agreement": agreement, "max_delta": max_delta, "pairs": float(pairs)}
    if not pairs:
        return Verdict(False, "no (image, tag) pairs to compare", figures)
    if agreement < TAG_DECISION_AGREEMENT:
        return Verdict(
            False,
            f"same tag decisions on {agreement:.2%} of {pairs} (image, tag) pairs, "
            f"below {TAG_DECISION_AGREEMENT:.0%}",
            figures,
        )
    if max_delta > TAG_MAX_DELTA:
        return Verdict(False, f"max |delta confidence| {max_delta:.3f} > {TAG_MAX_DELTA} ({worst})", figures)
    return Verdict(True, "", figures)


@dataclass(frozen=True)
class Detection:
    box: FloatArray  # x0, y0, x1, y1
    score: float


def box_iou(a: FloatArray, b: FloatArray) -> float:
    width = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    height = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = width * height
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def detection_agreement(
    fp32: Sequence[list[Detection]], variant: Sequence[list[Detection]], threshold: float
) -> Verdict:
    """Detections at or above `threshold` must pair up one to one with IoU >= 0.9. A detection whose
    score lies within TAG_MAX_DELTA of the threshold may be absent on the other side: the rule for
    confidences is the taggers' (a score may move by 0.03), so only such a move may flip it."""
    compared = matched = unmatched = 0
    min_iou = 1.0
    first_problem = ""
    for index, (ours, theirs) in enumerate(zip(fp32, variant, strict=True)):
        kept = [d for d in ours if d.score >= threshold]
        others = [d for d in theirs if d.score >= threshold]
        taken: set[int] = set()
        for detection in kept:
            best, best_iou = -1, 0.0
            for j, other in enumerate(others):
                if j not in taken and (iou := box_iou(detection.box, other.box)) > best_iou:
                    best, best_iou = j, iou
            compared += 1
            if best >= 0 and best_iou >= BOX_MIN_IOU:
                taken.add(best)
                matched += 1
                min_iou = min(min_iou, best_iou)
            elif detection.score - threshold > TAG_MAX_DELTA:
                unmatched += 1
                first_problem = first_problem or (
                    f"image {index}: a detection (score {detection.score:.3f}) has no counterpart "
                    f"with IoU >= {BOX_MIN_IOU} (best {best_iou:.3f})"
                )
        for j, other in enumerate(others):
            if j not in taken and other.score - threshold > TAG_MAX_DELTA:
                compared += 1
                unmatched += 1
                first_problem = (
                    first_problem or f"image {index}: an extra detection (score {other.score:.3f})"
                )
    figures = {
        "detections": float(compared),
        "matched": float(matched),
        "unmatched": float(unmatched),
        "min_iou": min_iou if matched else 0.0,
    }
    if not compared:
        return Verdict(False, "no detections on the calibration images to compare", figures)
    if unmatched:
        return Verdict(False, f"{unmatched} of {compared} detections differ; {first_problem}", figures)
    return Verdict(True, "", figures)


def embedding_agreement(fp32: FloatArray, variant: FloatArray) -> Verdict:
    """Rows are faces (any scale; normalised here). Identification is each face's nearest other
    calibration face: the answer must be the same face under both."""
    figures: dict[str, float] = {"faces": float(len(fp32))}
    if len(fp32) < 2:
        return Verdict(
            False, f"{len(fp32)} faces found in the calibration images; at least 2 needed", figures
        )
    a = fp32 / np.linalg.norm(fp32, axis=1, keepdims=True)
    b = variant / np.linalg.norm(variant, axis=1, keepdims=True)
    cosines = np.sum(a * b, axis=1)
    figures["min_cosine"] = float(cosines.min())
    nearest = [_nearest_others(m) for m in (a, b)]
    same = float(np.mean(nearest[0] == nearest[1]))
    figures["identification_agreement"] = same
    if cosines.min() < EMBEDDING_MIN_COSINE:
        face = int(cosines.argmin())
        return Verdict(
            False,
            f"cosine(fp32, variant) {cosines.min():.4f} < {EMBEDDING_MIN_COSINE} (face {face})",
            figures,
        )
    if same < 1.0:
        return Verdict(False, f"identification answers differ on {1 - same:.1%} of the faces", figures)
    return Verdict(True, "", figures)


def _nearest_others(normalised: FloatArray) -> npt.NDArray[np.intp]:
    similarity = normalised @ normalised.T
    np.fill_diagonal(similarity, -np.inf)
    return np.asarray(similarity.argmax(axis=1))
