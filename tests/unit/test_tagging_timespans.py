"""Raw runs, scene tags, clustered markers, the optimize loss and `video_tag_info` (contract §3.6)."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

from stash_vision.server.tagging.aitagger_format.ai_json import (
    AIVideoResult,
    ModelInfo,
    TagTimeFrame,
    VideoMetadata,
)
from stash_vision.server.tagging.aitagger_format.categories import CategoryConfig, parse_category_rows
from stash_vision.server.tagging.aitagger_format.marker_optimizer import (
    Span,
    desired_spans,
    optimize_clustering,
    timespan_loss,
)
from stash_vision.server.tagging.aitagger_format.timespans import (
    ClusteringParams,
    FrameResult,
    MarkerSpan,
    TagHit,
    build_video_tag_info,
    marker_spans,
    raw_runs,
    result_from_frames,
    scene_tags,
)

HEADER = "OriginalTag,RenamedTag,MinMarkerDuration,MaxGap,RequiredDuration,TagThreshold"


def _categories(*rows: str, bodyparts: Sequence[str] = ()) -> CategoryConfig:
    settings = [parse_category_rows([HEADER, *rows], "actions", "actions.csv")]
    if bodyparts:
        settings.append(parse_category_rows([HEADER, *bodyparts], "bodyparts", "bodyparts.csv"))
    return CategoryConfig.of(settings)


def _info(frame_interval: float = 2.0) -> ModelInfo:
    return ModelInfo(
        frame_interval=frame_interval, threshold=0.3, version=2.0, ai_model_id=200, file_name="m"
    )


def _result(
    runs: dict[str, dict[str, list[TagTimeFrame]]], duration: float = 100.0, frame_interval: float = 2.0
) -> AIVideoResult:
    models = {category: _info(frame_interval) for category in runs}
    return AIVideoResult(metadata=VideoMetadata(duration=duration, models=models), timespans=runs)


def _run(start: float, end: float | None = None, confidence: float | None = None) -> TagTimeFrame:
    return TagTimeFrame(start=start, end=end, confidence=confidence)


def _frames(*per_frame: Sequence[TagHit], interval: float = 2.0) -> list[FrameResult]:
    return [FrameResult(k * interval, {"actions": hits}) for k, hits in enumerate(per_frame)]


# --- (1) raw runs ---------------------------------------------------------------------------------------


def test_runs_merge_only_adjacent_frames_with_identical_confidence() -> None:
    frames = _frames(
        [("Kissing", 0.7)],
        [("Kissing", 0.7)],
        [("Kissing", 0.7), ("Blowjob", 0.9)],
        [("Kissing", 0.71)],  # another rounded confidence starts a new run
        [],
        [("Kissing", 0.71)],  # a missing frame starts a new run
    )

    runs = raw_runs(frames, 2.0)

    assert runs == {
        "actions": {
            "Kissing": [_run(0, 4, 0.7), _run(6, None, 0.71), _run(10, None, 0.71)],
            "Blowjob": [_run(4, None, 0.9)],
        }
    }


def test_runs_without_confidence_merge_consecutive_frames() -> None:
    """return_confidence false: items are bare names, runs keep no confidence."""
    runs = raw_runs(_frames(["Kissing"], ["Kissing"], ["Kissing"], [], ["Kissing"]), 2.0)

    assert runs == {"actions": {"Kissing": [_run(0, 4), _run(8)]}}


def test_max_merge_bridges_gaps_like_the_v3_route() -> None:
    frames = _frames(["Kissing"], [], ["Kissing"], [], [], [], ["Kissing"])

    assert raw_runs(frames, 2.0, max_merge=2.0) == {"actions": {"Kissing": [_run(0, 4), _run(12)]}}
    assert raw_runs(frames, 2.0, max_merge=6.0) == {"actions": {"Kissing": [_run(0, 12)]}}


def test_runs_keep_first_appearance_order_and_empty_categories() -> None:
    frames = [
        FrameResult(2.0, {"actions": [("B", 0.5)], "bodyparts": []}),
        FrameResult(0.0, {"actions": [("A", 0.5)], "bodyparts": []}),  # out of order: sorted by time
    ]

    runs = raw_runs(frames, 2.0)

    assert list(runs["actions"]) == ["A", "B"]
    assert runs["bodyparts"] == {}


def test_a_tag_twice_in_one_frame_does_not_make_a_zero_length_run() -> None:
    runs = raw_runs([FrameResult(0.0, {"actions": [("A", 0.5), ("A", 0.5)]})], 2.0)

    assert all(r.end is None for r in runs["actions"]["A"])


def test_result_from_frames_keeps_only_categories_that_ran_each_with_a_key() -> None:
    frames = [FrameResult(0.0, {"actions": [("A", 0.5)], "other": [("X", 0.9)]})]

    result = result_from_frames(
        frames, duration=3.0, frame_interval=2.0, models={"actions": _info(), "bodyparts": _info()}
    )

    assert result.timespans == {"actions": {"A": [_run(0, None, 0.5)]}, "bodyparts": {}}
    assert list(result.metadata.models) == ["actions", "bodyparts"]


# --- (2) scene tags ------------------------------------------------------------------------------------


def test_scene_tag_totals_count_runs_at_or_above_tag_threshold() -> None:
    result = _result({"actions": {"A": [_run(0, 10, 0.6), _run(14, None, 0.5), _run(20, 30, 0.49)]}})

    video_tags, totals = scene_tags(result, _categories("A,A_AI,15,6,14,0.5"))

    assert totals == {"actions": {"A": 12.0 + 2.0}}  # (10 − 0 + 2) + 2; the 0.49 run is below 0.5
    assert video_tags == {"actions": ["A_AI"]}  # 14 ≥ 14


def test_scene_tag_needs_the_required_duration() -> None:
    result = _result({"actions": {"A": [_run(0, 10, 0.6)]}})

    assert scene_tags(result, _categories("A,A_AI,15,6,13,0.5"))[0] == {"actions": []}
    assert scene_tags(result, _categories("A,A_AI,15,6,12,0.5"))[0] == {"actions": ["A_AI"]}


def test_scene_tag_required_duration_in_percent_of_video() -> None:
    result = _result({"actions": {"A": [_run(0, 8, 0.6)]}}, duration=50.0)

    assert scene_tags(result, _categories("A,A_AI,15,6,20%,0.5"))[0] == {"actions": ["A_AI"]}  # 10 ≥ 10
    assert scene_tags(result, _categories("A,A_AI,15,6,21%,0.5"))[0] == {"actions": []}


@pytest.mark.parametrize("required", ["0", "-1", "0%"])
def test_required_duration_not_positive_never_tags_the_scene(required: str) -> None:
    result = _result({"actions": {"A": [_run(0, 50, 0.9)]}})

    video_tags, totals = scene_tags(result, _categories(f"A,A_AI,15,6,{required},0.5"))

    assert video_tags == {"actions": []}
    assert totals == {"actions": {"A": 52.0}}


def test_unconfigured_tags_categories_and_categories_without_metadata_are_ignored() -> None:
    result = AIVideoResult(
        metadata=VideoMetadata(duration=60.0, models={"actions": _info(), "bdsm": _info()}),
        timespans={
            "actions": {"A": [_run(0, 30, 0.9)], "Unlisted": [_run(0, 30, 0.9)]},
            "bdsm": {"X": [_run(0, 30, 0.9)]},  # no CSV for bdsm
            "bodyparts": {"B": [_run(0, 30, 0.9)]},  # CSV but no model metadata (e.g. v0 leftovers)
            "Unknown": {"Y": [_run(0, 30, 0.9)]},
        },
    )
    categories = _categories("A,A_AI,15,6,20,0.5", bodyparts=["B,B_AI,15,6,20,0.5"])

    video_tags, totals = scene_tags(result, categories)

    assert video_tags == {"actions": ["A_AI"]}
    assert totals == {"actions": {"A": 32.0}}
    assert marker_spans(result, categories) == {
        "actions": {"A_AI": [MarkerSpan(start=0, end=30, totalConfidence=0.9 * 32)]}
    }


def test_scene_tags_without_confidence_count_every_run() -> None:
    result = _result({"actions": {"A": [_run(0, 18), _run(22)]}})

    assert scene_tags(result, _categories("A,A_AI,15,6,22,0.9")) == (
        {"actions": ["A_AI"]},
        {"actions": {"A": 22.0}},
    )


# --- (3) markers -----------------------------------------------------------------------------------------


def test_adjacent_runs_form_one_bucket_weighted_by_the_grown_duration() -> None:
    """Bucket total adds confidence × the duration of the whole grown bucket (as the original)."""
    result = _result({"actions": {"A": [_run(0, 2, 0.8), _run(4, None, 0.6)]}})

    spans = marker_spans(result, _categories("A,A_AI,6,6,20,0.5"))

    # 0.8 × (2 − 0 + 2) = 3.2, then + 0.6 × (4 − 0 + 2) = 3.6 -> 6.8
    assert spans == {"actions": {"A_AI": [MarkerSpan(start=0, end=4, totalConfidence=0.8 * 4 + 0.6 * 6)]}}


def test_clusters_merge_when_the_gap_is_small_against_their_weighted_durations() -> None:
    """Two 10-s buckets of confidence 1: w = 10 × (1 + 0.04 × 1) = 10.4, allowed gap 10.4 × 0.85 = 8.84."""
    categories = _categories("A,A_AI,6,6,20,0.5")
    apart = _result({"actions": {"A": [_run(0, 8, 1.0), _run(20, 28, 1.0)]}})  # gap 20 − 8 − 2 = 10
    close = _result({"actions": {"A": [_run(0, 8, 1.0), _run(18, 26, 1.0)]}})  # gap 8

    assert marker_spans(apart, categories)["actions"]["A_AI"] == [
        MarkerSpan(start=0, end=8, totalConfidence=10.0),
        MarkerSpan(start=20, end=28, totalConfidence=10.0),
    ]
    assert marker_spans(close, categories)["actions"]["A_AI"] == [
        MarkerSpan(start=0, end=26, totalConfidence=20.0)
    ]


def test_clustering_parameters_change_the_merge_decision() -> None:
    result = _result({"actions": {"A": [_run(0, 8, 1.0), _run(20, 28, 1.0)]}})
    categories = _categories("A,A_AI,6,6,20,0.5")

    merged = marker_spans(result, categories, ClusteringParams(min_gap=1.2))  # 10 ≤ 1.2 + 8.84

    assert merged["actions"]["A_AI"] == [MarkerSpan(start=0, end=28, totalConfidence=20.0)]


def test_merges_continue_over_passes() -> None:
    """Pass 1 merges the first pair only (a merged pair is not merged again in the same pass);
    pass 2 merges the result with the third bucket."""
    runs = [_run(0, 8, 1.0), _run(14, 22, 1.0), _run(28, 36, 1.0)]  # gaps of 4
    spans = marker_spans(_result({"actions": {"A": runs}}), _categories("A,A_AI,6,6,20,0.5"))

    assert spans["actions"]["A_AI"] == [MarkerSpan(start=0, end=36, totalConfidence=30.0)]


def test_runs_below_tag_threshold_are_dropped_before_clustering() -> None:
    result = _result({"actions": {"A": [_run(0, 8, 0.49), _run(20, 30, 0.5)]}})

    spans = marker_spans(result, _categories("A,A_AI,6,6,20,0.5"))

    assert spans == {"actions": {"A_AI": [MarkerSpan(start=20, end=30, totalConfidence=0.5 * 12)]}}


def test_markers_shorter_than_min_marker_duration_are_dropped_but_the_tag_stays() -> None:
    result = _result({"actions": {"A": [_run(0, 8, 0.9)]}}, duration=100.0)

    assert marker_spans(result, _categories("A,A_AI,11,6,20,0.5")) == {"actions": {"A_AI": []}}
    assert len(marker_spans(result, _categories("A,A_AI,10,6,20,0.5"))["actions"]["A_AI"]) == 1
    assert marker_spans(result, _categories("A,A_AI,11%,6,20,0.5")) == {"actions": {"A_AI": []}}
    assert len(marker_spans(result, _categories("A,A_AI,10%,6,20,0.5"))["actions"]["A_AI"]) == 1


@pytest.mark.parametrize("min_duration", ["-1", "0", "0s", "0%"])
def test_min_marker_duration_not_positive_means_no_markers(min_duration: str) -> None:
    result = _result({"actions": {"A": [_run(0, 60, 0.99)], "B": [_run(0, 60, 0.99)]}})

    only_a = marker_spans(result, _categories(f"A,A_AI,{min_duration},6,20,0.5"))
    both = marker_spans(result, _categories(f"A,A_AI,{min_duration},6,20,0.5", "B,B_AI,4,6,20,0.5"))

    assert only_a == {"actions": {}}  # the category stays, without the tag
    assert list(both["actions"]) == ["B_AI"]


def test_markers_are_still_produced_without_confidences() -> None:
    """§3.9: the original answers no markers at all here; we weight such runs 1.0."""
    frames = _frames(*[["A"] for _ in range(11)], [], [], ["A"])
    result = result_from_frames(frames, duration=30.0, frame_interval=2.0, models={"actions": _info()})

    assert result.timespans == {"actions": {"A": [_run(0, 20), _run(26)]}}
    assert '"confidence"' not in result.to_json()
    info = build_video_tag_info(result, _categories("A,A_AI,10,6,20,0.9"))
    # Buckets: [0, 20] total 22, [26] total 2; gap 4 is small against w ≈ 22.9 -> merged.
    assert info.tag_timespans == {"actions": {"A_AI": [MarkerSpan(start=0, end=26, totalConfidence=24.0)]}}
    assert info.video_tags == {"actions": ["A_AI"]}
    assert info.tag_totals == {"actions": {"A": 24.0}}


def test_video_tag_info_shape_matches_the_plugin_model() -> None:
    result = _result(
        {"actions": {"A": [_run(0, 2, 0.9)]}, "bodyparts": {"B": [_run(0, 40, 0.9)]}}, duration=42.0
    )
    categories = _categories("A,A_AI,10,6,20,0.5", bodyparts=["B,B_AI,-1,6,20,0.5"])

    info = json.loads(build_video_tag_info(result, categories).model_dump_json())

    assert info == {
        "video_duration": 42.0,
        "video_tags": {"actions": [], "bodyparts": ["B_AI"]},
        "tag_totals": {"actions": {"A": 4.0}, "bodyparts": {"B": 42.0}},
        "tag_timespans": {"actions": {"A_AI": []}, "bodyparts": {}},
    }


def test_zero_frame_interval_is_refused() -> None:
    with pytest.raises(ValueError, match="frame_interval"):
        scene_tags(_result({"actions": {"A": [_run(0)]}}, frame_interval=0.0), _categories("A,A_AI,,,,"))


# --- (4) optimize -----------------------------------------------------------------------------------------


def test_loss_is_symmetric_time_difference_plus_twice_the_count_mismatch() -> None:
    actual = {"actions": {"A_AI": [Span(0, 10), Span(20, 30)], "B_AI": [Span(0, 5)]}}
    desired = {"actions": {"A_AI": [Span(5, 25)]}, "Unknown": {"Z_AI": [Span(0, 4)]}}

    seconds, mismatch = timespan_loss(actual, desired)

    # A: actual 20 s + desired 20 s − 2 × overlap (5 + 5) = 20; Z: 4 (nothing produced); B is not desired.
    assert seconds == 24.0
    assert mismatch == abs(3 - 2)


def test_loss_of_an_exact_match_is_zero() -> None:
    spans = {"actions": {"A_AI": [Span(10, 40)]}}

    assert timespan_loss(spans, spans) == (0.0, 0)
    assert timespan_loss({"actions": {"A_AI": []}}, {"actions": {"A_AI": []}}) == (0.0, 0)


def test_optimize_returns_the_best_combinations_first() -> None:
    result = _result({"actions": {"A": [_run(0, 8, 1.0), _run(20, 28, 1.0)]}})
    categories = _categories("A,A_AI,6,6,20,0.5")
    desired = desired_spans({"A_AI": ['{"start": 0.0, "end": 28.0}']}, categories)
    sweep = ((0.04,), (0.85,), (0.25,), (0.0, 2.0, 0.0))  # duplicate combos are tried once

    best = optimize_clustering(result, categories, desired, sweep=sweep)

    assert [r.params.min_gap for r in best] == [2.0, 0.0]
    assert (best[0].loss, best[0].span_count, best[0].seconds_diff, best[0].count_mismatch) == (
        0.0,
        1,
        0.0,
        0,
    )
    # Separate spans [0, 8] and [20, 28]: 28 + 16 − 2 × 16 = 12 s, one span too many.
    assert (best[1].loss, best[1].seconds_diff, best[1].count_mismatch) == (14.0, 12.0, 1)
    assert len(optimize_clustering(result, categories, desired, sweep=sweep, top=1)) == 1


def test_optimize_default_sweep_runs_every_combination() -> None:
    result = _result({"actions": {"A": [_run(0, 8, 1.0), _run(20, 28, 1.0)]}})
    categories = _categories("A,A_AI,6,6,20,0.5")

    best = optimize_clustering(result, categories, {"actions": {"A_AI": [Span(0, 28)]}}, top=3200)

    assert len(best) == 8 * 8 * 10 * 5
    assert best[0].loss == 0.0
    assert best == sorted(best, key=lambda r: r.loss)


def test_optimize_needs_four_sweep_lists() -> None:
    with pytest.raises(ValueError, match="4 lists"):
        optimize_clustering(_result({}), _categories("A,A_AI,,,,"), {}, sweep=((0.0,),))


def test_desired_spans_map_renamed_tags_to_categories() -> None:
    categories = _categories("A,A_AI,6,6,20,0.5")

    spans = desired_spans(
        {"A_AI": ['{"start":10.0,"end":40.0}', {"start": 50, "end": 60}], "Q_AI": []}, categories
    )

    assert spans == {"actions": {"A_AI": [Span(10.0, 40.0), Span(50.0, 60.0)]}, "Unknown": {"Q_AI": []}}


@pytest.mark.parametrize("item", ["{not json", '{"start": 1}', '{"start": "a", "end": 2}', "[1, 2]"])
def test_bad_desired_spans_are_value_errors(item: str) -> None:
    with pytest.raises(ValueError, match="A_AI"):
        desired_spans({"A_AI": [item]}, _categories("A,A_AI,6,6,20,0.5"))
