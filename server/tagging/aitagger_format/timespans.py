"""From per-frame tagger outputs to raw runs, scene tags, marker spans and `video_tag_info` (§3.6).

Float arithmetic follows the original's operation order so that `totalConfidence` and
`tag_totals` values are bit-identical to the skier233 server's (the plugin does not need that, but
it lets the golden answers be compared exactly).

Decision where the original fails (§3.9): without confidences (`return_confidence: false`) the
original's clustering raises and it answers no markers at all. Here a run without confidence
passes every TagThreshold (its frames already passed the request threshold) and is weighted 1.0
in the clustering, so markers are still produced; the stored raw runs keep no confidence.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeAlias

from pydantic import BaseModel

from .ai_json import AIVideoResult, ModelInfo, TagTimeFrame, Timespans, VideoMetadata
from .categories import CategoryConfig, CategorySettings

# A per-frame result item: a bare tag name (return_confidence false) or (tag, rounded confidence).
TagHit: TypeAlias = str | tuple[str, float | None]


@dataclass(frozen=True, slots=True)
class FrameResult:
    """One sampled frame: its nominal time in seconds (k × frame_interval, §3.4) and, per category
    that ran, the tags whose confidence passed the request threshold."""

    time: float
    tags: Mapping[str, Sequence[TagHit]]


# --- (1) raw runs: what `.AI.json` stores (§3.6.1) --------------------------------------------------


class _Run:
    __slots__ = ("confidence", "end", "start")

    def __init__(self, start: float, confidence: float | None) -> None:
        self.start = start
        self.end: float | None = None
        self.confidence = confidence


def raw_runs(frames: Iterable[FrameResult], frame_interval: float, *, max_merge: float = 0.0) -> Timespans:
    """Group consecutive frames of a tag into runs (`_mutate_server_result_tags`, §3.6.1).

    A frame at time t extends a tag's last run iff `t − (end or start) − frame_interval ≤ max_merge`
    and its confidence equals the run's exactly. `max_merge = 0` is the legacy route (only
    back-to-back frames with identical rounded confidence merge); the v3 route uses 4 (§2).
    Category and tag keys keep first-appearance order, which fixes the `.AI.json` key order.
    """
    runs: dict[str, dict[str, list[_Run]]] = {}
    for frame in sorted(frames, key=lambda f: f.time):
        for category, hits in frame.tags.items():
            # A category that ran gets a key even when no tag passed in any frame (as the original).
            by_tag = runs.setdefault(category, {})
            for hit in hits:
                tag, confidence = (hit, None) if isinstance(hit, str) else (hit[0], hit[1])
                tag_runs = by_tag.setdefault(tag, [])
                if tag_runs:
                    last = tag_runs[-1]
                    last_end = last.start if last.end is None else last.end
                    if (
                        frame.time > last_end
                        and frame.time - last_end - frame_interval <= max_merge
                        and last.confidence == confidence
                    ):
                        last.end = frame.time
                        continue
                tag_runs.append(_Run(frame.time, confidence))
    return {
        category: {
            tag: [TagTimeFrame(start=r.start, end=r.end, confidence=r.confidence) for r in tag_runs]
            for tag, tag_runs in by_tag.items()
        }
        for category, by_tag in runs.items()
    }


def result_from_frames(
    frames: Iterable[FrameResult],
    *,
    duration: float,
    frame_interval: float,
    models: Mapping[str, ModelInfo],
    max_merge: float = 0.0,
) -> AIVideoResult:
    """A fresh `.AI.json` v1 for the categories in `models` (category -> model that ran).

    Only those categories are kept in `timespans`, each with a key even if nothing was found, so a
    merge into an existing file replaces exactly what ran (§3.7).
    """
    found = raw_runs(frames, frame_interval, max_merge=max_merge)
    timespans: Timespans = {category: by_tag for category, by_tag in found.items() if category in models}
    for category in models:
        timespans.setdefault(category, {})
    return AIVideoResult(metadata=VideoMetadata(duration=duration, models=dict(models)), timespans=timespans)


# --- shared iteration over configured categories ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _CategoryRuns:
    name: str
    frame_interval: float
    settings: CategorySettings
    runs: Mapping[str, list[TagTimeFrame]]


def _configured(result: AIVideoResult, categories: CategoryConfig) -> list[_CategoryRuns]:
    """Categories that have a CSV (others are ignored, §3.6) and model metadata.

    Without metadata there is no frame interval to measure runs with; the original then fails the
    whole request (KeyError), we leave the category out of `video_tag_info` instead.
    """
    found: list[_CategoryRuns] = []
    for name, by_tag in result.timespans.items():
        settings = categories.get(name)
        model = result.metadata.models.get(name)
        if settings is None or model is None:
            continue
        if model.frame_interval <= 0:
            raise ValueError(f".AI.json category {name!r} has frame_interval {model.frame_interval}, not > 0")
        found.append(_CategoryRuns(name, float(model.frame_interval), settings, by_tag))
    return found


def _passes(run: TagTimeFrame, threshold: float) -> bool:
    # No confidence (return_confidence false): the frame already passed the request threshold.
    return run.confidence is None or run.confidence >= threshold


# --- (2) scene tags and tag_totals (§3.6.2) ---------------------------------------------------------


def scene_tags(
    result: AIVideoResult, categories: CategoryConfig
) -> tuple[dict[str, list[str]], dict[str, dict[str, float]]]:
    """`(video_tags, tag_totals)` as `compute_video_tags_OG`.

    `tag_totals[cat][OriginalTag]` = seconds covered by runs at or above TagThreshold (a run counts
    `end − start + frame_interval`), for every configured tag present in the runs; the RenamedTag is
    a scene tag iff `RequiredDuration > 0` and that total reaches it. Lists keep first-hit order
    (the original's set order is arbitrary; the plugin does not care).
    """
    video_tags: dict[str, list[str]] = {}
    tag_totals: dict[str, dict[str, float]] = {}
    duration = result.metadata.duration
    for cat in _configured(result, categories):
        names = video_tags[cat.name] = []
        totals = tag_totals[cat.name] = {}
        for tag, runs in cat.runs.items():
            settings = cat.settings.get(tag)
            if settings is None:
                continue
            total = 0.0
            for run in runs:
                if _passes(run, settings.tag_threshold):
                    total += (
                        cat.frame_interval if run.end is None else run.end - run.start + cat.frame_interval
                    )
            totals[tag] = total
            required = settings.required_duration.seconds(duration)
            if required > 0 and total >= required and settings.renamed_tag not in names:
                names.append(settings.renamed_tag)
    return video_tags, tag_totals


# --- (3) marker spans by clustering (§3.6.3) --------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusteringParams:
    """`timespan_generation_systems.Clustering.defaults` (§3.2)."""

    density_weight: float = 0.04
    gap_factor: float = 0.85
    average_factor: float = 0.25
    min_gap: float = 0.0


DEFAULT_CLUSTERING = ClusteringParams()


class MarkerSpan(BaseModel):
    """A marker as the plugin's `TimeFrame` model reads it (§1.3): all three keys required."""

    start: float
    end: float
    totalConfidence: float | None  # the plugin's field name


@dataclass(frozen=True, slots=True)
class _Bucket:
    start: float
    end: float  # time of the last frame, not its end
    total: float  # confidence-weighted seconds, accumulated as the original does

    def duration(self, frame_interval: float) -> float:
        return (self.end - self.start) + frame_interval


@dataclass(frozen=True, slots=True)
class _TagBuckets:
    renamed_tag: str
    frame_interval: float
    min_duration: float
    buckets: tuple[_Bucket, ...]


def _initial_buckets(
    runs: Sequence[TagTimeFrame], frame_interval: float, threshold: float
) -> tuple[_Bucket, ...]:
    """Join runs that follow each other exactly one frame apart (exact equality, as the original)."""
    buckets: list[_Bucket] = []
    current: _Bucket | None = None
    for run in runs:
        if not _passes(run, threshold):
            continue
        confidence = 1.0 if run.confidence is None else run.confidence  # see module docstring
        start = run.start
        end = run.start if run.end is None else run.end
        if current is not None and start - current.end == frame_interval:
            new_start = min(current.start, start)
            new_end = max(current.end, end)
            # The original adds confidence × the duration of the whole grown bucket, not of the run;
            # kept because totalConfidence and the merge densities depend on it.
            grown = (new_end - new_start) + frame_interval
            current = _Bucket(new_start, new_end, current.total + confidence * grown)
            continue
        if current is not None:
            buckets.append(current)
        current = _Bucket(start, end, confidence * ((end - start) + frame_interval))
    if current is not None:
        buckets.append(current)
    return tuple(buckets)


def _should_merge(a: _Bucket, b: _Bucket, frame_interval: float, params: ClusteringParams) -> bool:
    gap = b.start - a.end - frame_interval
    duration_a = a.duration(frame_interval)
    duration_b = b.duration(frame_interval)
    weighted_a = duration_a * (1 + params.density_weight * (a.total / duration_a))
    weighted_b = duration_b * (1 + params.density_weight * (b.total / duration_b))
    difference = abs(weighted_a - weighted_b)
    allowed = (
        params.min_gap
        + (min(weighted_a, weighted_b) + difference * params.average_factor) * params.gap_factor
    )
    return gap <= allowed


def _cluster(tag: _TagBuckets, params: ClusteringParams) -> list[MarkerSpan]:
    merged = list(tag.buckets)
    for _ in range(10):  # the original stops after 10 passes even if merges remain
        passed: list[_Bucket] = []
        changed = False
        i = 0
        while i < len(merged):
            if i + 1 < len(merged) and _should_merge(merged[i], merged[i + 1], tag.frame_interval, params):
                a, b = merged[i], merged[i + 1]
                passed.append(_Bucket(a.start, b.end, a.total + b.total))
                i += 2  # a merged pair is not merged again within the same pass
                changed = True
            else:
                passed.append(merged[i])
                i += 1
        merged = passed
        if not changed:
            break
    return [
        MarkerSpan(start=b.start, end=b.end, totalConfidence=b.total)
        for b in merged
        if b.duration(tag.frame_interval) >= tag.min_duration
    ]


def marker_inputs(result: AIVideoResult, categories: CategoryConfig) -> dict[str, list[_TagBuckets]]:
    """The parameter-independent part of the clustering, computed once for the optimize sweep
    (marker_optimizer.py)."""
    inputs: dict[str, list[_TagBuckets]] = {}
    duration = result.metadata.duration
    for cat in _configured(result, categories):
        tags = inputs[cat.name] = []  # a category with no marker tags still answers {}
        for tag, runs in cat.runs.items():
            settings = cat.settings.get(tag)
            if settings is None:
                continue
            min_duration = settings.min_marker_duration.seconds(duration)
            if min_duration <= 0:  # "no markers for this tag" (§1.3)
                continue
            buckets = _initial_buckets(runs, cat.frame_interval, settings.tag_threshold)
            tags.append(_TagBuckets(settings.renamed_tag, cat.frame_interval, min_duration, buckets))
    return inputs


def markers_for(
    inputs: Mapping[str, list[_TagBuckets]], params: ClusteringParams
) -> dict[str, dict[str, list[MarkerSpan]]]:
    return {category: {t.renamed_tag: _cluster(t, params) for t in tags} for category, tags in inputs.items()}


def marker_spans(
    result: AIVideoResult, categories: CategoryConfig, params: ClusteringParams = DEFAULT_CLUSTERING
) -> dict[str, dict[str, list[MarkerSpan]]]:
    """`tag_timespans`: per configured category, per RenamedTag with MinMarkerDuration > 0, the
    clustered markers (possibly none). MaxGap is not used by this method (§3.6.3)."""
    return markers_for(marker_inputs(result, categories), params)


# --- (5) the /process_video/ answer (§1.3) ----------------------------------------------------------


class VideoTagInfo(BaseModel):
    """`result.video_tag_info` of `/process_video/`; all four keys are required by the plugin."""

    video_duration: float
    video_tags: dict[str, list[str]]
    tag_totals: dict[str, dict[str, float]]
    tag_timespans: dict[str, dict[str, list[MarkerSpan]]]


def build_video_tag_info(
    result: AIVideoResult, categories: CategoryConfig, params: ClusteringParams = DEFAULT_CLUSTERING
) -> VideoTagInfo:
    video_tags, tag_totals = scene_tags(result, categories)
    return VideoTagInfo(
        video_duration=result.metadata.duration,
        video_tags=video_tags,
        tag_totals=tag_totals,
        tag_timespans=marker_spans(result, categories, params),
    )
