"""Incremental re-processing with `existing_json_data` (contract §3.7).

Flow of a `/process_video/` request with an existing `.AI.json`:

1. `ai_json.load_ai_json` -> v1 result (v0 converted, `converted` set);
2. `plan_reprocessing` -> per category of each active model: run or skip;
3. nothing to run: answer from the stored result (`json_result` null unless converted);
   otherwise run `plan.models_to_run` without `plan.skipped_categories`, build the fresh result
   from the frames with `plan.model_infos(...)` and `merge_results` it into the stored one;
4. `json_result_string` gives the answer's `json_result`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from enum import IntEnum, StrEnum

from .ai_json import AIVideoResult, ModelInfo


class Reprocess(IntEnum):
    """The original's `needs_reprocessed` levels."""

    NOT_NEEDED = 0  # same model, or an equal or less accurate variant of the same version
    MORE_ACCURATE = 1  # a more accurate variant of the same version (lower identifier)
    REQUIRED = 2  # another version, a free-tier result to upgrade, or incompatible request values


@dataclass(frozen=True, slots=True)
class ActiveModel:
    """An active tagging model as the model YAML describes it (§3.2)."""

    file_name: str  # model_file_name
    version: float  # model_version
    identifier: int  # model_identifier: lower = more accurate variant of a version; ≥ 950 free tier
    categories: tuple[str, ...]  # model_category

    def model_info(self, frame_interval: float, threshold: float) -> ModelInfo:
        return ModelInfo(
            frame_interval=frame_interval,
            threshold=threshold,
            version=self.version,
            ai_model_id=self.identifier,
            file_name=self.file_name,
        )


def needs_reprocessed(
    stored: ModelInfo,
    *,
    frame_interval: float,
    threshold: float,
    version: float,
    identifier: int,
    file_name: str | None,
) -> Reprocess:
    """Compare the stored model of a category with the model and request values now active (§3.7)."""
    if file_name == stored.file_name and version == stored.version:
        level = Reprocess.NOT_NEEDED
    elif version != stored.version:
        level = Reprocess.REQUIRED
    elif identifier < stored.ai_model_id:
        # Free-tier results (id ≥ 950) are always upgraded; paid variants only on request.
        level = Reprocess.REQUIRED if stored.ai_model_id >= 950 else Reprocess.MORE_ACCURATE
    else:
        level = Reprocess.NOT_NEEDED

    # Stored frames must be a subset-compatible sampling (new interval a multiple of the stored one)
    # and must not miss tags below the stored threshold. A stored interval ≤ 0 is unusable (the
    # original would divide by zero).
    if (
        stored.frame_interval <= 0
        or frame_interval % stored.frame_interval != 0
        or threshold < stored.threshold
    ):
        return Reprocess.REQUIRED
    return level


class Action(StrEnum):
    RUN = "run"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class CategoryPlan:
    category: str
    model: ActiveModel
    action: Action
    level: Reprocess | None  # None: the category is not in the stored metadata (or no stored file)


@dataclass(frozen=True, slots=True)
class ReprocessPlan:
    categories: tuple[CategoryPlan, ...]

    @property
    def run_categories(self) -> tuple[str, ...]:
        return tuple(p.category for p in self.categories if p.action is Action.RUN)

    @property
    def skipped_categories(self) -> tuple[str, ...]:
        return tuple(p.category for p in self.categories if p.action is Action.SKIP)

    @property
    def models_to_run(self) -> tuple[ActiveModel, ...]:
        """Models with at least one category to run; the others are not executed at all."""
        models: dict[str, ActiveModel] = {}
        for p in self.categories:
            if p.action is Action.RUN:
                models.setdefault(p.model.file_name, p.model)
        return tuple(models.values())

    @property
    def nothing_to_run(self) -> bool:
        return not self.run_categories

    def model_infos(self, frame_interval: float, threshold: float) -> dict[str, ModelInfo]:
        """Metadata for the categories to run, for `timespans.result_from_frames`."""
        return {
            p.category: p.model.model_info(frame_interval, threshold)
            for p in self.categories
            if p.action is Action.RUN
        }


def plan_reprocessing(
    existing: AIVideoResult | None,
    models: Sequence[ActiveModel],
    *,
    frame_interval: float,
    threshold: float,
    reprocess_with_more_accurate_same_model: bool = False,
) -> ReprocessPlan:
    """Per category of each active model: run it when it is new, when `needs_reprocessed` says
    REQUIRED, or MORE_ACCURATE with the `reprocess_with_more_accurate_same_model` option (§3.2, §3.7)."""
    plans: list[CategoryPlan] = []
    stored = existing.metadata.models if existing is not None else {}
    for model in models:
        for category in model.categories:
            info = stored.get(category)
            if info is None:
                plans.append(CategoryPlan(category, model, Action.RUN, None))
                continue
            level = needs_reprocessed(
                info,
                frame_interval=frame_interval,
                threshold=threshold,
                version=model.version,
                identifier=model.identifier,
                file_name=model.file_name,
            )
            run = level is Reprocess.REQUIRED or (
                level is Reprocess.MORE_ACCURATE and reprocess_with_more_accurate_same_model
            )
            plans.append(CategoryPlan(category, model, Action.RUN if run else Action.SKIP, level))
    return ReprocessPlan(tuple(plans))


def merge_results(
    existing: AIVideoResult, fresh: AIVideoResult, categories: Collection[str]
) -> AIVideoResult:
    """`existing` with each of `categories` replaced by `fresh`: its metadata AND its timespans.

    The original 3.1.x-3.2.1 compares the new model with the stored entry after overwriting it and
    so drops the new timespans when only the model changed (§3.7); we always replace. Other
    categories are kept as stored, as is the stored duration (the original does not update it).
    """
    missing = [c for c in categories if c not in fresh.metadata.models]
    if missing:
        raise ValueError(f"fresh result has no model metadata for rerun categories {missing}")
    merged = existing.model_copy(deep=True)
    for category in categories:
        # Assigning an existing key keeps its place, so the file's key order stays stable.
        merged.metadata.models[category] = fresh.metadata.models[category].model_copy(deep=True)
        merged.timespans[category] = {
            tag: [run.model_copy() for run in runs] for tag, runs in fresh.timespans.get(category, {}).items()
        }
    return merged


def json_result_string(result: AIVideoResult, *, rerun: bool, converted: bool) -> str | None:
    """`result.json_result` of `/process_video/`: null only when nothing was rerun and the stored
    file is already v1, so the plugin leaves it alone (§1.3, §3.7)."""
    return result.to_json() if rerun or converted else None
