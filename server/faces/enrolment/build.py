"""Building a face-index version inside the server, from any sources, with the pipeline that will
query it.

Per image: its bytes' hash answers from the embedding cache, or the image is decoded, its faces
detected, the largest one checked against the profile's enrolment gates (size, detector
confidence, yaw) and embedded, and the answer cached — so a rebuild with unchanged inputs runs no
inference. A performer met in several sources (the same universal id) pools its faces; then
`selection.select_faces` drops near-duplicates and outliers and keeps the most varied faces. The
version is written to its own folder (`IndexWriter`, manifest last); whether it serves is the
caller's decision, so a failed or cancelled build leaves nothing but its log.

A source that can skip what did not change (a stash-box asked only for performers updated since
the parent version's watermark, see `incremental`) hands the rest back through `carry_over`: those
performers' faces come unchanged from the parent version, pool with the other sources' faces, and
are kept as they are when nothing new joins them (they were selected with the same settings).

Statistics are kept per source: performers seen, images read, faces kept, rejections by reason."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
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
    carried: int = 0  # performers carried over from the parent version (not fetched)
    rejected: Counter[str] = field(default_factory=Counter)

    def as_dict(self) -> dict[str, Any]:
        return {
            "performers": self.performers,
            "images": self.images,
            "faces_kept": self.faces_kept,
            "cached": self.cached,
            "carried": self.carried,
            "rejected": dict(self.rejected),
        }


@dataclass(frozen=True)
class KnownPerformer:
    """A performer as one source gave it to a build: its record and the keys of its images (what
    a later build needs to tell that source's faces of the performer from other sources')."""

    record: PerformerRecord
    images: tuple[str, ...]


@dataclass(frozen=True)
class PooledFace:
    """A candidate face with what the index stores about it; `carried` when it comes unchanged
    from the parent version instead of from an image read in this build."""

    candidate: Candidate
    yaw: float
    detection_score: float
    source: str
    carried: bool = False


@dataclass(frozen=True)
class CarriedPerformer:
    """A performer a source did not fetch again (unchanged since the parent version), with the
    faces the parent version kept for it from that source."""

    known: KnownPerformer
    faces: tuple[PooledFace, ...]


@dataclass
class BuildResult:
    version: str
    folder: Path
    performers: int
    faces: int
    per_source: dict[str, SourceStats]
    performers_without_faces: list[str]
    # source name -> universal id -> the performer as that source gave it (carried ones included)
    seen: dict[str, dict[str, KnownPerformer]] = field(default_factory=dict)


@dataclass
class _Pooled:
    record: PerformerRecord
    faces: list[PooledFace] = field(default_factory=list)


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
    carry_over: Callable[[FaceSource], Awaitable[Iterable[CarriedPerformer]]] | None = None,
) -> BuildResult:
    """`carry_over(source)` is asked after the source's walk (so it knows what the walk fetched)
    for the performers it skipped, whose faces the parent version supplies."""
    profile = enroller.profile
    pooled: dict[str, _Pooled] = {}
    per_source: dict[str, SourceStats] = {}
    seen: dict[str, dict[str, KnownPerformer]] = {}
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
        known = seen.setdefault(source.name, {})
        async for performer in source.performers():
            stats.performers += 1
            known[performer.record.id] = KnownPerformer(
                performer.record, tuple(i.key for i in performer.images)
            )
            entry = pooled.setdefault(performer.record.id, _Pooled(performer.record))
            for face, image in await asyncio.gather(*(one(i, stats) for i in performer.images)):
                if face is not None:
                    quality = face.face.confidence * min(1.0, face.face.width * face.face.height / 10000.0)
                    candidate = Candidate(image.key, face.vectors, quality)
                    entry.faces.append(
                        PooledFace(candidate, face.face.yaw_degrees, face.face.confidence, source.name)
                    )
            progress(source.name, stats)
        for carried in await carry_over(source) if carry_over else ():
            if carried.known.record.id in known:
                continue  # fetched again in this walk: the fresh faces replace the parent's
            stats.carried += 1
            known[carried.known.record.id] = carried.known
            pooled.setdefault(carried.known.record.id, _Pooled(carried.known.record)).faces.extend(
                carried.faces
            )

    writer = IndexWriter(
        {e.name: e.dimensions for e in profile.embedders}, profile.recipe(), m, ef_construction
    )
    without: list[str] = []
    faces_total = 0
    for entry in pooled.values():
        kept = _select(entry.faces, profile, max_faces_per_performer, per_source)
        if not kept:
            without.append(entry.record.name)
            continue
        writer.add_performer(entry.record)
        for chosen in kept:
            per_source[chosen.source].faces_kept += 1
            writer.add_face(
                entry.record.id,
                chosen.candidate.vectors,
                source=chosen.candidate.key,
                quality=chosen.candidate.quality,
                yaw=chosen.yaw,
                detection_score=chosen.detection_score,
            )
            faces_total += 1
    if faces_total == 0:
        raise StashVisionError("no face passed the enrolment gates in any source; nothing was written")
    version, folder = _new_version(indexes_dir / profile.name)
    await asyncio.to_thread(writer.write, folder, version, [s.name for s in sources], profile.detector.model)
    return BuildResult(version, folder, writer.performer_count, faces_total, per_source, without, seen)


def _select(
    faces: list[PooledFace], profile: FaceProfile, max_faces: int, per_source: dict[str, SourceStats]
) -> list[PooledFace]:
    """The faces a performer keeps. Faces all carried from the parent version were selected there
    with the same settings and stay as they are; anything new joining them is selected afresh."""
    if all(face.carried for face in faces):
        return faces
    selection = select_faces(
        [face.candidate for face in faces],
        profile.weights(),
        max_faces=max_faces,
        same_person_distance=profile.thresholds.max_distance,
        duplicate_distance=profile.enrollment.duplicate_distance,
    )
    origin = {id(face.candidate): face for face in faces}
    for candidate, reason in selection.rejected:
        per_source[origin[id(candidate)].source].rejected[reason] += 1
    return [origin[id(candidate)] for candidate in selection.kept]


def _new_version(root: Path) -> tuple[str, Path]:
    """A version named by the time it was built; a second build in the same second gets a suffix."""
    stamp = dt.datetime.now(dt.UTC).strftime("%Y.%m.%d-%H%M%S")
    version, n = stamp, 1
    while (root / version).exists():
        n += 1
        version = f"{stamp}-{n}"
    return version, root / version
