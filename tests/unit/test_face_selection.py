"""Choosing a performer's faces, on real photos embedded with the default profile's real models
(in-process): a photo of another person planted in three performers' sets is rejected 3/3 and the
true photos are kept; the same photo twice is a near-duplicate; farthest-point selection keeps the
most varied faces; the embedding cache returns faces bit for bit by content and recipe."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from bench.in_process import OrtSession
from stash_vision.server.faces.enrolment.embedding_cache import EmbeddingCache, content_hash, recipe_hash
from stash_vision.server.faces.enrolment.selection import (
    NEAR_DUPLICATE,
    OUTLIER,
    OVER_LIMIT,
    Candidate,
    fused_distances,
    select_faces,
)
from stash_vision.server.faces.pipeline import EmbeddedFace
from stash_vision.server.faces.profile import load_profile
from stash_vision.server.media.images import ImageLimits, decode_image
from stash_vision.server.workers import CpuPool
from tests.conftest import shared_file
from tests.unit.test_face_pipeline import default_files, default_pipeline  # noqa: F401 (fixture)

FACES = "testdata/faces/deepface"
PROFILE = load_profile("default")
WEIGHTS = PROFILE.weights()


def groups() -> dict[str, list[str]]:
    found = {}
    for line in shared_file(f"{FACES}/identity_groups.txt").read_text().splitlines():
        name, _, files = line.partition(":")
        if files.split():
            found[name.strip()] = files.split()
    return found


@pytest.fixture(scope="module")
def embedded(default_files: dict[str, Path]) -> dict[str, EmbeddedFace]:  # noqa: F811
    """The largest face of every grouped photo."""

    async def run() -> dict[str, EmbeddedFace]:
        pipeline = default_pipeline(OrtSession(default_files, threads=2), CpuPool(2))
        faces = {}
        for files in groups().values():
            for name in files:
                image = decode_image(shared_file(f"{FACES}/{name}").read_bytes(), ImageLimits(10**8, 1 << 28))
                found, _ = await pipeline.detect(image)
                faces[name] = (await pipeline.embed(image, found[:1]))[0]
        return faces

    return asyncio.run(run())


def candidates(names: list[str], faces: dict[str, EmbeddedFace]) -> list[Candidate]:
    return [Candidate(name, faces[name].vectors, faces[name].face.confidence) for name in names]


def test_a_planted_photo_of_someone_else_is_rejected_and_the_true_ones_kept(
    embedded: dict[str, EmbeddedFace],
) -> None:
    sets = groups()
    # Three performers (8, 3 and 2 true photos), each with a photo of another performer planted.
    planted = {"group00": sets["group01"][0], "group01": sets["group02"][0], "group02": sets["group00"][0]}
    rejected_intruders, true_total, true_kept = 0, 0, 0
    for performer, intruder in planted.items():
        selection = select_faces(
            candidates([*sets[performer], intruder], embedded),
            WEIGHTS,
            max_faces=20,
            same_person_distance=PROFILE.thresholds.max_distance,
            duplicate_distance=PROFILE.enrollment.duplicate_distance,
        )
        reasons = {c.key: reason for c, reason in selection.rejected}
        rejected_intruders += reasons.get(intruder) == OUTLIER
        true_total += len(sets[performer])
        true_kept += sum(1 for c in selection.kept if c.key in sets[performer])
    assert rejected_intruders == 3
    assert true_kept >= 0.95 * true_total, (true_kept, true_total)


def test_the_same_photo_twice_is_a_near_duplicate(embedded: dict[str, EmbeddedFace]) -> None:
    names = groups()["group00"][:4]
    twice = [*candidates(names, embedded), Candidate("copy", embedded[names[0]].vectors, 0.1)]
    selection = select_faces(twice, WEIGHTS, max_faces=20, same_person_distance=0.57, duplicate_distance=0.05)
    assert [(c.key, r) for c, r in selection.rejected] == [("copy", NEAR_DUPLICATE)]


def test_farthest_point_selection_keeps_the_most_varied_faces(embedded: dict[str, EmbeddedFace]) -> None:
    pool = candidates(groups()["group00"], embedded)
    selection = select_faces(pool, WEIGHTS, max_faces=3, same_person_distance=0.57, duplicate_distance=0.05)
    assert len(selection.kept) == 3 and selection.rejected_by_reason() == {OVER_LIMIT: len(pool) - 3}
    best_first = max(pool, key=lambda c: c.quality)
    assert selection.kept[0] is best_first

    def spread(chosen: list[Candidate]) -> float:
        d = fused_distances(chosen, WEIGHTS)
        return float(d[np.triu_indices(len(chosen), 1)].min())

    # Farther apart than the first three by quality.
    by_quality = sorted(pool, key=lambda c: -c.quality)[:3]
    assert spread(selection.kept) >= spread(by_quality)


def test_fewer_than_three_faces_are_never_outliers(embedded: dict[str, EmbeddedFace]) -> None:
    sets = groups()
    pair = candidates([sets["group00"][0], sets["group01"][0]], embedded)  # two different people
    selection = select_faces(pair, WEIGHTS, max_faces=5, same_person_distance=0.57, duplicate_distance=0.05)
    assert len(selection.kept) == 2 and not selection.rejected


def test_embedding_cache_by_content_and_recipe(tmp_path: Path, embedded: dict[str, EmbeddedFace]) -> None:
    cache = EmbeddingCache(tmp_path / "embedding_cache" / "embeddings.db")
    data = shared_file(f"{FACES}/img1.jpg").read_bytes()
    key, recipe = content_hash(data), recipe_hash(PROFILE)
    assert cache.get(key, recipe) is None
    cache.put(key, recipe, [embedded["img1.jpg"]])
    cache.close()
    reopened = EmbeddingCache(tmp_path / "embedding_cache" / "embeddings.db")
    [face] = reopened.get(key, recipe) or []
    assert all(np.array_equal(face.vectors[n], embedded["img1.jpg"].vectors[n]) for n in face.vectors)
    assert reopened.get(key, recipe_hash(load_profile("stash-sense"))) is None, "another recipe"
    assert reopened.get(content_hash(data + b"\0"), recipe) is None, "other bytes"
    assert reopened.count() == 1
