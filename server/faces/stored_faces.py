"""Detected and embedded faces in the result store: an identify or compare call for an unchanged
image with the same profile recipe and gates skips decoding, detection and embedding; matching
runs again, against whatever index is current, so a new index version never serves stale names.

Vectors are kept as base64 of their float32 bytes (a 512-d vector is 2.7 kB, not 10 kB of JSON
digits) and come back bit for bit."""

from __future__ import annotations

import asyncio
import base64
from typing import Any

import numpy as np

from stash_vision.server.errors import StashVisionError
from stash_vision.server.faces.pipeline import EmbeddedFace, Face, FaceGates
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.image_source import ImageLoader, ImagePath, ImageRef
from stash_vision.server.results.cache import ResultCache

STORED_KIND = "face-embeddings"


def _array(values: list[float]) -> np.ndarray[Any, np.dtype[np.float32]]:
    return np.asarray(values, np.float32)


def encode(faces: list[EmbeddedFace]) -> dict[str, Any]:
    return {
        "faces": [
            {
                "box": [float(v) for v in f.face.box],
                "confidence": f.face.confidence,
                "landmarks": f.face.landmarks.astype(np.float32).tolist(),
                "yaw": f.face.yaw_degrees,
                "vectors": {
                    name: base64.b64encode(np.ascontiguousarray(v, np.float32).tobytes()).decode("ascii")
                    for name, v in f.vectors.items()
                },
            }
            for f in faces
        ]
    }


def decode(value: dict[str, Any]) -> list[EmbeddedFace]:
    return [
        EmbeddedFace(
            Face(_array(f["box"]), float(f["confidence"]), _array(f["landmarks"]), float(f["yaw"])),
            {name: np.frombuffer(base64.b64decode(v), np.float32).copy() for name, v in f["vectors"].items()},
        )
        for f in value["faces"]
    ]


class StoredFaces:
    def __init__(self, results: ResultCache, loader: ImageLoader, profile: FaceProfile) -> None:
        self.results = results
        self.loader = loader
        self.profile = profile

    async def get(
        self, ref: ImageRef, gates: FaceGates, largest_only: bool
    ) -> tuple[str, list[EmbeddedFace] | None]:
        """The store key of this image's faces and the kept faces, or None."""
        if not isinstance(ref, ImagePath) or not self.results.enabled:
            return "", None
        try:
            location = await asyncio.to_thread(self.loader.paths.locate, ref.path)
        except StashVisionError:
            return "", None  # loading the image reports the problem
        producer = {
            "member": location.member,
            "recipe": self.profile.recipe(),
            "gates": [gates.min_confidence, gates.min_face_size],
            "largest_only": largest_only,
        }
        key, kept = await self.results.get(STORED_KIND, location.path, producer)
        return key, decode(kept) if kept is not None else None

    async def put(self, key: str, faces: list[EmbeddedFace]) -> None:
        await self.results.put(key, STORED_KIND, encode(faces))
