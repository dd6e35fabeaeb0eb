"""Detect, align and embed faces with a profile's models in Triton.

Pixel work (letterbox, alignment, per-embedder tensors) and output decoding run on the CpuPool; every
model call is one Triton request, so faces of concurrent requests share Triton's dynamic batches.
All faces of one image go to each embedder as one batch (with their mirror images when the profile
flip-averages), chunked at the model's max_batch_size."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.server.arrays import BgrImage, FloatTensor
from stash_vision.server.faces.alignment import ARCFACE_TEMPLATE_SIZE, align_face
from stash_vision.server.faces.detection import (
    DetectedFace,
    decode_scrfd,
    decode_yunet,
    to_source_coordinates,
)
from stash_vision.server.faces.embedding import l2_normalize
from stash_vision.server.faces.profile import EmbedderSpec, FaceProfile, ProfileError
from stash_vision.server.metrics import STAGE_SECONDS
from stash_vision.server.preprocessing import Geometry, fit, preprocess, to_tensor
from stash_vision.server.triton_session import InferenceSession
from stash_vision.server.workers import CpuPool

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Face:
    """A detected face in source pixels: box (x1, y1, x2, y2) clipped to the image."""

    box: npt.NDArray[np.float32]
    confidence: float
    landmarks: npt.NDArray[np.float32]
    yaw_degrees: float

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def area(self) -> float:
        return self.width * self.height


@dataclass(frozen=True, eq=False)
class EmbeddedFace:
    face: Face
    # Embedder name -> L2-normalised vector.
    vectors: dict[str, Vector]


@dataclass(frozen=True)
class FaceGates:
    min_confidence: float
    min_face_size: int

    def passes(self, face: Face) -> bool:
        return face.confidence >= self.min_confidence and min(face.width, face.height) >= self.min_face_size


def estimate_yaw(landmarks: npt.ArrayLike) -> float:
    """Yaw in degrees from the nose's offset against the eyes' midpoint, relative to half the eye
    distance (Stash Sense's estimate): 0 frontal, about ±90 in profile."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    right_eye, left_eye, nose = points[0], points[1], points[2]
    half_eye_width = abs(left_eye[0] - right_eye[0]) / 2.0
    eye_centre_x = (left_eye[0] + right_eye[0]) / 2.0
    return math.degrees(math.atan2(nose[0] - eye_centre_x, max(half_eye_width, 1e-6)))


def check_profile(profile: FaceProfile, entries: Mapping[str, CatalogEntry]) -> None:
    """Fails with a message naming what to fix when the served models cannot run this profile."""
    for model in profile.models:
        if model not in entries:
            raise ProfileError(
                f"face profile {profile.name!r} needs model {model!r}, which is not served; "
                f"fetch it (`stash-vision models fetch {model}`) and make sure STASH_VISION_MODELS "
                "is empty or lists it"
            )
    specs: list[tuple[str, str, list[str]]] = [(profile.detector.model, profile.detector.input.tensor, [])]
    specs += [(e.model, e.input.tensor, [e.output]) for e in profile.embedders]
    for model, tensor, outputs in specs:
        config = entries[model].triton_config
        if tensor not in {t.name for t in config.input}:
            raise ProfileError(f"face profile {profile.name!r}: model {model} has no input {tensor!r}")
        missing = [name for name in outputs if name not in {t.name for t in config.output}]
        if missing:
            raise ProfileError(f"face profile {profile.name!r}: model {model} has no output {missing[0]!r}")


class FacePipeline:
    def __init__(
        self,
        profile: FaceProfile,
        entries: Mapping[str, CatalogEntry],
        session: InferenceSession,
        pool: CpuPool,
        timeout_s: float | None = None,
    ) -> None:
        check_profile(profile, entries)
        self.profile = profile
        self.session = session
        self.pool = pool
        self.timeout_s = timeout_s
        detector_config = entries[profile.detector.model].triton_config
        self._detector_outputs = [tensor.name for tensor in detector_config.output]
        self._max_batch = {
            embedder.name: max(1, entries[embedder.model].triton_config.max_batch_size or 1)
            for embedder in profile.embedders
        }

    def default_gates(self) -> FaceGates:
        thresholds = self.profile.thresholds
        return FaceGates(thresholds.min_face_confidence, thresholds.min_face_size)

    # -- detection -------------------------------------------------------------------------------

    async def detect(self, image: BgrImage, gates: FaceGates | None = None) -> tuple[list[Face], int]:
        """Faces passing the gates, largest first, and how many were found before the gates."""
        gates = gates or self.default_gates()
        detector = self.profile.detector
        started = time.perf_counter()
        tensor, geometry = await self.pool.run(preprocess, image, detector.input)
        triton_started = time.perf_counter()
        outputs = await self.session.infer(
            detector.model,
            {detector.input.tensor: tensor[np.newaxis]},
            self._detector_outputs,
            self.timeout_s,
        )
        decoded_started = time.perf_counter()
        faces = await self.pool.run(self._decode, outputs, geometry, image.shape[1], image.shape[0])
        STAGE_SECONDS.labels("face_detect_preprocess").observe(triton_started - started)
        STAGE_SECONDS.labels("face_detect_triton").observe(decoded_started - triton_started)
        STAGE_SECONDS.labels("face_detect_decode").observe(time.perf_counter() - decoded_started)
        kept = [face for face in faces if gates.passes(face)]
        kept.sort(key=lambda face: face.area, reverse=True)
        return kept, len(faces)

    def _decode(
        self, outputs: Mapping[str, npt.ArrayLike], geometry: Geometry, width: int, height: int
    ) -> list[Face]:
        detector = self.profile.detector
        size = (geometry.input_width, geometry.input_height)
        if detector.kind == "scrfd":
            raw = decode_scrfd(outputs, size, detector.decode_threshold, detector.nms_iou)
        else:
            raw = decode_yunet(outputs, size, detector.decode_threshold, detector.nms_iou)
        mapped = to_source_coordinates(
            raw, geometry.scale_x, geometry.scale_y, geometry.offset_x, geometry.offset_y
        )
        return [_clipped(face, width, height) for face in mapped]

    # -- embedding -------------------------------------------------------------------------------

    async def embed(self, image: BgrImage, faces: Sequence[Face]) -> list[EmbeddedFace]:
        if not faces:
            return []
        started = time.perf_counter()
        crops = await self.pool.run(_align_all, image, [face.landmarks for face in faces])
        STAGE_SECONDS.labels("face_align").observe(time.perf_counter() - started)
        per_embedder = await asyncio.gather(
            *(self._embed_crops(spec, crops) for spec in self.profile.embedders)
        )
        return [
            EmbeddedFace(
                face,
                {
                    spec.name: vectors[i]
                    for spec, vectors in zip(self.profile.embedders, per_embedder, strict=True)
                },
            )
            for i, face in enumerate(faces)
        ]

    async def _embed_crops(self, spec: EmbedderSpec, crops: list[BgrImage]) -> npt.NDArray[np.float32]:
        started = time.perf_counter()
        batch = await self.pool.run(_embedder_batch, spec, crops)
        STAGE_SECONDS.labels("face_embed_preprocess").observe(time.perf_counter() - started)
        chunk = self._max_batch[spec.name]
        triton_started = time.perf_counter()
        results = await asyncio.gather(
            *(
                self.session.infer(
                    spec.model, {spec.input.tensor: batch[i : i + chunk]}, [spec.output], self.timeout_s
                )
                for i in range(0, batch.shape[0], chunk)
            )
        )
        STAGE_SECONDS.labels("face_embed_triton").observe(time.perf_counter() - triton_started)
        raw = np.concatenate([np.asarray(r[spec.output], np.float32) for r in results], axis=0)
        if raw.ndim != 2 or raw.shape[1] != spec.dimensions:
            raise ProfileError(
                f"embedder {spec.name} ({spec.model}) returned shape {raw.shape}; the profile expects "
                f"{spec.dimensions} dimensions"
            )
        if spec.flip_average:
            count = len(crops)
            raw = (raw[:count] + raw[count:]) / 2.0
        return np.asarray(l2_normalize(raw), np.float32)


def _clipped(face: DetectedFace, width: int, height: int) -> Face:
    box = face.box.copy()
    box[[0, 2]] = np.clip(box[[0, 2]], 0, width)
    box[[1, 3]] = np.clip(box[[1, 3]], 0, height)
    landmarks = np.array(face.landmarks, np.float32)
    return Face(box, face.score, landmarks, estimate_yaw(landmarks))


def _align_all(image: BgrImage, landmarks: list[npt.NDArray[np.float32]]) -> list[BgrImage]:
    return [align_face(image, points, ARCFACE_TEMPLATE_SIZE) for points in landmarks]


def _embedder_batch(spec: EmbedderSpec, crops: list[BgrImage]) -> FloatTensor:
    """The embedder's input batch: every crop, then every mirrored crop when flip-averaging."""
    images = list(crops)
    if spec.flip_average:
        images += [np.ascontiguousarray(cv2.flip(crop, 1)) for crop in crops]
    tensors = [to_tensor(fit(crop, spec.input)[0], spec.input) for crop in images]
    return np.stack(tensors).astype(np.float32)
