"""Choosing a performer's faces for the index, instead of taking the first N.

An index keeps its mistakes: a co-star in a "solo" image or the wrong person in a stash-box gallery
answers every later query with the wrong name. So a performer's candidate faces go through three
steps, each rejection reported by reason:

1. **Near-duplicates** (`near duplicate`): the same photo twice, resized or re-encoded, adds
   nothing. Candidates are taken best first (detector confidence × size); one within the profile's
   `duplicate_distance` of a kept face is dropped.
2. **Outliers** (`outlier`): a face that is not the same person as at least half of the
   performer's other faces, judged by the profile's same-person threshold
   (`thresholds.max_distance`). True photos are the same person as nearly all others; an intruder
   as almost none. A vote, not an average distance, so one intruder cannot drag a true photo out
   with it (with three faces, a true photo matches one of its two others: half, and stays). With
   fewer than three faces there is no majority to judge by, and nothing is rejected as an outlier.
3. **Variety** (`over limit`): up to `max_faces`, by farthest-point selection over the fused
   distance — start with the best face, then repeatedly add the face farthest from everything
   kept — so the kept faces cover the most pose, lighting and age variety instead of ten frames of
   one scene.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from stash_vision.server.faces.pipeline import Vector

NEAR_DUPLICATE = "near duplicate"
OUTLIER = "outlier"
OVER_LIMIT = "over limit"
_MIN_FOR_OUTLIERS = 3

Distances = npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class Candidate:
    """One face of one performer, embedded with the profile's embedders (L2-normalised)."""

    key: str  # where it came from (source and image), for reports
    vectors: Mapping[str, Vector]
    quality: float = 1.0  # higher is better: detector confidence × size, as the source sees fit


@dataclass
class Selection:
    kept: list[Candidate] = field(default_factory=list)
    rejected: list[tuple[Candidate, str]] = field(default_factory=list)

    def rejected_by_reason(self) -> Counter[str]:
        return Counter(reason for _, reason in self.rejected)


def fused_distances(candidates: Sequence[Candidate], weights: Mapping[str, float]) -> Distances:
    """The matrix of fused cosine distances (weights as in matching.fused_distance)."""
    n = len(candidates)
    distances = np.zeros((n, n), np.float64)
    for name, weight in weights.items():
        matrix = np.stack([np.asarray(c.vectors[name], np.float64) for c in candidates])
        distances += weight * (1.0 - matrix @ matrix.T)
    np.fill_diagonal(distances, 0.0)
    return np.clip(distances, 0.0, 2.0)


def select_faces(
    candidates: Sequence[Candidate],
    weights: Mapping[str, float],
    *,
    max_faces: int,
    same_person_distance: float,
    duplicate_distance: float,
) -> Selection:
    if max_faces < 1:
        raise ValueError(f"max_faces must be at least 1, got {max_faces}")
    selection = Selection()
    if not candidates:
        return selection
    ordered = sorted(candidates, key=lambda c: -c.quality)
    distances = fused_distances(ordered, weights)

    unique: list[int] = []
    for i in range(len(ordered)):
        if any(distances[i, j] < duplicate_distance for j in unique):
            selection.rejected.append((ordered[i], NEAR_DUPLICATE))
        else:
            unique.append(i)

    consistent = unique
    if len(unique) >= _MIN_FOR_OUTLIERS:
        consistent = []
        for i in unique:
            same = sum(1 for j in unique if j != i and distances[i, j] <= same_person_distance)
            if 2 * same < len(unique) - 1:
                selection.rejected.append((ordered[i], OUTLIER))
            else:
                consistent.append(i)

    chosen = _farthest_points(distances, consistent, max_faces)
    selection.kept = [ordered[i] for i in chosen]
    left = set(consistent) - set(chosen)
    selection.rejected.extend((ordered[i], OVER_LIMIT) for i in sorted(left))
    return selection


def _farthest_points(distances: Distances, pool: list[int], count: int) -> list[int]:
    """`pool` is in quality order: the best face first, then each time the face farthest from
    everything chosen (ties: the better one)."""
    if not pool:
        return []
    chosen = [pool[0]]
    nearest = {i: distances[i, pool[0]] for i in pool[1:]}
    while nearest and len(chosen) < count:
        best = max(nearest, key=lambda i: (nearest[i], -pool.index(i)))
        chosen.append(best)
        del nearest[best]
        for i in nearest:
            nearest[i] = min(nearest[i], distances[i, best])
    return chosen
