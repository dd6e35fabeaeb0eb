"""The calibration set: real images turned into each model's inputs, and the guard rule that
judges a variant's outputs on them (agreement.py), by what the model does.

Images come from one folder, searched recursively (the shared test images for the shipped models,
a user's own folder for imported ones). Embedders are calibrated on real faces: the default face
profile's detector (fp32) finds them, and they are aligned as the face pipeline aligns them."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

import cv2
import numpy as np
import numpy.typing as npt

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.precision import openvino_runtime
from stash_vision.precision.agreement import (
    Detection,
    Verdict,
    detection_agreement,
    embedding_agreement,
    tag_agreement,
)
from stash_vision.server.arrays import BgrImage
from stash_vision.server.faces.alignment import ARCFACE_TEMPLATE_SIZE, align_face
from stash_vision.server.faces.detection import (
    DetectedFace,
    decode_scrfd,
    decode_yunet,
    to_source_coordinates,
)
from stash_vision.server.faces.profile import EmbedderSpec, FaceProfile, builtin_profiles_dir, load_profile
from stash_vision.server.preprocessing import fit, preprocess, to_tensor
from stash_vision.server.tagging.taggers.registry import build_taggers

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp"})
# Enough for a 1 % decision rule to mean something, few enough to derive in about a minute.
MAX_CALIBRATION_IMAGES = 96
# The decoders' own defaults (cv2.FaceDetectorYN's 0.6 for YuNet, InsightFace's 0.5 for SCRFD).
DETECTOR_THRESHOLDS = {"yunet": 0.6, "scrfd": 0.5}

Feed = dict[str, npt.NDArray[np.float32]]
Outputs = dict[str, npt.NDArray[Any]]


class CalibrationError(ValueError):
    """The calibration set cannot be built for a model; the message says what is missing."""


def calibration_images(folder: Path) -> list[BgrImage]:
    if not folder.is_dir():
        raise CalibrationError(f"calibration folder {folder} does not exist")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    decoded = (cv2.imread(str(p)) for p in paths[:MAX_CALIBRATION_IMAGES])
    images = [cast(BgrImage, image) for image in decoded if image is not None]
    if not images:
        raise CalibrationError(f"no readable images (jpg, png, webp, bmp) under {folder}")
    return images


def run_all(
    onnx_path: Path, feeds: Sequence[Feed], threads: int, openvino_precision: str = "", fp32_from: str = ""
) -> tuple[list[Outputs], float]:
    """Every feed through one ONNX Runtime session (or OpenVINO at `openvino_precision`, its head
    from `fp32_from` in fp32); the outputs and the seconds they took."""
    import onnxruntime as ort

    if openvino_precision:
        return openvino_runtime.run_each(onnx_path, feeds, threads, openvino_precision, fp32_from)

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    session.run(names, feeds[0])  # first-run allocations out of the timing
    started = time.perf_counter()
    results = [dict(zip(names, session.run(names, feed), strict=True)) for feed in feeds]
    return results, time.perf_counter() - started


class Role(ABC):
    """One model's calibration inputs and the rule its variants are judged by."""

    def __init__(self, feeds: list[Feed]) -> None:
        if not feeds:
            raise CalibrationError("the calibration images gave no inputs for this model")
        self.feeds = feeds

    @abstractmethod
    def verdict(self, fp32: Sequence[Outputs], variant: Sequence[Outputs]) -> Verdict: ...


def _image_feeds(entry: CatalogEntry, images: Sequence[BgrImage]) -> list[Feed]:
    return [{entry.input.tensor: preprocess(image, entry.input)[0][None]} for image in images]


class TaggerRole(Role):
    def __init__(self, entry: CatalogEntry, images: Sequence[BgrImage]) -> None:
        super().__init__(_image_feeds(entry, images))
        self.tagger = build_taggers([entry])[0]
        self.default_threshold = entry.tagger.threshold if entry.tagger else 0.5

    def _flat(self, outputs: Outputs) -> dict[str, float]:
        return {
            f"{category}/{tag}": p
            for category, tags in self.tagger.scores(outputs).items()
            for tag, p in tags.items()
        }

    def _thresholds(self, keys: Sequence[str]) -> dict[str, list[float]]:
        cuts: dict[str, list[float]] = {}
        for key in keys:
            category, _, tag = key.partition("/")
            settings = self.tagger.category_config.tag(category, tag)
            cuts[key] = sorted({self.default_threshold, *([settings.tag_threshold] if settings else [])})
        return cuts

    def verdict(self, fp32: Sequence[Outputs], variant: Sequence[Outputs]) -> Verdict:
        ours = [self._flat(o) for o in fp32]
        return tag_agreement(ours, [self._flat(o) for o in variant], self._thresholds(list(ours[0])))


def detector_kind(entry: CatalogEntry) -> str:
    outputs = {o.name for o in entry.triton_config.output}
    return "scrfd" if "score_8" in outputs else "yunet"


def _decode(
    kind: str, outputs: Outputs, size: tuple[int, int], threshold: float, nms_iou: float
) -> list[DetectedFace]:
    if kind == "scrfd":
        return decode_scrfd(outputs, size, threshold, nms_iou)
    return decode_yunet(outputs, size, threshold, nms_iou)


class DetectorRole(Role):
    def __init__(self, entry: CatalogEntry, images: Sequence[BgrImage]) -> None:
        super().__init__(_image_feeds(entry, images))
        self.kind = detector_kind(entry)
        self.size = (entry.input.width, entry.input.height)
        self.threshold = DETECTOR_THRESHOLDS[self.kind]

    def _detections(self, outputs: Outputs) -> list[Detection]:
        # Decoded a little below the threshold, so a score that moved across it is still seen.
        faces = _decode(self.kind, outputs, self.size, max(0.0, self.threshold - 0.1), 0.4)
        return [Detection(np.asarray(f.box, np.float64), f.score) for f in faces]

    def verdict(self, fp32: Sequence[Outputs], variant: Sequence[Outputs]) -> Verdict:
        return detection_agreement(
            [self._detections(o) for o in fp32], [self._detections(o) for o in variant], self.threshold
        )


def embedder_spec(entry: CatalogEntry) -> EmbedderSpec:
    for path in sorted(builtin_profiles_dir().glob("*.yaml")):
        for spec in load_profile(path.stem).embedders:
            if spec.model == entry.name:
                return spec
    raise CalibrationError(f"no face profile uses embedder {entry.name}: its input contract is unknown")


def find_faces(profile: FaceProfile, detector_weights: Path, images: Sequence[BgrImage]) -> list[BgrImage]:
    """Aligned crops of the faces the profile's detector (fp32) finds, as the face pipeline makes them."""
    detector = profile.detector
    feeds, geometries = [], []
    for image in images:
        tensor, geometry = preprocess(image, detector.input)
        feeds.append({detector.input.tensor: tensor[None]})
        geometries.append(geometry)
    outputs, _ = run_all(detector_weights, feeds, threads=2)
    crops: list[BgrImage] = []
    for image, geometry, result in zip(images, geometries, outputs, strict=True):
        size = (geometry.input_width, geometry.input_height)
        raw = _decode(detector.kind, result, size, detector.decode_threshold, detector.nms_iou)
        faces = to_source_coordinates(
            raw, geometry.scale_x, geometry.scale_y, geometry.offset_x, geometry.offset_y
        )
        crops += [
            align_face(image, f.landmarks, ARCFACE_TEMPLATE_SIZE)
            for f in faces
            if f.score >= profile.thresholds.min_face_confidence
        ]
    return crops


class EmbedderRole(Role):
    def __init__(
        self,
        entry: CatalogEntry,
        images: Sequence[BgrImage],
        models_dir: Path,
        catalog_entries: dict[str, CatalogEntry],
    ) -> None:
        self.spec = embedder_spec(entry)
        profile = load_profile("default")
        detector_entry = catalog_entries.get(profile.detector.model)
        weights = detector_entry.weights_path(models_dir) if detector_entry else None
        if weights is None or not weights.is_file():
            raise CalibrationError(
                f"calibrating {entry.name} needs faces, found by {profile.detector.model}: fetch it first "
                f"(stash-vision models fetch {profile.detector.model})"
            )
        crops = find_faces(profile, weights, images)
        if self.spec.flip_average:
            mirrored = [cast(BgrImage, np.ascontiguousarray(cv2.flip(crop, 1))) for crop in crops]
            crops = [view for pair in zip(crops, mirrored, strict=True) for view in pair]
        tensor = self.spec.input.tensor
        super().__init__(
            [{tensor: to_tensor(fit(crop, self.spec.input)[0], self.spec.input)[None]} for crop in crops]
        )

    def _embeddings(self, outputs: Sequence[Outputs]) -> npt.NDArray[np.float64]:
        rows = np.concatenate([np.asarray(o[self.spec.output], np.float64).reshape(1, -1) for o in outputs])
        if self.spec.flip_average:
            rows = (rows[0::2] + rows[1::2]) / 2.0
        return np.asarray(rows, np.float64)

    def verdict(self, fp32: Sequence[Outputs], variant: Sequence[Outputs]) -> Verdict:
        return embedding_agreement(self._embeddings(fp32), self._embeddings(variant))


def role_for(
    entry: CatalogEntry,
    images: Sequence[BgrImage],
    models_dir: Path,
    catalog_entries: dict[str, CatalogEntry],
) -> Role:
    if entry.tagger is not None:
        return TaggerRole(entry, images)
    if entry.task == "face-detection":
        return DetectorRole(entry, images)
    if entry.task == "face-embedding":
        return EmbedderRole(entry, images, models_dir, catalog_entries)
    raise CalibrationError(f"no accuracy guard for a {entry.task} model: it stays fp32")
