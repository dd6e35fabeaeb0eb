"""The `/optimize_timeframe_settings/` sweep (§1.4, §3.6.5): which clustering parameters turn a
video's stored raw runs into the markers a person marked by hand, and the route's whole answer.

The original only logs the best combinations; this answers them to the caller."""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias, TypeGuard

from stash_vision.server.errors import InvalidInput

from .ai_json import AIVideoResult, load_ai_json
from .categories import CategoryConfig
from .timespans import ClusteringParams, marker_inputs, markers_for

# `timespan_generation_systems.Clustering.sweep` of the original's config, one list per parameter
# in ClusteringParams order.
DEFAULT_SWEEP: tuple[tuple[float, ...], ...] = (
    (0.0, 0.01, 0.02, 0.03, 0.04, 0.05, 0.1, 0.2),
    (0.7, 0.8, 0.93, 0.85, 0.87, 0.9, 0.95, 1.0),
    (0.0, 0.1, 0.15, 0.17, 0.2, 0.225, 0.25, 0.275, 0.3, 0.4),
    (0.0, 1.0, 2.0, 4.0, 6.0),
)


class SpanLike(Protocol):
    @property
    def start(self) -> float: ...

    @property
    def end(self) -> float: ...


@dataclass(frozen=True, slots=True)
class Span:
    """A desired marker span of an optimize request."""

    start: float
    end: float


# category -> RenamedTag -> spans
SpanMap: TypeAlias = Mapping[str, Mapping[str, Sequence[SpanLike]]]


@dataclass(frozen=True, slots=True)
class SweepResult:
    loss: float  # seconds_diff + 2 × count_mismatch
    params: ClusteringParams
    span_count: int  # markers the params produce
    seconds_diff: float  # Σ symmetric time difference over the desired tags
    count_mismatch: int  # |#markers produced − #markers desired|


def _overlap(a: Sequence[SpanLike], b: Sequence[SpanLike]) -> float:
    """Seconds covered by both lists; each list is assumed non-overlapping (as the original does)."""
    a = sorted(a, key=lambda s: s.start)
    b = sorted(b, key=lambda s: s.start)
    i = j = 0
    total = 0.0
    while i < len(a) and j < len(b):
        low = max(a[i].start, b[j].start)
        high = min(a[i].end, b[j].end)
        if low < high:
            total += high - low
        if a[i].end < b[j].end:
            i += 1
        else:
            j += 1
    return total


def _span_count(spans: SpanMap) -> int:
    return sum(len(tag_spans) for by_tag in spans.values() for tag_spans in by_tag.values())


def timespan_loss(actual: SpanMap, desired: SpanMap) -> tuple[float, int]:
    """`(seconds_diff, count_mismatch)` of actual markers against desired ones (§3.6.5).

    Only tags present in `desired` add seconds (actual-only tags are free except in the count);
    spans are measured `end − start` here, without the frame interval, as the original does.
    """
    seconds = 0.0
    for category in dict.fromkeys([*actual, *desired]):
        actual_tags = actual.get(category, {})
        for tag, wanted in desired.get(category, {}).items():
            got = actual_tags.get(tag, ())
            got_total = sum(s.end - s.start for s in got)
            wanted_total = sum(s.end - s.start for s in wanted)
            if got_total == 0.0 and wanted_total == 0.0:
                continue
            seconds += (got_total + wanted_total) - 2.0 * _overlap(got, wanted)
    return seconds, abs(_span_count(actual) - _span_count(desired))


def optimize_clustering(
    result: AIVideoResult,
    categories: CategoryConfig,
    desired: SpanMap,
    *,
    sweep: Sequence[Sequence[float]] = DEFAULT_SWEEP,
    top: int = 10,
) -> list[SweepResult]:
    """The `top` parameter combinations with the lowest loss, best first (ties keep sweep order).

    The original only logs these; the caller decides what to do with them.
    """
    if len(sweep) != 4:
        raise ValueError(f"the Clustering sweep needs 4 lists (one per parameter), got {len(sweep)}")
    inputs = marker_inputs(result, categories)
    results: list[SweepResult] = []
    for combo in dict.fromkeys(itertools.product(*sweep)):
        params = ClusteringParams(*combo)
        actual = markers_for(inputs, params)
        seconds, mismatch = timespan_loss(actual, desired)
        results.append(SweepResult(seconds + 2 * mismatch, params, _span_count(actual), seconds, mismatch))
    results.sort(key=lambda r: r.loss)
    return results[:top]


def _parse_span(item: str | Mapping[str, Any], tag: str) -> Span:
    data: Any = item
    if isinstance(item, str):
        try:
            data = json.loads(item)
        except json.JSONDecodeError as exc:
            raise ValueError(f"desired span of {tag!r} is not JSON: {exc}") from None
    if not isinstance(data, Mapping):
        raise ValueError(f"desired span of {tag!r} must be an object with start and end, got {item!r}")
    start, end = data.get("start"), data.get("end")
    if not (_is_number(start) and _is_number(end)):
        raise ValueError(f"desired span of {tag!r} needs numeric start and end, got {item!r}")
    return Span(float(start), float(end))


def _is_number(value: object) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def desired_spans(
    desired_timespan_data: Mapping[str, Sequence[str | Mapping[str, Any]]], categories: CategoryConfig
) -> dict[str, dict[str, list[Span]]]:
    """The optimize request's `desired_timespan_data` (RenamedTag -> JSON-string spans, §1.4) by
    category; tags no CSV renames to go to "Unknown"."""
    spans: dict[str, dict[str, list[Span]]] = {}
    for tag, items in desired_timespan_data.items():
        category = categories.category_of_renamed(tag)
        spans.setdefault(category, {})[tag] = [_parse_span(item, tag) for item in items]
    return spans


def optimize_marker_settings(
    categories: CategoryConfig, existing: Any, desired_timespan_data: Any, top: int = 10
) -> list[dict[str, float]]:
    """The clustering parameter sweep of `/optimize_timeframe_settings/` (§1.4, §3.6)."""
    try:
        loaded = load_ai_json(existing, categories)
        desired = desired_spans(desired_timespan_data, categories)
    except (ValueError, TypeError, KeyError) as error:
        raise InvalidInput(f"cannot read the request: {error}") from None
    if not desired:
        raise InvalidInput("desired_timespan_data names no tag with spans")
    return [
        {
            "density_weight": r.params.density_weight,
            "gap_factor": r.params.gap_factor,
            "average_factor": r.params.average_factor,
            "min_gap": r.params.min_gap,
            "loss": round(r.loss, 4),
            "seconds_difference": round(r.seconds_diff, 4),
            "marker_count_difference": r.count_mismatch,
        }
        for r in optimize_clustering(loaded.result, categories, desired, top=top)
    ]
