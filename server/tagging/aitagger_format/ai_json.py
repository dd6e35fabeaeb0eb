"""The `.AI.json` file: schema v1 (written), schema v0 (read and converted) - contract §1.6, §3.9.

The plugin writes our `json_result` string verbatim next to the video and sends the parsed file
back as `existing_json_data`, so the string must be what the original server writes:
pydantic's `model_dump_json(exclude_none=True)` (compact, `end`/`confidence` omitted when null)
with field order as below. One deliberate difference (§3.9): `metadata.models[*].file_name` is
always written, as `null` when unknown, because the original server cannot re-read a file whose
`file_name` key is missing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, SerializerFunctionWrapHandler, model_serializer

from .categories import CategoryConfig

SCHEMA_VERSION = 1


class TagTimeFrame(BaseModel):
    """One raw run of identical per-frame results: frames `start, start+fi, …, end` (§3.6.1).

    `end` is absent for a single-frame run; `confidence` is absent when the request asked for no
    confidences (§3.9).
    """

    start: float
    end: float | None = None
    confidence: float | None = None


class ModelInfo(BaseModel):
    """The model that produced one category, and the request values it ran with."""

    frame_interval: float
    threshold: float
    version: float
    ai_model_id: int
    # Optional on input: files written by the original with a null file_name lack the key (§3.9).
    file_name: str | None = None

    @model_serializer(mode="wrap")
    def _always_file_name(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # exclude_none would drop a null file_name; the key must stay for the original server (§3.9).
        data: dict[str, Any] = handler(self)
        data["file_name"] = self.file_name
        return data


class VideoMetadata(BaseModel):
    duration: float
    # Keyed by model category ("actions", "bodyparts", …), not by model name.
    models: dict[str, ModelInfo]


# category -> OriginalTag -> runs in time order.
Timespans = dict[str, dict[str, list[TagTimeFrame]]]


class AIVideoResult(BaseModel):
    """`.AI.json` schema v1."""

    schema_version: Literal[1] = 1
    metadata: VideoMetadata
    timespans: Timespans

    def to_json(self) -> str:
        """The exact `json_result` string / file content (contract §1.3)."""
        return self.model_dump_json(exclude_none=True)


# --- schema v0 (AITagger 1.x), input only -------------------------------------------------------


class ModelConfigV0(BaseModel):
    frame_interval: float
    threshold: float


class ModelInfoV0(BaseModel):
    version: float
    ai_model_config: ModelConfigV0


class VideoMetadataV0(BaseModel):
    # Required by the original; optional here since conversion does not need them.
    video_id: int | None = None
    duration: float
    phash: str | None = None
    models: dict[str, ModelInfoV0]


class TagTimeFrameV0(BaseModel):
    start: float
    end: float | None = None
    confidence: float | None = None


class TagDataV0(BaseModel):
    ai_model_name: str
    time_frames: list[TagTimeFrameV0]


class AIVideoResultV0(BaseModel):
    """`.AI.json` schema v0: no `schema_version`, tags keyed by OriginalTag across all categories."""

    video_metadata: VideoMetadataV0
    tags: dict[str, TagDataV0]


@dataclass(frozen=True, slots=True)
class _KnownModel:
    category: str
    version: float
    ai_model_id: int
    file_name: str | None


_GENTLER_RIVER = _KnownModel("actions", 2.0, 200, "gentler_river")
# A pre-2.0 1.x action model: the original invents version 0.1 / id 950 and no file name (§1.6).
_OLD_ACTIONS = _KnownModel("actions", 0.1, 950, None)
_ICONIC_SKY = _KnownModel("bodyparts", 0.5, 200, "iconic_sky")
_TRUE_LAKE = _KnownModel("bdsm", 0.7, 200, "true_lake")

# v0 pipeline short name -> the v1 models it stands for, in the original's insertion order (§1.6).
_V0_PIPELINES: Mapping[str, tuple[_KnownModel, ...]] = {
    "bodyparts": (_ICONIC_SKY,),
    "actiondetection_bodyparts_bdsm": (_TRUE_LAKE, _GENTLER_RIVER, _ICONIC_SKY),
    "actiondetection_bodyparts": (_GENTLER_RIVER, _ICONIC_SKY),
}


def _v0_models(name: str, info: ModelInfoV0) -> tuple[_KnownModel, ...]:
    if name == "actiondetection":
        return (_GENTLER_RIVER,) if info.version == 2.0 else (_OLD_ACTIONS,)
    # Unknown pipeline names carry no model identity the server could compare with: dropped, as
    # in the original; their tags' categories then count as "never processed" and are rerun.
    return _V0_PIPELINES.get(name, ())


def convert_v0(v0: AIVideoResultV0, categories: CategoryConfig) -> AIVideoResult:
    """v0 -> v1 per the original's `to_V1` (contract §1.6); tags map to categories through the CSVs
    (unknown -> "Unknown")."""
    models: dict[str, ModelInfo] = {}
    for name, info in v0.video_metadata.models.items():
        config = info.ai_model_config
        for known in _v0_models(name, info):
            models[known.category] = ModelInfo(
                frame_interval=config.frame_interval,
                threshold=config.threshold,
                version=known.version,
                ai_model_id=known.ai_model_id,
                file_name=known.file_name,
            )
    timespans: Timespans = {}
    for tag, data in v0.tags.items():
        category = categories.category_of_original(tag)
        timespans.setdefault(category, {})[tag] = [
            TagTimeFrame(start=tf.start, end=tf.end, confidence=tf.confidence) for tf in data.time_frames
        ]
    return AIVideoResult(
        metadata=VideoMetadata(duration=v0.video_metadata.duration, models=models), timespans=timespans
    )


@dataclass(frozen=True, slots=True)
class LoadedResult:
    """An existing `.AI.json` as v1; `converted` is true when it was not v1 on disk, so the answer
    must carry a fresh `json_result` even if nothing is rerun (contract §3.7)."""

    result: AIVideoResult
    converted: bool


def load_ai_json(data: object, categories: CategoryConfig) -> LoadedResult:
    """Validate a parsed `.AI.json` (`existing_json_data`), converting v0 to v1.

    Raises ValueError (pydantic's ValidationError is one) for an unsupported schema or bad content.
    """
    if not isinstance(data, Mapping):
        raise ValueError(f".AI.json content must be a JSON object, not {type(data).__name__}")
    if "schema_version" not in data:
        return LoadedResult(convert_v0(AIVideoResultV0.model_validate(data), categories), converted=True)
    version = data["schema_version"]
    if isinstance(version, bool) or version != SCHEMA_VERSION:
        raise ValueError(
            f"unsupported .AI.json schema_version {version!r}: this server reads schema 0 "
            f"(no schema_version key, AITagger 1.x) and schema 1"
        )
    return LoadedResult(AIVideoResult.model_validate(data), converted=False)


def loads_ai_json(text: str | bytes, categories: CategoryConfig) -> LoadedResult:
    """`load_ai_json` for file content."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f".AI.json is not valid JSON: {exc}") from None
    return load_ai_json(data, categories)
