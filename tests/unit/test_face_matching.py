"""Unit tests for stash_vision.server.faces.matching: per-row fusion, per-performer candidate lists,
one performer per face, the gallery vote, video clustering and time ranges.

Expected values are computed by hand in the comments next to each assertion."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest

from stash_vision.server.faces.index.records import PerformerRecord
from stash_vision.server.faces.matching import (
    EmbedderDistance,
    Match,
    RowCandidate,
    assign_people,
    assign_unique,
    cluster_faces,
    fuse_rows,
    fused_vector,
    gallery_vote,
    performer_matches,
    time_ranges,
    vote_person,
)

TOL = 1e-6

# --------------------------------------------------------------------------------------------- helpers


def performer(pid: str) -> PerformerRecord:
    return PerformerRecord(id=f"local:{pid}", name=pid.upper())


def match(pid: str, distance: float) -> Match:
    return Match(performer(pid), distance, ())


def hits(ids: list[int], distances: list[float]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    return np.array(ids, np.int64), np.array(distances, np.float32)


def ids_of(matches: list[Match]) -> list[str]:
    return [m.performer.id for m in matches]


def unit(vector: npt.ArrayLike) -> npt.NDArray[np.float32]:
    array = np.asarray(vector, np.float64)
    return np.asarray(array / np.linalg.norm(array), np.float32)


# ----------------------------------------------------------------------------------------- fuse_rows


def test_fuse_rows_weighted_mean_with_missing_distance() -> None:
    # Distances exactly representable in float32, so the tie below is exact.
    weights = {"facenet": 0.5, "arcface": 0.5}
    candidates = fuse_rows(
        {
            "facenet": hits([1, 2], [0.25, 0.375]),
            "arcface": hits([1, 3], [0.375, 0.125]),
        },
        weights,
        missing_distance=0.5,
    )
    by_row = {c.row: c for c in candidates}
    assert set(by_row) == {1, 2, 3}
    # Row 1 in both: 0.5·0.25 + 0.5·0.375 = 0.3125.
    assert by_row[1].distance == 0.3125
    # Row 2 only from facenet: 0.5·0.375 + 0.5·0.5 = 0.4375.
    assert by_row[2].distance == 0.4375
    # Row 3 only from arcface: 0.5·0.5 + 0.5·0.125 = 0.3125.
    assert by_row[3].distance == 0.3125
    # Best first; the tie (rows 1 and 3 at 0.3125) is broken by row id.
    assert [c.row for c in candidates] == [1, 3, 2]


def test_fuse_rows_records_per_embedder_distances_and_found_flags() -> None:
    candidates = fuse_rows(
        {"facenet": hits([7], [0.25]), "arcface": hits([], [])},
        {"facenet": 0.5, "arcface": 0.5},
        missing_distance=0.5,
    )
    assert len(candidates) == 1
    only = candidates[0]
    assert only.row == 7
    # Per-embedder entries follow the weights' order; the missing one stands at missing_distance.
    assert [d.embedder for d in only.per_embedder] == ["facenet", "arcface"]
    assert only.per_embedder[0].distance == pytest.approx(0.25, abs=TOL)
    assert only.per_embedder[0].found is True
    assert only.per_embedder[1] == EmbedderDistance("arcface", 0.5, False)
    # 0.5·0.25 + 0.5·0.5 = 0.375
    assert only.distance == pytest.approx(0.375, abs=TOL)


def test_fuse_rows_uneven_weights_and_other_missing_distance() -> None:
    weights = {"a": 0.25, "b": 0.75}
    candidates = fuse_rows({"a": hits([4], [0.1]), "b": hits([5], [0.2])}, weights, missing_distance=0.8)
    by_row = {c.row: c.distance for c in candidates}
    # Row 4: 0.25·0.1 + 0.75·0.8 = 0.625; row 5: 0.25·0.8 + 0.75·0.2 = 0.35.
    assert by_row[4] == pytest.approx(0.625, abs=TOL)
    assert by_row[5] == pytest.approx(0.35, abs=TOL)
    assert [c.row for c in candidates] == [5, 4]


def test_fuse_rows_single_embedder_is_its_own_distance() -> None:
    candidates = fuse_rows({"m": hits([3, 1, 2], [0.4, 0.1, 0.2])}, {"m": 1.0}, missing_distance=0.5)
    assert [(c.row, round(c.distance, 6)) for c in candidates] == [(1, 0.1), (2, 0.2), (3, 0.4)]


def test_fuse_rows_clamps_rounding_below_zero() -> None:
    candidates = fuse_rows(
        {"a": hits([9], [-1e-7]), "b": hits([9], [0.2])}, {"a": 0.5, "b": 0.5}, missing_distance=0.5
    )
    assert candidates[0].per_embedder[0].distance == 0.0
    assert candidates[0].distance == pytest.approx(0.1, abs=TOL)


def test_fuse_rows_accepts_unsigned_row_ids() -> None:
    candidates = fuse_rows(
        {"m": (np.array([5], np.uint64), np.array([0.3], np.float32))}, {"m": 1.0}, missing_distance=0.5
    )
    assert candidates[0].row == 5
    assert isinstance(candidates[0].row, int)


def test_fuse_rows_empty() -> None:
    assert fuse_rows({"a": hits([], []), "b": hits([], [])}, {"a": 0.5, "b": 0.5}, 0.5) == []


# --------------------------------------------------------------------------------- performer_matches


def row(row_id: int, distance: float) -> RowCandidate:
    return RowCandidate(row_id, distance, ())


def test_performer_matches_each_performer_once_at_its_closest_row() -> None:
    rows = [row(10, 0.1), row(11, 0.2), row(12, 0.3), row(13, 0.4)]
    owners = {10: performer("a"), 11: performer("b"), 12: performer("a"), 13: performer("c")}
    matches = performer_matches(rows, owners, max_distance=1.0, top_k=10)
    assert ids_of(matches) == ["local:a", "local:b", "local:c"]
    assert [m.distance for m in matches] == [0.1, 0.2, 0.4]


def test_performer_matches_cuts_at_max_distance_inclusive() -> None:
    rows = [row(1, 0.2), row(2, 0.5), row(3, 0.5000001), row(4, 0.7)]
    owners = {i: performer(f"p{i}") for i in range(1, 5)}
    matches = performer_matches(rows, owners, max_distance=0.5, top_k=10)
    # "at or below" max_distance is kept: 0.5 stays, 0.5000001 goes.
    assert ids_of(matches) == ["local:p1", "local:p2"]


def test_performer_matches_top_k_and_rows_without_performer() -> None:
    rows = [row(1, 0.1), row(2, 0.15), row(3, 0.2), row(4, 0.25), row(5, 0.3)]
    # Row 1 is a gap (null in faces.json); row 2 is not in the mapping at all.
    owners: dict[int, PerformerRecord | None] = {
        1: None,
        3: performer("x"),
        4: performer("y"),
        5: performer("z"),
    }
    matches = performer_matches(rows, owners, max_distance=1.0, top_k=2)
    assert ids_of(matches) == ["local:x", "local:y"]


def test_match_confidence_is_one_minus_distance_clamped() -> None:
    assert match("a", 0.3).confidence == pytest.approx(0.7)
    assert match("a", 1.4).confidence == 0.0
    assert match("a", -0.2).confidence == 1.0


# ------------------------------------------------------------------------------------- assign_unique


def test_assign_unique_prefers_the_globally_closest_pair() -> None:
    # Face 0 likes A (0.30) then B (0.35); face 1 likes A more (0.20). The closest pair is
    # (face 1, A), so face 1 gets A and face 0 falls back to B, although A is face 0's top-1 too.
    result = assign_unique(
        [
            [match("a", 0.30), match("b", 0.35)],
            [match("a", 0.20), match("c", 0.50)],
        ]
    )
    assert ids_of(result[0]) == ["local:b"]
    assert ids_of(result[1]) == ["local:a", "local:c"]


def test_assign_unique_face_with_every_candidate_taken_is_unknown() -> None:
    result = assign_unique([[match("a", 0.1)], [match("a", 0.2)], []])
    assert ids_of(result[0]) == ["local:a"]
    assert result[1] == []
    assert result[2] == []


def test_assign_unique_tie_goes_to_the_first_face() -> None:
    result = assign_unique([[match("a", 0.3), match("b", 0.4)], [match("a", 0.3), match("c", 0.6)]])
    assert ids_of(result[0]) == ["local:a", "local:b"]
    assert ids_of(result[1]) == ["local:c"]


def test_assign_unique_keeps_alternatives_nobody_owns() -> None:
    # D is nobody's assignment: it stays as an alternative on both faces.
    result = assign_unique(
        [
            [match("a", 0.1), match("d", 0.3)],
            [match("b", 0.2), match("d", 0.4)],
        ]
    )
    assert ids_of(result[0]) == ["local:a", "local:d"]
    assert ids_of(result[1]) == ["local:b", "local:d"]


def test_assign_unique_never_gives_one_performer_to_two_faces() -> None:
    rng = np.random.default_rng(1234)
    people = [f"p{i}" for i in range(6)]
    for _ in range(200):
        faces = []
        for _face in range(int(rng.integers(1, 6))):
            chosen = rng.choice(people, size=int(rng.integers(0, 4)), replace=False)
            faces.append(
                sorted((match(str(p), float(rng.uniform(0, 1))) for p in chosen), key=lambda m: m.distance)
            )
        result = assign_unique(faces)
        assert len(result) == len(faces)
        tops = [r[0].performer.id for r in result if r]
        assert len(tops) == len(set(tops)), "a performer is the top-1 of two faces"
        # A performer assigned (top-1) to one face appears in no other face's list.
        for face, kept in enumerate(result):
            assert {m.performer.id for m in kept} <= {m.performer.id for m in faces[face]}
            for other, other_kept in enumerate(result):
                if other != face and other_kept:
                    assert other_kept[0].performer.id not in ids_of(kept)
        # The globally closest (face, performer) pair is always kept as that face's top-1.
        pairs = [(m.distance, face, m.performer.id) for face, ms in enumerate(faces) for m in ms]
        if pairs:
            _, best_face, best_id = min(pairs)
            assert result[best_face][0].performer.id == best_id


# -------------------------------------------------------------------------------------- gallery_vote


def test_gallery_vote_counts_images_and_orders_kept_performers() -> None:
    per_image: list[list[list[Match]]] = [
        [[match("a", 0.30)]],  # image 0
        [[match("a", 0.20)], [match("b", 0.40)]],  # image 1: two faces
        [],  # image 2: no face, not counted
        [[]],  # image 3: a face nobody matches: counted
        [[match("b", 0.10), match("a", 0.05)]],  # image 4: only the top-1 (b) votes
    ]
    votes, with_faces = gallery_vote(per_image, min_vote_share=0.0)
    assert with_faces == 4
    # Two images each; B's best (0.10) is closer than A's (0.20).
    assert [v.best.performer.id for v in votes] == ["local:b", "local:a"]
    b, a = votes
    assert a.images == [0, 1]
    assert a.best.distance == 0.20
    assert a.average_distance == pytest.approx(0.25)
    assert b.images == [1, 4]
    assert b.best.distance == 0.10
    assert b.average_distance == pytest.approx(0.25)


def test_gallery_vote_ties_on_image_count_go_to_the_closest() -> None:
    votes, _ = gallery_vote([[[match("a", 0.4)]], [[match("b", 0.3)]]], min_vote_share=0.0)
    assert [v.best.performer.id for v in votes] == ["local:b", "local:a"]


def test_gallery_vote_drops_performers_below_the_vote_share() -> None:
    # 10 images with faces: A in 6, B in 2 (exactly 20 %), C in 1 (10 %), one unmatched face.
    per_image: list[list[list[Match]]] = []
    per_image += [[[match("a", 0.3)]] for _ in range(6)]
    per_image += [[[match("b", 0.35)]] for _ in range(2)]
    per_image += [[[match("c", 0.1)]]]
    per_image += [[[]]]
    votes, with_faces = gallery_vote(per_image, min_vote_share=0.2)
    assert with_faces == 10
    # needed = 0.2 · 10 = 2 images: B (2) is kept at the boundary, C (1) is dropped although it
    # is the closest match of all.
    assert [v.best.performer.id for v in votes] == ["local:a", "local:b"]
    assert [len(v.images) for v in votes] == [6, 2]
    votes, _ = gallery_vote(per_image, min_vote_share=0.25)  # needs 2.5 images
    assert [v.best.performer.id for v in votes] == ["local:a"]


def test_gallery_vote_one_vote_per_image() -> None:
    # Two faces of one image name A (possible without assign_unique): one image, not two.
    votes, with_faces = gallery_vote(
        [[[match("a", 0.3)], [match("a", 0.5)]], [[match("b", 0.2)]], [[match("c", 0.2)]]],
        min_vote_share=0.5,
    )
    assert with_faces == 3
    # A has 1 image of 3 (< 1.5 needed): dropped like B and C.
    assert votes == []


def test_gallery_vote_share_boundary_is_inclusive_for_every_share() -> None:
    per_image: list[list[list[Match]]] = [[[match("a", 0.3)]] for _ in range(7)]
    per_image += [[[match("z", 0.3)]] for _ in range(93)]
    votes, with_faces = gallery_vote(per_image, min_vote_share=0.07)
    assert with_faces == 100
    assert "local:a" in {v.best.performer.id for v in votes}


def test_gallery_vote_no_faces() -> None:
    assert gallery_vote([[], []], min_vote_share=0.2) == ([], 0)


# -------------------------------------------------------------------------------------- fused_vector


def test_fused_vector_dot_product_is_weighted_cosine() -> None:
    rng = np.random.default_rng(7)
    weights = {"facenet": 0.25, "arcface": 0.75}
    first = {"facenet": unit(rng.normal(size=8)), "arcface": unit(rng.normal(size=4))}
    second = {"facenet": unit(rng.normal(size=8)), "arcface": unit(rng.normal(size=4))}
    a, b = fused_vector(first, weights), fused_vector(second, weights)
    assert a.dtype == np.float32
    assert a.shape == (12,)
    # Layout: √w·v per embedder, in the weights' order.
    np.testing.assert_allclose(a[:8], 0.5 * first["facenet"], rtol=1e-6)
    np.testing.assert_allclose(a[8:], np.sqrt(0.75) * first["arcface"], rtol=1e-6)
    expected = 0.25 * float(first["facenet"] @ second["facenet"]) + 0.75 * float(
        first["arcface"] @ second["arcface"]
    )
    assert float(a @ b) == pytest.approx(expected, abs=1e-6)
    # Unit inputs and weights summing to 1 give a unit fused vector.
    assert float(np.linalg.norm(a)) == pytest.approx(1.0, abs=1e-6)


# ------------------------------------------------------------------------------------- cluster_faces


def noisy(base: npt.NDArray[np.float32], rng: np.random.Generator, spread: float) -> npt.NDArray[np.float32]:
    return unit(base + rng.normal(scale=spread, size=base.shape))


def test_cluster_faces_splits_two_well_separated_identities() -> None:
    rng = np.random.default_rng(42)
    first, second = unit(rng.normal(size=64)), unit(rng.normal(size=64))
    items = []
    for i in range(20):
        base = first if i % 3 else second  # interleaved: 13 of first, 7 of second
        items.append((("first" if i % 3 else "second", i), noisy(base, rng, 0.03)))
    clusters = cluster_faces(items, max_distance=0.4)
    assert len(clusters) == 2
    labels = [{label for label, _ in cluster.members} for cluster in clusters]
    assert labels == [{"second"}, {"first"}]  # item 0 (i % 3 == 0) is "second" and opens cluster 0
    assert sorted(len(c.members) for c in clusters) == [7, 13]
    # Members keep their input order; the centre is the normalised mean, close to the identity.
    for cluster, base in zip(clusters, (second, first), strict=True):
        indexes = [i for _, i in cluster.members]
        assert indexes == sorted(indexes)
        centre = cluster.centre()
        assert float(np.linalg.norm(centre)) == pytest.approx(1.0, abs=1e-5)
        assert float(centre @ base) > 0.99


def test_cluster_faces_keeps_one_identity_together() -> None:
    rng = np.random.default_rng(3)
    base = unit(rng.normal(size=128))
    # Scaled copies too: clustering goes by direction, not length.
    items = [(i, noisy(base, rng, 0.03) * float(rng.uniform(0.5, 20))) for i in range(30)]
    clusters = cluster_faces(items, max_distance=0.3)
    assert len(clusters) == 1
    assert clusters[0].members == list(range(30))


def test_cluster_faces_threshold_is_strict_and_uses_the_centre() -> None:
    x = np.array([1.0, 0.0], np.float32)
    # cos 0.69 -> distance 0.31 (new cluster at 0.3); cos 0.71 -> distance 0.29 (joins).
    far = np.array([0.69, np.sqrt(1 - 0.69**2)], np.float32)
    near = np.array([0.71, np.sqrt(1 - 0.71**2)], np.float32)
    assert len(cluster_faces([("x", x), ("far", far)], max_distance=0.3)) == 2
    joined = cluster_faces([("x", x), ("near", near)], max_distance=0.3)
    assert len(joined) == 1
    # The centre moved to the normalised mean of both members.
    expected = unit((x + near) / 2)
    np.testing.assert_allclose(joined[0].centre(), expected, atol=1e-6)


def test_cluster_faces_empty() -> None:
    assert cluster_faces([], max_distance=0.5) == []


# ------------------------------------------------------------------------- vote_person, assign_people


def test_vote_person_scores_by_closest_distance_and_distinct_frames() -> None:
    scored = vote_person(
        [
            (0, [match("a", 0.30), match("b", 0.40)]),
            (1, [match("a", 0.35)]),
            (2, [match("a", 0.50), match("b", 0.20)]),
            (2, [match("b", 0.25)]),  # a second face of frame 2: still one frame for B
        ]
    )
    # B: frames {0, 2}, min 0.20 -> (1 - 0.2)·(1 + 0.1·1) = 0.88
    # A: frames {0, 1, 2}, min 0.30 -> (1 - 0.3)·(1 + 0.1·2) = 0.84
    assert [(m.performer.id, m.distance) for m, _ in scored] == [("local:b", 0.20), ("local:a", 0.30)]
    assert [score for _, score in scored] == pytest.approx([0.88, 0.84])


def test_vote_person_frequency_can_beat_distance() -> None:
    # A: one frame at 0.2 -> 0.8. B: six frames at 0.3 -> 0.7·1.5 = 1.05.
    faces = [(0, [match("a", 0.2)])] + [(i, [match("b", 0.3)]) for i in range(6)]
    scored = vote_person(faces)
    assert [m.performer.id for m, _ in scored] == ["local:b", "local:a"]
    assert scored[0][1] == pytest.approx(1.05)
    assert scored[1][1] == pytest.approx(0.8)


def test_assign_people_serves_largest_person_first() -> None:
    a, b, c = match("a", 0.1), match("b", 0.2), match("c", 0.5)
    candidates = [
        [(a, 0.9), (b, 0.8)],  # person 0, 2 faces
        [(a, 0.95), (c, 0.5)],  # person 1, 5 faces: served first, takes A
        [(a, 0.7)],  # person 2, 3 faces: A is taken, nobody left
    ]
    verdicts = assign_people(candidates, sizes=[2, 5, 3])
    assert verdicts[1].best is a
    assert verdicts[1].alternatives == (c,)
    assert verdicts[2].best is None
    assert verdicts[2].alternatives == ()
    assert verdicts[0].best is b
    assert verdicts[0].alternatives == ()


def test_assign_people_nobody() -> None:
    verdicts = assign_people([[], []], sizes=[1, 1])
    assert [(v.best, v.alternatives) for v in verdicts] == [(None, ()), (None, ())]


# --------------------------------------------------------------------------------------- time_ranges


def test_time_ranges_merges_consecutive_frames_and_skips_the_cover() -> None:
    sightings = [
        (5, 3.5),
        (0, 1.0),
        (-1, 0.0),  # the cover image
        (1, 1.5),
        (2, 2.0),
        (4, 3.0),
        (1, 1.5),  # two faces of one frame
        (7, 4.5),
    ]
    assert time_ranges(sightings) == [(1.0, 2.0), (3.0, 3.5), (4.5, 4.5)]


def test_time_ranges_only_cover_or_nothing() -> None:
    assert time_ranges([(-1, 0.0)]) == []
    assert time_ranges([]) == []
