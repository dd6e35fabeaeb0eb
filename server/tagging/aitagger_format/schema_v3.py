"""The v3 routes' video result (aitagger-contract.md §2): schema 3 raw runs under the models' own
tag names, with no confidences, runs merged across gaps of up to 4 s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stash_vision.catalog.entries import TaggerSpec

from .timespans import FrameResult, raw_runs

# v3 merges raw runs across small gaps (server config max_timespan_merge_seconds, §2).
V3_MAX_MERGE_S = 4.0


def v3_result(
    frames: Sequence[FrameResult], duration: float, frame_interval: float, models: Sequence[TaggerSpec]
) -> dict[str, Any]:
    runs = raw_runs(frames, frame_interval, max_merge=V3_MAX_MERGE_S)
    return {
        "schema_version": 3,
        "duration": duration,
        "frame_interval": float(frame_interval),
        "models": [
            {
                "name": spec.display_name,
                "identifier": spec.identifier,
                "version": spec.version,
                "categories": list(spec.categories),
                "type": "ImClass",
            }
            for spec in models
        ],
        "timespans": {
            category: {
                tag: [{"start": span.start, "end": span.end, "confidence": None} for span in spans]
                for tag, spans in by_tag.items()
            }
            for category, by_tag in runs.items()
        },
    }
