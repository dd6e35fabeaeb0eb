"""From index look-ups to answers: per-row fusion of embedders, one candidate list per face with
each performer once, one performer per face within an image or frame, the relative gallery vote,
and clustering of a video's faces into people. Pure functions over plain data: no I/O."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np
import numpy.typing as npt

from stash_vision.server.faces.index.records import PerformerRecord

Vector = npt.NDArray[np.float32]
# Per embedder: (row ids, cosine distances) for ONE query face.
EmbedderHits = Mapping[str, tuple[npt.NDArray[np.int64] | npt.NDArray[np.uint64], npt.NDArray[np.float32]]]


@dataclass(frozen=True)
class EmbedderDistance:
    embedder: str
    distance: float
    found: bool


@dataclass(frozen=True)
class RowCandidate:
    row: int
    distance: float
    per_embedder: tuple[EmbedderDistance, ...]


@dataclass(frozen=True)
class Match:
    performer: PerformerRecord
    distance: float
    per_embedder: tuple[EmbedderDistance, ...]

    @property
    def confidence(self) -> float:
        return float(min(1.0, max(0.0, 1.0 - self.distance)))


def fused_distance(
    a: Mapping[str, Vector], b: Mapping[str, Vector], weights: Mapping[str, float]
) -> tuple[float, tuple[EmbedderDistance, ...]]:
    """Fused cosine distance between two faces (L2-normalised vectors per embedder), and each
    embedder's own distance."""
    per = tuple(EmbedderDistance(name, 1.0 - float(a[name] @ b[name]), True) for name in weights)
    return sum(weights[d.embedder] * d.distance for d in per), per


def fuse_rows(
    hits: EmbedderHits, weights: Mapping[str, float], missing_distance: float
) -> list[RowCandidate]:
    """Stash Sense's per-row fusion: for each index row any embedder returned, the weighted mean of
    the embedders' distances, where an embedder that did not return the row counts
    `missing_distance`. Best (smallest) first."""
    distances: dict[int, dict[str, float]] = defaultdict(dict)
    for embedder, (ids, dists) in hits.items():
        for row, distance in zip(ids.tolist(), dists.tolist(), strict=True):
            # Voyager's cosine distance can dip a hair below 0 by rounding.
            distances[int(row)][embedder] = max(0.0, float(distance))
    candidates = []
    for row, found in distances.items():
        per = tuple(
            EmbedderDistance(name, found.get(name, missing_distance), name in found) for name in weights
        )
        fused = sum(weights[d.embedder] * d.distance for d in per)
        candidates.append(RowCandidate(row, fused, per))
    candidates.sort(key=lambda c: (c.distance, c.row))
    return candidates


def performer_matches(
    rows: Sequence[RowCandidate],
    performer_of_row: Mapping[int, PerformerRecord | None],
    max_distance: float,
    top_k: int,
) -> list[Match]:
    """Each performer once (its closest row), nothing beyond max_distance, best first, at most top_k."""
    best: dict[str, Match] = {}
    for candidate in rows:
        if candidate.distance > max_distance:
            break
        performer = performer_of_row.get(candidate.row)
        if performer is None or performer.id in best:
            continue
        best[performer.id] = Match(performer, candidate.distance, candidate.per_embedder)
        if len(best) >= top_k:
            break
    return list(best.values())


def assign_unique(candidates: Sequence[Sequence[Match]]) -> list[list[Match]]:
    """Within one image or frame a performer can be only one of the faces. Globally closest pairs
    are assigned first; each face's list then starts with its assigned performer, and performers
    assigned to another face are removed from it. A face whose candidates all went elsewhere is
    unknown (empty list)."""
    pairs = sorted(
        (
            (match.distance, face, match.performer.id)
            for face, matches in enumerate(candidates)
            for match in matches
        ),
        key=lambda pair: (pair[0], pair[1]),
    )
    owner: dict[str, int] = {}
    assigned: dict[int, str] = {}
    for _, face, performer in pairs:
        if face in assigned or performer in owner:
            continue
        owner[performer] = face
        assigned[face] = performer
    result: list[list[Match]] = []
    for face, matches in enumerate(candidates):
        mine = assigned.get(face)
        kept = [m for m in matches if owner.get(m.performer.id, face) == face]
        kept.sort(key=lambda m: (m.performer.id != mine, m.distance))
        result.append(kept if mine is not None else [])
    return result


@dataclass
class GalleryVote:
    best: Match
    distances: list[float] = field(default_factory=list)
    images: list[int] = field(default_factory=list)

    @property
    def average_distance(self) -> float:
        return float(np.mean(self.distances))


def gallery_vote(
    per_image_faces: Sequence[Sequence[Sequence[Match]]], min_vote_share: float
) -> tuple[list[GalleryVote], int]:
    """Top-1 of every face votes once per image for its performer. A performer is kept when the
    images voting for it are at least `min_vote_share` of the images that have a face: a relative
    vote, so a 1000-image gallery needs more than two stray look-alikes to name someone (Stash
    Sense's absolute "2 images" rule named ~280 wrong performers on such a gallery). Returns the
    kept performers (most images, then closest, first) and the number of images with faces."""
    votes: dict[str, GalleryVote] = {}
    images_with_faces = 0
    for image_index, faces in enumerate(per_image_faces):
        if not faces:
            continue
        images_with_faces += 1
        for matches in faces:
            if not matches:
                continue
            top = matches[0]
            vote = votes.setdefault(top.performer.id, GalleryVote(top))
            if top.distance < vote.best.distance:
                vote.best = top
            vote.distances.append(top.distance)
            if image_index not in vote.images:
                vote.images.append(image_index)
    # ceil with a little slack: 0.07 * 100 is 7.000000000000001 in floating point.
    needed = math.ceil(min_vote_share * images_with_faces - 1e-9)
    kept = [vote for vote in votes.values() if len(vote.images) >= needed]
    kept.sort(key=lambda v: (-len(v.images), v.best.distance))
    return kept, images_with_faces


# -- video --------------------------------------------------------------------------------------

T = TypeVar("T")


def fused_vector(vectors: Mapping[str, Vector], weights: Mapping[str, float]) -> Vector:
    """Concatenation of √w·v over the embedders: the dot product of two such vectors is the fused
    cosine similarity Σ w·cos, so one cosine distance clusters with every embedder's weight."""
    parts = [np.sqrt(weights[name]) * np.asarray(vectors[name], np.float32) for name in weights]
    fused: Vector = np.concatenate(parts).astype(np.float32)
    return fused


@dataclass
class Cluster(Generic[T]):
    members: list[T] = field(default_factory=list)
    vectors: list[Vector] = field(default_factory=list)

    def centre(self) -> Vector:
        mean = np.mean(np.stack(self.vectors), axis=0)
        norm = float(np.linalg.norm(mean))
        return np.asarray(mean / norm if norm > 0 else mean, np.float32)


def cluster_faces(items: Sequence[tuple[T, Vector]], max_distance: float) -> list[Cluster[T]]:
    """Greedy online clustering in input order: a face joins the nearest cluster centre when the
    cosine distance is below max_distance, else starts a cluster."""
    clusters: list[Cluster[T]] = []
    centres: list[Vector] = []
    for item, vector in items:
        unit = vector / max(float(np.linalg.norm(vector)), 1e-12)
        if centres:
            similarities = np.stack(centres) @ unit
            best = int(np.argmax(similarities))
            if 1.0 - float(similarities[best]) < max_distance:
                clusters[best].members.append(item)
                clusters[best].vectors.append(unit)
                centres[best] = clusters[best].centre()
                continue
        clusters.append(Cluster([item], [unit]))
        centres.append(unit)
    return clusters


@dataclass(frozen=True)
class PersonVerdict:
    best: Match | None
    alternatives: tuple[Match, ...]


def vote_person(face_matches: Sequence[tuple[int, Sequence[Match]]]) -> list[tuple[Match, float]]:
    """Candidates of one person (a cluster) from its faces' lists (frame index, matches): for each
    performer the closest distance and the distinct frames naming it; score = (1 - min distance) ·
    (1 + 0.1 · (frames - 1)), Stash Sense's frequency rule. Best first."""
    best: dict[str, Match] = {}
    frames: dict[str, set[int]] = defaultdict(set)
    for frame, matches in face_matches:
        for match in matches:
            pid = match.performer.id
            frames[pid].add(frame)
            if pid not in best or match.distance < best[pid].distance:
                best[pid] = match
    scored = [
        (match, (1.0 - match.distance) * (1.0 + 0.1 * (len(frames[pid]) - 1))) for pid, match in best.items()
    ]
    scored.sort(key=lambda pair: (-pair[1], pair[0].distance))
    return scored


def assign_people(
    candidates: Sequence[list[tuple[Match, float]]], sizes: Sequence[int]
) -> list[PersonVerdict]:
    """One performer per person: people are served largest first, each taking its best-scoring
    performer not yet taken."""
    taken: set[str] = set()
    verdicts: list[PersonVerdict | None] = [None] * len(candidates)
    for person in sorted(range(len(candidates)), key=lambda i: -sizes[i]):
        free = [match for match, _ in candidates[person] if match.performer.id not in taken]
        best = free[0] if free else None
        if best is not None:
            taken.add(best.performer.id)
        verdicts[person] = PersonVerdict(best, tuple(free[1:]))
    return [v if v is not None else PersonVerdict(None, ()) for v in verdicts]


def time_ranges(frames: Sequence[tuple[int, float]]) -> list[tuple[float, float]]:
    """(frame index, time) sightings -> ranges of consecutive sampled frames (cover image excluded)."""
    ordered = sorted({(index, t) for index, t in frames if index >= 0})
    ranges: list[tuple[float, float]] = []
    previous = None
    for index, t in ordered:
        if previous is not None and index == previous + 1:
            ranges[-1] = (ranges[-1][0], t)
        else:
            ranges.append((t, t))
        previous = index
    return ranges
