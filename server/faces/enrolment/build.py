"""Building a face-index version inside the server, from any sources, with the pipeline that will
query it.

Per image: its bytes' hash answers from the embedding cache, or the image is decoded, its faces
detected, the largest one checked against the profile's enrolment gates (size, detector
confidence, yaw) and embedded, and the answer cached — so a rebuild with unchanged inputs runs no
inference. A performer met in several sources (the same universal id) pools its faces; then
`selection.select_faces` drops near-duplicates and outliers and keeps the most varied faces. The
version is written to its own folder (`IndexWriter`, manifest last); whether it serves is the
caller's decision, so a failed or cancelled build leaves nothing but its log.

Statistics are kept per source: performers seen, images read, faces kept, rejections by reason."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stash_vision.server.errors import StashVisionError
from stash_vision.server.faces.index.records import PerformerRecord
from stash_vision.server.faces.index.writer import IndexWriter
from stash_vision.server.faces.pipeline import EmbeddedFace, FaceGates, FacePipeline
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.faces.sources.base import FaceSource, SourceImage
from stash_vision.server.media.images import ImageLimits, decode_image
from stash_vision.server.workers import CpuPool

from .embedding_cache import EmbeddingCache, content_hash, recipe_hash
from .selection import Candidate, select_faces

log = logging.getLogger("stash_vision.server.faces")

_IMAGES_IN_FLIGHT = 8


@dataclass
class SourceStats:
    performers: int = 0
    images: int = 0
    faces_kept: int = 0
    cached: int = 0  # images answered by the embedding cache (no inference)
    rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "performers": self.performers,
            "images": self.images,
            "faces_kept": self.faces_kept,
            "cached": self.cached,
            "rejected": dict(self.rejected),
        }


@dataclass
class BuildResult:
    version: str
    folder: Path
    performers: int
    faces: int
    per_source: dict[str, SourceStats]
    performers_without_faces: list[str]


@dataclass
class _Pooled:
    record: PerformerRecord
    candidates: list[tuple[Candidate, EmbeddedFace, str]] = field(default_factory=list)  # + source name


class Enroller:
    """One image to its enrolled face (or the reason there is none), through the cache."""

    def __init__(
        self,
        pipeline: FacePipeline,
        profile: FaceProfile,
        cache: EmbeddingCache,
        pool: CpuPool,
        limits: ImageLimits,
    ) -> None:
        self.pipeline = pipeline
        self.profile = profile
        self.cache = cache
        self.pool = pool
        self.limits = limits
        self.recipe = recipe_hash(profile)
        gates = profile.enrollment
        self.gates = FaceGates(gates.min_face_confidence, gates.min_face_size)

    async def face(self, image: SourceImage) -> tuple[EmbeddedFace | None, str, bool]:
        """(face, rejection reason, answered from the cache)."""
        data = await image.read()
        key = content_hash(data)
        cached = await asyncio.to_thread(self.cache.get, key, self.recipe)
        if cached is not None:
            return (cached[0], "", True) if cached else (None, "no usable face", True)
        try:
            decoded = await self.pool.run(decode_image, data, self.limits)
        except StashVisionError as error:
            return None, f"not an image ({type(error).__name__})", False
        faces, _ = await self.pipeline.detect(decoded, self.gates)
        faces = [f for f in faces[:1] if abs(f.yaw_degrees) <= self.profile.enrollment.max_abs_yaw_degrees]
        embedded = await self.pipeline.embed(decoded, faces) if faces else []
        await asyncio.to_thread(self.cache.put, key, self.recipe, embedded)
        return (embedded[0], "", False) if embedded else (None, "no usable face", False)


async def build_version(
    sources: Sequence[FaceSource],
    enroller: Enroller,
    indexes_dir: Path,
    *,
    m: int,
    ef_construction: int,
    max_faces_per_performer: int,
    progress: Callable[[str, SourceStats], None] = lambda _name, _stats: None,
) -> BuildResult:
    profile = enroller.profile
    pooled: dict[str, _Pooled] = {}
    per_source: dict[str, SourceStats] = {}
    slots = asyncio.Semaphore(_IMAGES_IN_FLIGHT)

    async def one(image: SourceImage, stats: SourceStats) -> tuple[EmbeddedFace | None, SourceImage]:
        async with slots:
            try:
                face, reason, cached = await enroller.face(image)
            except StashVisionError as error:
                stats.rejected[f"unreadable ({type(error).__name__})"] += 1
                log.info("build: skip %s: %s", image.key, error)
                return None, image
        stats.images += 1
        stats.cached += cached
        if face is None:
            stats.rejected[reason] += 1
        return face, image

    for source in sources:
        stats = per_source.setdefault(source.name, SourceStats())
        async for performer in source.performers():
            stats.performers += 1
            entry = pooled.setdefault(performer.record.id, _Pooled(performer.record))
            for face, image in await asyncio.gather(*(one(i, stats) for i in performer.images)):
                if face is not None:
                    quality = face.face.confidence * min(1.0, face.face.width * face.face.height / 10000.0)
                    entry.candidates.append((Candidate(image.key, face.vectors, quality), face, source.name))
            progress(source.name, stats)

    writer = IndexWriter(
        {e.name: e.dimensions for e in profile.embedders}, profile.recipe(), m, ef_construction
    )
    without: list[str] = []
    faces_total = 0
    for entry in pooled.values():
        selection = select_faces(
            [c for c, _, _ in entry.candidates],
            profile.weights(),
            max_faces=max_faces_per_performer,
            same_person_distance=profile.thresholds.max_distance,
            duplicate_distance=profile.enrollment.duplicate_distance,
        )
        origin = {id(c): (face, name) for c, face, name in entry.candidates}
        for candidate, reason in selection.rejected:
            per_source[origin[id(candidate)][1]].rejected[reason] += 1
        if not selection.kept:
            without.append(entry.record.name)
            continue
        writer.add_performer(entry.record)
        for candidate in selection.kept:
            face, name = origin[id(candidate)]
            per_source[name].faces_kept += 1
            writer.add_face(
                entry.record.id,
                candidate.vectors,
                source=candidate.key,
                quality=candidate.quality,
                yaw=face.face.yaw_degrees,
                detection_score=face.face.confidence,
            )
            faces_total += 1
    if faces_total == 0:
        raise StashVisionError("no face passed the enrolment gates in any source; nothing was written")
    version, folder = _new_version(indexes_dir / profile.name)
    await asyncio.to_thread(writer.write, folder, version, [s.name for s in sources], profile.detector.model)
    return BuildResult(version, folder, writer.performer_count, faces_total, per_source, without)


def _new_version(root: Path) -> tuple[str, Path]:
    """A version named by the time it was built; a second build in the same second gets a suffix."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y.%m.%d-%H%M%S")
    version, n = stamp, 1
    while (root / version).exists():
        n += 1
        version = f"{stamp}-{n}"
    return version, root / version
