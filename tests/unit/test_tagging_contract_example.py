"""The complete worked example of contract §1.3, and replays of the original server's golden answers.

The per-frame inputs are rebuilt from the raw runs of the expected `json_result`: a run
`{start, end, confidence}` is the frames `start, start+fi, …, end`, each with that confidence.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from stash_vision.server.tagging.aitagger_format.ai_json import ModelInfo, loads_ai_json
from stash_vision.server.tagging.aitagger_format.categories import (
    CategoryConfig,
    load_category_dir,
    parse_category_rows,
)
from stash_vision.server.tagging.aitagger_format.timespans import (
    FrameResult,
    build_video_tag_info,
    result_from_frames,
)
from tests.conftest import shared_file

HEADER = "OriginalTag,RenamedTag,MinMarkerDuration,MaxGap,RequiredDuration,TagThreshold"

# Contract §1.3, verbatim.
EXAMPLE_RESPONSE = r"""{"result": {
  "json_result": "{\"schema_version\":1,\"metadata\":{\"duration\":61.5,\"models\":{\"actions\":{\"frame_interval\":2.0,\"threshold\":0.3,\"version\":2.0,\"ai_model_id\":200,\"file_name\":\"gentler_river\"},\"bodyparts\":{\"frame_interval\":2.0,\"threshold\":0.3,\"version\":0.5,\"ai_model_id\":200,\"file_name\":\"iconic_sky\"}}},\"timespans\":{\"actions\":{\"Kissing\":[{\"start\":0.0,\"end\":8.0,\"confidence\":0.77}],\"Blowjob\":[{\"start\":10.0,\"end\":12.0,\"confidence\":0.91},{\"start\":14.0,\"confidence\":0.88},{\"start\":16.0,\"end\":18.0,\"confidence\":0.93},{\"start\":20.0,\"confidence\":0.72},{\"start\":22.0,\"confidence\":0.41},{\"start\":26.0,\"confidence\":0.8},{\"start\":28.0,\"end\":30.0,\"confidence\":0.85},{\"start\":32.0,\"end\":34.0,\"confidence\":0.9},{\"start\":36.0,\"confidence\":0.87},{\"start\":38.0,\"confidence\":0.66},{\"start\":40.0,\"confidence\":0.55}],\"Cumshot\":[{\"start\":50.0,\"confidence\":0.62}]},\"bodyparts\":{\"Boobs\":[{\"start\":0.0,\"end\":60.0,\"confidence\":0.99}]}}}",
  "video_tag_info": {
    "video_duration": 61.5,
    "video_tags": {"actions": ["Blowjob_AI"], "bodyparts": ["Boobs_AI"]},
    "tag_totals": {"actions": {"Kissing": 10.0, "Blowjob": 28.0, "Cumshot": 2.0}, "bodyparts": {"Boobs": 62.0}},
    "tag_timespans": {"actions": {"Kissing_AI": [{"start": 0.0, "end": 8.0, "totalConfidence": 7.7}],
                                  "Blowjob_AI": [{"start": 10.0, "end": 40.0, "totalConfidence": 71.04}],
                                  "Cumshot_AI": []},
                      "bodyparts": {}}}}}"""


def _example_categories() -> CategoryConfig:
    actions = parse_category_rows(
        [
            HEADER,
            "Blowjob,Blowjob_AI,15,6,20s,0.5",
            "Kissing,Kissing_AI,10,4,20s,0.5",
            "Cumshot,Cumshot_AI,4,4,10s,0.5",
        ],
        "actions",
        "actions.csv",
    )
    bodyparts = parse_category_rows([HEADER, "Boobs,Boobs_AI,-1,6,20s,0.5"], "bodyparts", "bodyparts.csv")
    return CategoryConfig.of([actions, bodyparts])


def _frames_from_json_result(stored: dict[str, Any]) -> list[FrameResult]:
    """Per-frame tagger outputs that produce exactly the runs of a `.AI.json` (nominal k × fi grid)."""
    interval = {cat: info["frame_interval"] for cat, info in stored["metadata"]["models"].items()}
    fi = next(iter(interval.values()))
    assert all(v == fi for v in interval.values())
    by_time: dict[float, dict[str, list[tuple[str, float]]]] = {}
    last = 0.0
    for category, tags in stored["timespans"].items():
        for tag, runs in tags.items():
            for run in runs:
                t = run["start"]
                end = run.get("end", t)
                while t <= end:
                    by_time.setdefault(t, {}).setdefault(category, []).append((tag, run["confidence"]))
                    last = max(last, t)
                    t += fi
    frames = []
    for k in range(round(last / fi) + 1):
        t = k * fi
        hits = by_time.get(t, {})
        # Every category that ran appears in every frame, as the original's coalescer emits it.
        frames.append(FrameResult(t, {category: hits.get(category, []) for category in stored["timespans"]}))
    return frames


def _model_infos(stored: dict[str, Any]) -> dict[str, ModelInfo]:
    return {cat: ModelInfo.model_validate(info) for cat, info in stored["metadata"]["models"].items()}


def test_contract_example_json_result_is_byte_identical() -> None:
    expected = json.loads(EXAMPLE_RESPONSE)["result"]
    stored = json.loads(expected["json_result"])
    frames = _frames_from_json_result(stored)
    assert len(frames) == 31

    result = result_from_frames(
        frames, duration=61.5, frame_interval=2, models=_model_infos(stored), max_merge=0.0
    )

    assert result.to_json() == expected["json_result"]


def test_contract_example_video_tag_info_is_identical() -> None:
    expected = json.loads(EXAMPLE_RESPONSE)["result"]
    stored = json.loads(expected["json_result"])
    result = result_from_frames(
        _frames_from_json_result(stored), duration=61.5, frame_interval=2.0, models=_model_infos(stored)
    )

    info = build_video_tag_info(result, _example_categories()).model_dump()

    assert info == expected["video_tag_info"]
    # Same key order as the original answer, too.
    assert json.dumps(info) == json.dumps(expected["video_tag_info"])


def test_contract_example_answer_from_stored_file_is_identical() -> None:
    """The "nothing to rerun" path answers from the stored `.AI.json` (§3.7) with the same info."""
    expected = json.loads(EXAMPLE_RESPONSE)["result"]
    categories = _example_categories()
    loaded = loads_ai_json(expected["json_result"], categories)

    assert not loaded.converted
    assert loaded.result.to_json() == expected["json_result"]
    assert build_video_tag_info(loaded.result, categories).model_dump() == expected["video_tag_info"]


# --- the literal above is the contract's ------------------------------------------------------------


def test_example_literal_matches_contract_document() -> None:
    text = shared_file("docs/aitagger-contract.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, flags=re.S)
    example = next(b for b in blocks if "gentler_river" in b and "video_tag_info" in b)
    assert json.loads(example) == json.loads(EXAMPLE_RESPONSE)


# --- golden answers of the original server (stand-in model, category "actions") -----------------------

GOLDEN = ["process_video_Megamind", "process_video_vtest_DECORD_BACKEND"]


@pytest.mark.parametrize("name", GOLDEN)
def test_golden_answers_replay_exactly(name: str) -> None:
    response = json.loads(shared_file(f"testdata/golden/{name}.response.json").read_text(encoding="utf-8"))
    request = json.loads(shared_file(f"testdata/golden/{name}.request.json").read_text(encoding="utf-8"))
    expected = response["body"]["result"]
    stored = json.loads(expected["json_result"])
    categories = load_category_dir(shared_file("models/skier233-standin/categories"))

    result = result_from_frames(
        _frames_from_json_result(stored),
        duration=stored["metadata"]["duration"],
        frame_interval=request["frame_interval"],
        models=_model_infos(stored),
    )
    info = build_video_tag_info(result, categories).model_dump()

    assert result.to_json() == expected["json_result"]
    # video_tags is a set in the original: order is arbitrary there.
    want = expected["video_tag_info"]
    assert {k: set(v) for k, v in info["video_tags"].items()} == {
        k: set(v) for k, v in want["video_tags"].items()
    }
    # Float-exact, including 909.3000000000002 (same operation order as the original).
    assert info["tag_totals"] == want["tag_totals"]
    assert info["tag_timespans"] == want["tag_timespans"]
    assert info["video_duration"] == want["video_duration"]
