"""Incremental re-processing decisions and the merge of rerun categories (contract §3.7)."""

from __future__ import annotations

import pytest

from stash_vision.server.tagging.aitagger_format.ai_json import (
    AIVideoResult,
    ModelInfo,
    TagTimeFrame,
    VideoMetadata,
    loads_ai_json,
)
from stash_vision.server.tagging.aitagger_format.categories import CategoryConfig
from stash_vision.server.tagging.aitagger_format.reprocess import (
    Action,
    ActiveModel,
    Reprocess,
    json_result_string,
    merge_results,
    needs_reprocessed,
    plan_reprocessing,
)
from stash_vision.server.tagging.aitagger_format.timespans import FrameResult, result_from_frames

GENTLER_RIVER = ActiveModel("gentler_river", 2.0, 200, ("actions",))
DISTINCTIVE_HAZE = ActiveModel("distinctive_haze", 2.0, 400, ("actions",))
GENTLER_RIVER_FULL = ActiveModel("gentler_river_full", 2.0, 900, ("actions",))
VIVID_GALAXY = ActiveModel("vivid_galaxy", 1.9, 950, ("actions",))
ICONIC_SKY = ActiveModel("iconic_sky", 0.5, 200, ("bodyparts",))


def _stored(model: ActiveModel, frame_interval: float = 2.0, threshold: float = 0.3) -> ModelInfo:
    return model.model_info(frame_interval, threshold)


def _decide(
    stored: ModelInfo, model: ActiveModel, frame_interval: float = 2.0, threshold: float = 0.3
) -> Reprocess:
    return needs_reprocessed(
        stored,
        frame_interval=frame_interval,
        threshold=threshold,
        version=model.version,
        identifier=model.identifier,
        file_name=model.file_name,
    )


# --- needs_reprocessed: every branch ---------------------------------------------------------------------


def test_same_model_and_version_is_not_needed() -> None:
    assert _decide(_stored(GENTLER_RIVER), GENTLER_RIVER) is Reprocess.NOT_NEEDED


def test_same_version_more_accurate_variant_of_a_free_tier_result_is_required() -> None:
    free = ModelInfo(frame_interval=2, threshold=0.3, version=2.0, ai_model_id=970, file_name="free_full")

    assert _decide(free, GENTLER_RIVER) is Reprocess.REQUIRED


def test_same_version_more_accurate_paid_variant_is_optional() -> None:
    assert _decide(_stored(DISTINCTIVE_HAZE), GENTLER_RIVER) is Reprocess.MORE_ACCURATE
    assert _decide(_stored(GENTLER_RIVER_FULL), DISTINCTIVE_HAZE) is Reprocess.MORE_ACCURATE


def test_same_version_equal_or_less_accurate_variant_is_not_needed() -> None:
    assert _decide(_stored(GENTLER_RIVER), DISTINCTIVE_HAZE) is Reprocess.NOT_NEEDED
    other_file_same_id = ActiveModel("renamed_river", 2.0, 200, ("actions",))
    assert _decide(_stored(GENTLER_RIVER), other_file_same_id) is Reprocess.NOT_NEEDED


def test_other_version_is_required() -> None:
    assert _decide(_stored(VIVID_GALAXY), GENTLER_RIVER) is Reprocess.REQUIRED
    assert _decide(_stored(GENTLER_RIVER), VIVID_GALAXY) is Reprocess.REQUIRED  # even "older"


def test_v0_converted_file_without_file_name_compares_by_version() -> None:
    old = ModelInfo(frame_interval=2, threshold=0.3, version=0.1, ai_model_id=950, file_name=None)

    assert _decide(old, GENTLER_RIVER) is Reprocess.REQUIRED


@pytest.mark.parametrize(
    ("stored_fi", "new_fi", "expected"),
    [
        (2.0, 2.0, Reprocess.NOT_NEEDED),
        (2.0, 4.0, Reprocess.NOT_NEEDED),  # stored frames are a superset of the new sampling
        (2.0, 3.0, Reprocess.REQUIRED),
        (4.0, 2.0, Reprocess.REQUIRED),  # finer sampling wanted
        (0.5, 2.0, Reprocess.NOT_NEEDED),
        (0.0, 2.0, Reprocess.REQUIRED),  # unusable stored interval (the original divides by zero)
    ],
)
def test_frame_interval_must_be_a_multiple_of_the_stored_one(
    stored_fi: float, new_fi: float, expected: Reprocess
) -> None:
    assert (
        _decide(_stored(GENTLER_RIVER, frame_interval=stored_fi), GENTLER_RIVER, frame_interval=new_fi)
        is expected
    )


def test_lower_threshold_than_stored_is_required_higher_is_not() -> None:
    stored = _stored(GENTLER_RIVER, threshold=0.3)

    assert _decide(stored, GENTLER_RIVER, threshold=0.2) is Reprocess.REQUIRED
    assert _decide(stored, GENTLER_RIVER, threshold=0.5) is Reprocess.NOT_NEEDED
    # Config mismatch overrides a "more accurate" level too.
    assert _decide(_stored(DISTINCTIVE_HAZE), GENTLER_RIVER, threshold=0.1) is Reprocess.REQUIRED


# --- plans ------------------------------------------------------------------------------------------------


def _existing(*models: tuple[str, ModelInfo]) -> AIVideoResult:
    return AIVideoResult(
        metadata=VideoMetadata(duration=60.0, models=dict(models)),
        timespans={category: {"Old": [TagTimeFrame(start=0.0, confidence=0.9)]} for category, _ in models},
    )


def test_without_existing_data_everything_runs() -> None:
    plan = plan_reprocessing(None, [GENTLER_RIVER, ICONIC_SKY], frame_interval=2.0, threshold=0.3)

    assert plan.run_categories == ("actions", "bodyparts")
    assert plan.skipped_categories == ()
    assert plan.models_to_run == (GENTLER_RIVER, ICONIC_SKY)
    assert all(p.level is None for p in plan.categories)
    assert not plan.nothing_to_run


def test_category_missing_from_stored_metadata_runs_and_stored_one_is_skipped() -> None:
    existing = _existing(("actions", _stored(GENTLER_RIVER)))

    plan = plan_reprocessing(existing, [GENTLER_RIVER, ICONIC_SKY], frame_interval=2.0, threshold=0.3)

    assert plan.run_categories == ("bodyparts",)
    assert plan.skipped_categories == ("actions",)
    assert plan.models_to_run == (ICONIC_SKY,)  # a fully skipped model is not executed
    assert [(p.category, p.action, p.level) for p in plan.categories] == [
        ("actions", Action.SKIP, Reprocess.NOT_NEEDED),
        ("bodyparts", Action.RUN, None),
    ]


def test_more_accurate_variant_runs_only_with_the_option() -> None:
    existing = _existing(("actions", _stored(DISTINCTIVE_HAZE)))

    default = plan_reprocessing(existing, [GENTLER_RIVER], frame_interval=2.0, threshold=0.3)
    opted = plan_reprocessing(
        existing,
        [GENTLER_RIVER],
        frame_interval=2.0,
        threshold=0.3,
        reprocess_with_more_accurate_same_model=True,
    )

    assert default.nothing_to_run
    assert default.categories[0].level is Reprocess.MORE_ACCURATE
    assert opted.run_categories == ("actions",)


def test_multi_category_model_runs_when_one_category_needs_it() -> None:
    combined = ActiveModel("combo", 1.0, 100, ("actions", "bodyparts"))
    existing = _existing(("actions", _stored(combined)))

    plan = plan_reprocessing(existing, [combined], frame_interval=2.0, threshold=0.3)

    assert plan.run_categories == ("bodyparts",)
    assert plan.skipped_categories == ("actions",)
    assert plan.models_to_run == (combined,)
    infos = plan.model_infos(2.0, 0.3)
    assert list(infos) == ["bodyparts"]
    assert infos["bodyparts"] == ModelInfo(
        frame_interval=2.0, threshold=0.3, version=1.0, ai_model_id=100, file_name="combo"
    )


def test_same_models_and_request_values_need_no_work() -> None:
    existing = _existing(("actions", _stored(GENTLER_RIVER)), ("bodyparts", _stored(ICONIC_SKY)))

    plan = plan_reprocessing(existing, [GENTLER_RIVER, ICONIC_SKY], frame_interval=4.0, threshold=0.5)

    assert plan.nothing_to_run
    assert plan.models_to_run == ()


# --- merge -------------------------------------------------------------------------------------------------


def test_merge_replaces_metadata_and_timespans_of_a_rerun_category() -> None:
    """Only the model changed (vivid_galaxy -> gentler_river): the shadowing bug of the original
    3.1.x-3.2.1 would keep the stale entry; the new model's results must replace it."""
    existing = _existing(("actions", _stored(VIVID_GALAXY)), ("bodyparts", _stored(ICONIC_SKY)))
    before = existing.to_json()
    plan = plan_reprocessing(existing, [GENTLER_RIVER, ICONIC_SKY], frame_interval=2.0, threshold=0.3)
    assert plan.run_categories == ("actions",)
    frames = [
        FrameResult(0.0, {"actions": [("Kissing", 0.8)]}),
        FrameResult(2.0, {"actions": [("Kissing", 0.8)]}),
    ]
    fresh = result_from_frames(frames, duration=61.0, frame_interval=2.0, models=plan.model_infos(2.0, 0.3))

    merged = merge_results(existing, fresh, plan.run_categories)

    assert merged.metadata.models["actions"] == _stored(GENTLER_RIVER)
    assert merged.timespans["actions"] == {"Kissing": [TagTimeFrame(start=0.0, end=2.0, confidence=0.8)]}
    assert merged.metadata.models["bodyparts"] == _stored(ICONIC_SKY)  # untouched
    assert merged.timespans["bodyparts"] == existing.timespans["bodyparts"]
    assert list(merged.metadata.models) == ["actions", "bodyparts"]  # key order kept
    assert list(merged.timespans) == ["actions", "bodyparts"]
    assert merged.metadata.duration == 60.0  # stored duration kept, as the original
    assert existing.to_json() == before  # the input is not mutated


def test_merge_of_a_rerun_that_found_nothing_clears_the_old_runs() -> None:
    existing = _existing(("actions", _stored(VIVID_GALAXY)))
    frames = [FrameResult(0.0, {"actions": []})]
    fresh = result_from_frames(
        frames, duration=60.0, frame_interval=2.0, models={"actions": _stored(GENTLER_RIVER)}
    )

    merged = merge_results(existing, fresh, ["actions"])

    assert merged.timespans == {"actions": {}}


def test_merge_adds_new_categories_at_the_end() -> None:
    existing = _existing(("actions", _stored(GENTLER_RIVER)))
    frames = [FrameResult(0.0, {"bodyparts": [("Boobs", 0.9)]})]
    fresh = result_from_frames(
        frames, duration=60.0, frame_interval=2.0, models={"bodyparts": _stored(ICONIC_SKY)}
    )

    merged = merge_results(existing, fresh, ["bodyparts"])

    assert list(merged.metadata.models) == ["actions", "bodyparts"]
    assert merged.timespans["bodyparts"] == {"Boobs": [TagTimeFrame(start=0.0, confidence=0.9)]}


def test_merge_needs_metadata_for_every_rerun_category() -> None:
    existing = _existing(("actions", _stored(GENTLER_RIVER)))

    with pytest.raises(ValueError, match="bodyparts"):
        merge_results(existing, existing, ["bodyparts"])


def test_converted_v0_with_current_models_needs_no_run() -> None:
    """A v0 file from gentler_river (actiondetection 2.0): nothing to run, but the answer must
    still carry the converted v1 `json_result` (loaded.converted)."""
    v0 = (
        '{"video_metadata": {"video_id": 1, "duration": 20.0, "phash": null, "models": {"actiondetection":'
        ' {"version": 2.0, "ai_model_config": {"frame_interval": 2.0, "threshold": 0.3}}}},'
        ' "tags": {"Kissing": {"ai_model_name": "actiondetection", "time_frames": [{"start": 0.0, "confidence": 0.9}]}}}'
    )
    loaded = loads_ai_json(v0, CategoryConfig())

    plan = plan_reprocessing(loaded.result, [GENTLER_RIVER], frame_interval=2.0, threshold=0.3)

    assert loaded.converted
    assert plan.nothing_to_run


def test_json_result_is_null_only_when_nothing_changed_on_disk() -> None:
    existing = _existing(("actions", _stored(GENTLER_RIVER)))

    assert json_result_string(existing, rerun=False, converted=False) is None
    assert json_result_string(existing, rerun=False, converted=True) == existing.to_json()
    assert json_result_string(existing, rerun=True, converted=False) == existing.to_json()
