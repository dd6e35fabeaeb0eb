"""tests/golden.py, the comparison the golden-answer tests use: the original's answers agree with
themselves, and a shift of the size the ImageNet/CLIP mix-up causes fails it."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests.conftest import shared_file
from tests.golden import (
    FRAME_TOLERANCE,
    TOLERANCE,
    compare_frames,
    compare_tag_sets,
    compare_video_tag_info,
    frame_confidences,
    near_threshold_frames,
)

VIDEOS = ["process_video_Megamind", "process_video_vtest_DECORD_BACKEND"]


def golden(name: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(shared_file(f"testdata/golden/{name}.response.json").read_text())[
        "body"
    ]["result"]
    return result


def shifted(json_result: str, by: float) -> str:
    stored = json.loads(json_result)
    for tags in stored["timespans"].values():
        for runs in tags.values():
            for run in runs:
                run["confidence"] = round(run["confidence"] + by, 2)
    return json.dumps(stored)


def test_frames_expand_runs_to_every_sampled_frame() -> None:
    frames = frame_confidences(golden("process_video_Megamind")["json_result"], 2.0)
    assert sorted(frames) == [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]
    # {"start": 2.0, "end": 4.0, "confidence": 0.92}: both frames.
    assert (frames[2.0]["Pussy Rubbing"], frames[4.0]["Pussy Rubbing"]) == (0.92, 0.92)
    assert frames[10.0] == {
        "69": 0.53,
        "Kissing": 0.5,
        "Pussy Rubbing": 0.93,
        "Vaginal Fucking": 0.36,
        "Anal Fucking": 0.33,
    }


@pytest.mark.parametrize("name", VIDEOS)
def test_the_original_agrees_with_itself(name: str) -> None:
    result = golden(name)
    problems, differences = compare_frames(result["json_result"], result["json_result"], 0.3, 2.0)
    assert problems == [] and set(differences) == {0.0} and len(differences) > 20
    info = result["video_tag_info"]
    assert compare_video_tag_info(info, copy.deepcopy(info), 2.0, {}) == []


@pytest.mark.parametrize("name", VIDEOS)
def test_a_shift_like_the_normalisation_bug_fails(name: str) -> None:
    result = golden(name)
    # ImageNet instead of CLIP raised confidences by 0.05-0.08 on average, up to 0.4.
    problems, _ = compare_frames(shifted(result["json_result"], 0.1), result["json_result"], 0.3, 2.0)
    assert any(f"more than {FRAME_TOLERANCE} apart" in p for p in problems)
    # Within the frame tolerance, and no tag crosses 0.3 by more than TOLERANCE: agreement.
    problems, _ = compare_frames(shifted(result["json_result"], 0.005), result["json_result"], 0.3, 2.0)
    assert problems == []


def test_a_tag_on_one_side_only_must_sit_within_the_tolerance_of_the_threshold() -> None:
    assert compare_tag_sets("img", {"A": 0.9, "B": 0.505}, {"A"}, 0.5) == []
    assert compare_tag_sets("img", {"A": 0.9, "B": 0.495}, {"A", "B"}, 0.5) == []
    [problem] = compare_tag_sets("img", {"A": 0.9, "B": 0.52}, {"A"}, 0.5)
    assert f"B (ours only, confidence 0.52) is more than {TOLERANCE} from the threshold 0.5" in problem
    # Original only, confidence unknown (images without return_confidence) and ours far below.
    [problem] = compare_tag_sets("img", {"A": 0.9, "B": 0.3}, {"A", "B"}, 0.5)
    assert "B (original only" in problem
    # Frame comparison: the original's confidence decides when ours lacks the tag.
    assert compare_tag_sets("frame", {}, {"C": 0.305}, 0.3) == []
    assert compare_tag_sets("frame", {}, {"C": 0.32}, 0.3) != []


def test_scene_tags_spans_and_totals() -> None:
    theirs = golden("process_video_vtest_DECORD_BACKEND")["video_tag_info"]
    ours = copy.deepcopy(theirs)
    # Spans within one sampled frame agree; two frames apart do not.
    ours["tag_timespans"]["actions"]["Kissing_AI"][0]["end"] = 76.0
    assert compare_video_tag_info(ours, theirs, 2.0, {}) == []
    ours["tag_timespans"]["actions"]["Kissing_AI"][0]["end"] = 74.0
    assert compare_video_tag_info(ours, theirs, 2.0, {}) == [
        f"spans actions/Kissing_AI: {ours['tag_timespans']['actions']['Kissing_AI']} vs original "
        f"{theirs['tag_timespans']['actions']['Kissing_AI']}"
    ]
    ours = copy.deepcopy(theirs)
    ours["video_tags"]["actions"] = ["Kissing_AI"]
    assert compare_video_tag_info(ours, theirs, 2.0, {}) != []
    # A total may move by one frame per frame near the tag's TagThreshold, no more.
    ours = copy.deepcopy(theirs)
    ours["tag_totals"]["actions"]["Pussy Licking"] = 0.0
    assert compare_video_tag_info(ours, theirs, 2.0, {}) != []
    near = near_threshold_frames(
        golden("process_video_vtest_DECORD_BACKEND")["json_result"], 2.0, {"Pussy Licking": 0.5}
    )
    assert near["Pussy Licking"] >= 1
    assert compare_video_tag_info(ours, theirs, 2.0, near) == []
