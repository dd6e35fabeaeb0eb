"""Comparing our answers with the original AITagger server's golden answers
(shared/testdata/golden), per image and per sampled frame.

The original ran the model under bf16 autocast on the CPU and rounds confidences to 2 decimals, so
answers are compared with a tolerance, not bit for bit, but one small enough that a preprocessing
difference fails it (ImageNet instead of CLIP mean/std moves confidences by 0.08 on average, up to
0.4):

* tag sets at the request's threshold must be equal, except for tags whose confidence lies within
  TOLERANCE of that threshold (they may fall either way in bf16);
* per sampled frame, a tag's confidence may differ by at most FRAME_TOLERANCE (bf16 autocast and
  the original's FFmpeg decode leave at most 0.065 on the golden videos; see FRAME_TOLERANCE);
* scene tags must be equal, marker spans equal within one sampled frame, and tag totals equal
  within one sampled frame per frame whose confidence lies within FRAME_TOLERANCE of the tag's
  TagThreshold.

Every function returns a list of problems (empty when the answers agree), so a test can show all
of them at once."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

# Confidence distance from a threshold within which a tag may be on either side.
TOLERANCE = 0.01
# Max |confidence difference| of a tag in one sampled frame. Measured with CLIP mean/std (what
# the original applies) on every golden video: mean 0.024, max 0.064 (fp32 ONNX vs the original's
# bf16 autocast, and PyAV vs its FFmpeg/decord decode); with ImageNet mean/std (the bug): mean
# 0.080, max 0.383. bench/skier233_agreement.py measures both.
FRAME_TOLERANCE = 0.07


def frame_confidences(json_result: str, frame_interval: float) -> dict[float, dict[str, float]]:
    """From a schema-1 `.AI.json` (the `json_result` string): per nominal time, each tag's
    confidence, runs expanded to their frames."""
    stored = json.loads(json_result)
    frames: dict[float, dict[str, float]] = {}
    for tags in stored["timespans"].values():
        for tag, runs in tags.items():
            for run in runs:
                start = float(run["start"])
                end = float(run.get("end", start))
                for k in range(round((end - start) / frame_interval) + 1):
                    time = round(start + k * frame_interval, 6)
                    frames.setdefault(time, {})[tag] = float(run["confidence"])
    return frames


def compare_tag_sets(
    where: str, ours: Mapping[str, float], theirs: Mapping[str, float] | set[str], threshold: float
) -> list[str]:
    """Tags above `threshold`: ours with confidences, theirs with confidences or as a set (images
    without return_confidence). A tag on one side only must lie within TOLERANCE of the threshold,
    judged by whichever confidence is known."""
    problems = []
    mine = {tag for tag, p in ours.items() if p > threshold}
    original = set(theirs)
    for tag in sorted(mine ^ original):
        known = ours.get(tag) if tag in ours else (theirs.get(tag) if isinstance(theirs, Mapping) else None)
        if known is None or abs(known - threshold) > TOLERANCE:
            side = "ours only" if tag in mine else "original only"
            problems.append(
                f"{where}: {tag} ({side}, confidence {known}) is more than {TOLERANCE} from the "
                f"threshold {threshold}"
            )
    return problems


def compare_frames(
    ours_json: str, theirs_json: str, threshold: float, frame_interval: float
) -> tuple[list[str], list[float]]:
    """Per sampled frame: tag sets at `threshold` and confidences. Returns the problems and every
    |confidence difference| of a tag both sides report."""
    ours = frame_confidences(ours_json, frame_interval)
    theirs = frame_confidences(theirs_json, frame_interval)
    problems: list[str] = []
    differences: list[float] = []
    for time in sorted(set(ours) | set(theirs)):
        mine, original = ours.get(time, {}), theirs.get(time, {})
        problems += compare_tag_sets(f"frame {time:g} s", mine, original, threshold)
        for tag in sorted(set(mine) & set(original)):
            difference = abs(mine[tag] - original[tag])
            differences.append(difference)
            if difference > FRAME_TOLERANCE:
                problems.append(
                    f"frame {time:g} s: {tag} {mine[tag]} vs original {original[tag]} "
                    f"(more than {FRAME_TOLERANCE} apart)"
                )
    return problems, differences


def compare_video_tag_info(
    ours: Mapping[str, Any],
    theirs: Mapping[str, Any],
    frame_interval: float,
    near_threshold_frames: Mapping[str, int],
) -> list[str]:
    """Scene tags, tag totals and marker spans. `near_threshold_frames`: per original tag name,
    how many sampled frames have a confidence within FRAME_TOLERANCE of its TagThreshold (each may
    move the total by one frame interval)."""
    problems = []
    if abs(ours["video_duration"] - theirs["video_duration"]) > 0.05:
        problems.append(f"duration {ours['video_duration']} vs original {theirs['video_duration']}")
    mine_tags = {k: set(v) for k, v in ours["video_tags"].items()}
    their_tags = {k: set(v) for k, v in theirs["video_tags"].items()}
    if mine_tags != their_tags:
        problems.append(f"video_tags {mine_tags} vs original {their_tags}")
    for category, totals in theirs["tag_totals"].items():
        mine_totals = ours["tag_totals"].get(category, {})
        for tag in sorted(set(totals) | set(mine_totals)):
            allowed = frame_interval * near_threshold_frames.get(tag, 0) + 1e-6
            difference = abs(mine_totals.get(tag, 0.0) - totals.get(tag, 0.0))
            if difference > allowed:
                problems.append(
                    f"tag_totals {category}/{tag}: {mine_totals.get(tag)} vs original {totals.get(tag)} "
                    f"(allowed {allowed:g} s)"
                )
    for category, spans_by_tag in theirs["tag_timespans"].items():
        mine_spans = ours["tag_timespans"].get(category, {})
        for tag in sorted(set(spans_by_tag) | {t for t, s in mine_spans.items() if s}):
            expected, actual = spans_by_tag.get(tag, []), mine_spans.get(tag, [])
            if len(expected) != len(actual) or any(
                abs(a["start"] - e["start"]) > frame_interval or abs(a["end"] - e["end"]) > frame_interval
                for a, e in zip(actual, expected, strict=False)
            ):
                problems.append(f"spans {category}/{tag}: {actual} vs original {expected}")
    return problems


def near_threshold_frames(
    json_result: str, frame_interval: float, tag_thresholds: Mapping[str, float]
) -> dict[str, int]:
    """Per tag, the frames of a `json_result` whose confidence is within FRAME_TOLERANCE of the
    tag's TagThreshold."""
    counts: dict[str, int] = {}
    for confidences in frame_confidences(json_result, frame_interval).values():
        for tag, confidence in confidences.items():
            threshold = tag_thresholds.get(tag)
            if threshold is not None and abs(confidence - threshold) <= FRAME_TOLERANCE:
                counts[tag] = counts.get(tag, 0) + 1
    return counts
