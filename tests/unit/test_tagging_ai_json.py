"""`.AI.json` schema v1 output, schema detection and v0 -> v1 conversion (contract §1.6, §3.9)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from stash_vision.server.tagging.aitagger_format.ai_json import (
    AIVideoResult,
    ModelInfo,
    TagTimeFrame,
    VideoMetadata,
    load_ai_json,
    loads_ai_json,
)
from stash_vision.server.tagging.aitagger_format.categories import CategoryConfig, parse_category_rows

HEADER = "OriginalTag,RenamedTag,MinMarkerDuration,MaxGap,RequiredDuration,TagThreshold"


def _categories() -> CategoryConfig:
    return CategoryConfig.of(
        [
            parse_category_rows(
                [HEADER, "Blowjob,Blowjob_AI,15,6,20s,0.5", "Kissing,Kissing_AI,10,4,20s,0.5"],
                "actions",
                "a.csv",
            ),
            parse_category_rows([HEADER, "Boobs,Boobs_AI,-1,6,20s,0.5"], "bodyparts", "b.csv"),
        ]
    )


def _v0(models: dict[str, Any], tags: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "video_metadata": {"video_id": 42, "duration": 30.5, "phash": None, "models": models},
        "tags": tags or {},
    }


def test_serialisation_is_compact_and_omits_null_end_and_confidence() -> None:
    result = AIVideoResult(
        metadata=VideoMetadata(
            duration=10,
            models={
                "actions": ModelInfo(
                    frame_interval=2, threshold=0.3, version=2, ai_model_id=200, file_name="gentler_river"
                )
            },
        ),
        timespans={
            "actions": {"Kissing": [TagTimeFrame(start=0), TagTimeFrame(start=2, end=4, confidence=0.5)]}
        },
    )

    assert result.to_json() == (
        '{"schema_version":1,"metadata":{"duration":10.0,"models":{"actions":{"frame_interval":2.0,'
        '"threshold":0.3,"version":2.0,"ai_model_id":200,"file_name":"gentler_river"}}},'
        '"timespans":{"actions":{"Kissing":[{"start":0.0},{"start":2.0,"end":4.0,"confidence":0.5}]}}}'
    )


def test_file_name_is_always_written_even_when_unknown() -> None:
    """§3.9: the original cannot re-read a file without the key, so a null stays as null."""
    info = ModelInfo(frame_interval=2, threshold=0.3, version=0.1, ai_model_id=950)
    result = AIVideoResult(metadata=VideoMetadata(duration=1, models={"actions": info}), timespans={})

    text = result.to_json()

    assert '"ai_model_id":950,"file_name":null}' in text
    assert json.loads(text)["metadata"]["models"]["actions"]["file_name"] is None


def test_v1_without_file_name_key_is_accepted_and_written_back_with_it() -> None:
    stored = {
        "schema_version": 1,
        "metadata": {
            "duration": 5.0,
            "models": {
                "actions": {"frame_interval": 2.0, "threshold": 0.3, "version": 1.9, "ai_model_id": 950}
            },
        },
        "timespans": {"actions": {"Kissing": [{"start": 0.0, "confidence": 0.9}]}},
    }

    loaded = load_ai_json(stored, _categories())

    assert not loaded.converted
    assert loaded.result.metadata.models["actions"].file_name is None
    assert '"file_name":null' in loaded.result.to_json()


def test_v1_round_trip_is_byte_identical() -> None:
    text = (
        '{"schema_version":1,"metadata":{"duration":11.26,"models":{"actions":{"frame_interval":2.0,'
        '"threshold":0.3,"version":1.9,"ai_model_id":950,"file_name":"vivid_galaxy_standin"}}},'
        '"timespans":{"actions":{"69":[{"start":0.0,"confidence":0.92}],'
        '"Kissing":[{"start":6.0,"end":8.0,"confidence":0.55}],"Fingering":[]},"bodyparts":{}}}'
    )

    assert loads_ai_json(text, _categories()).result.to_json() == text


@pytest.mark.parametrize("version", [0, 2, 3, "1", True, None])
def test_unknown_schema_version_is_a_clear_error(version: object) -> None:
    data = {"schema_version": version, "metadata": {"duration": 1, "models": {}}, "timespans": {}}

    with pytest.raises(ValueError, match=r"unsupported \.AI\.json schema_version"):
        load_ai_json(data, _categories())


def test_v3_object_is_refused() -> None:
    v3 = {"schema_version": 3, "duration": 61.5, "frame_interval": 2.0, "models": [], "timespans": {}}

    with pytest.raises(ValueError, match="schema_version 3"):
        load_ai_json(v3, _categories())


@pytest.mark.parametrize("data", [[], "text", 3, None])
def test_non_object_is_refused(data: object) -> None:
    with pytest.raises(ValueError, match="must be a JSON object"):
        load_ai_json(data, _categories())


def test_invalid_json_text_and_invalid_content_are_value_errors() -> None:
    with pytest.raises(ValueError, match="not valid JSON"):
        loads_ai_json("{oops", _categories())
    with pytest.raises(ValueError):  # pydantic ValidationError is a ValueError
        load_ai_json({"schema_version": 1, "metadata": {"duration": "long"}, "timespans": {}}, _categories())


def test_v0_is_detected_and_converted() -> None:
    data = _v0(
        {
            "actiondetection": {"version": 2.0, "ai_model_config": {"frame_interval": 2.0, "threshold": 0.3}},
            "bodyparts": {"version": 1.0, "ai_model_config": {"frame_interval": 4, "threshold": 0.4}},
        },
        {
            "Kissing": {
                "ai_model_name": "actiondetection",
                "time_frames": [{"start": 0, "end": 8, "confidence": 0.7}],
            },
            "Boobs": {"ai_model_name": "bodyparts", "time_frames": [{"start": 4.0, "confidence": 0.9}]},
            "Mystery": {
                "ai_model_name": "actiondetection",
                "time_frames": [{"start": 2.0, "confidence": 0.6}],
            },
            "Blowjob": {
                "ai_model_name": "actiondetection",
                "time_frames": [{"start": 10.0, "confidence": 0.8}],
            },
        },
    )

    loaded = load_ai_json(data, _categories())

    assert loaded.converted
    assert loaded.result.to_json() == (
        '{"schema_version":1,"metadata":{"duration":30.5,"models":{'
        '"actions":{"frame_interval":2.0,"threshold":0.3,"version":2.0,"ai_model_id":200,"file_name":"gentler_river"},'
        '"bodyparts":{"frame_interval":4.0,"threshold":0.4,"version":0.5,"ai_model_id":200,"file_name":"iconic_sky"}}},'
        '"timespans":{"actions":{"Kissing":[{"start":0.0,"end":8.0,"confidence":0.7}],'
        '"Blowjob":[{"start":10.0,"confidence":0.8}]},'
        '"bodyparts":{"Boobs":[{"start":4.0,"confidence":0.9}]},'
        '"Unknown":{"Mystery":[{"start":2.0,"confidence":0.6}]}}}'
    )


def test_v0_old_action_model_becomes_version_0_1_free_tier_without_file_name() -> None:
    data = _v0(
        {"actiondetection": {"version": 1.0, "ai_model_config": {"frame_interval": 2, "threshold": 0.5}}}
    )

    result = load_ai_json(data, _categories()).result

    info = result.metadata.models["actions"]
    assert (info.version, info.ai_model_id, info.file_name) == (0.1, 950, None)
    # Written with file_name null, and readable again (the original fails here, §3.9).
    again = loads_ai_json(result.to_json(), _categories())
    assert again.result == result


def test_v0_combined_pipelines_expand_to_their_models() -> None:
    config = {"frame_interval": 1.0, "threshold": 0.2}
    bdsm = load_ai_json(
        _v0({"actiondetection_bodyparts_bdsm": {"version": 1.0, "ai_model_config": config}}), _categories()
    ).result
    both = load_ai_json(
        _v0({"actiondetection_bodyparts": {"version": 1.0, "ai_model_config": config}}), _categories()
    ).result

    summary = {c: (m.version, m.ai_model_id, m.file_name) for c, m in bdsm.metadata.models.items()}
    assert summary == {
        "bdsm": (0.7, 200, "true_lake"),
        "actions": (2.0, 200, "gentler_river"),
        "bodyparts": (0.5, 200, "iconic_sky"),
    }
    assert list(bdsm.metadata.models) == ["bdsm", "actions", "bodyparts"]
    assert list(both.metadata.models) == ["actions", "bodyparts"]
    assert all(m.frame_interval == 1.0 and m.threshold == 0.2 for m in bdsm.metadata.models.values())


def test_v0_unknown_pipeline_is_dropped() -> None:
    data = _v0({"vid_giddy": {"version": 1.0, "ai_model_config": {"frame_interval": 2, "threshold": 0.5}}})

    assert load_ai_json(data, _categories()).result.metadata.models == {}
