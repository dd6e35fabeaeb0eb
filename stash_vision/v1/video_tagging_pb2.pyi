from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class VideoResultSchema(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    VIDEO_RESULT_SCHEMA_UNSPECIFIED: _ClassVar[VideoResultSchema]
    VIDEO_RESULT_SCHEMA_V1: _ClassVar[VideoResultSchema]
    VIDEO_RESULT_SCHEMA_V3: _ClassVar[VideoResultSchema]
VIDEO_RESULT_SCHEMA_UNSPECIFIED: VideoResultSchema
VIDEO_RESULT_SCHEMA_V1: VideoResultSchema
VIDEO_RESULT_SCHEMA_V3: VideoResultSchema

class TagVideoRequest(_message.Message):
    __slots__ = ("path", "frame_interval", "threshold", "return_confidence", "vr_video", "existing_json", "categories_to_skip", "schema")
    PATH_FIELD_NUMBER: _ClassVar[int]
    FRAME_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RETURN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    VR_VIDEO_FIELD_NUMBER: _ClassVar[int]
    EXISTING_JSON_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_TO_SKIP_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_FIELD_NUMBER: _ClassVar[int]
    path: str
    frame_interval: float
    threshold: float
    return_confidence: bool
    vr_video: bool
    existing_json: str
    categories_to_skip: _containers.RepeatedScalarFieldContainer[str]
    schema: VideoResultSchema
    def __init__(self, path: _Optional[str] = ..., frame_interval: _Optional[float] = ..., threshold: _Optional[float] = ..., return_confidence: _Optional[bool] = ..., vr_video: _Optional[bool] = ..., existing_json: _Optional[str] = ..., categories_to_skip: _Optional[_Iterable[str]] = ..., schema: _Optional[_Union[VideoResultSchema, str]] = ...) -> None: ...

class TagVideoResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: VideoProgress
    result: VideoResult
    def __init__(self, progress: _Optional[_Union[VideoProgress, _Mapping]] = ..., result: _Optional[_Union[VideoResult, _Mapping]] = ...) -> None: ...

class VideoProgress(_message.Message):
    __slots__ = ("frames_done", "frames_total", "elapsed_seconds", "frames_per_second")
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PER_SECOND_FIELD_NUMBER: _ClassVar[int]
    frames_done: int
    frames_total: int
    elapsed_seconds: float
    frames_per_second: float
    def __init__(self, frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ..., frames_per_second: _Optional[float] = ...) -> None: ...

class VideoResult(_message.Message):
    __slots__ = ("json_result", "video_tag_info_json", "v3_result_json", "duration", "partial", "partial_reason", "metrics")
    JSON_RESULT_FIELD_NUMBER: _ClassVar[int]
    VIDEO_TAG_INFO_JSON_FIELD_NUMBER: _ClassVar[int]
    V3_RESULT_JSON_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_REASON_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    json_result: str
    video_tag_info_json: str
    v3_result_json: str
    duration: float
    partial: bool
    partial_reason: str
    metrics: VideoMetrics
    def __init__(self, json_result: _Optional[str] = ..., video_tag_info_json: _Optional[str] = ..., v3_result_json: _Optional[str] = ..., duration: _Optional[float] = ..., partial: _Optional[bool] = ..., partial_reason: _Optional[str] = ..., metrics: _Optional[_Union[VideoMetrics, _Mapping]] = ...) -> None: ...

class VideoMetrics(_message.Message):
    __slots__ = ("preprocess_seconds", "frames_preprocessed", "inference_seconds", "model_count", "total_seconds", "decode_strategy")
    PREPROCESS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FRAMES_PREPROCESSED_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    DECODE_STRATEGY_FIELD_NUMBER: _ClassVar[int]
    preprocess_seconds: float
    frames_preprocessed: int
    inference_seconds: float
    model_count: int
    total_seconds: float
    decode_strategy: str
    def __init__(self, preprocess_seconds: _Optional[float] = ..., frames_preprocessed: _Optional[int] = ..., inference_seconds: _Optional[float] = ..., model_count: _Optional[int] = ..., total_seconds: _Optional[float] = ..., decode_strategy: _Optional[str] = ...) -> None: ...

class OptimizeMarkerSettingsRequest(_message.Message):
    __slots__ = ("existing_json", "desired_timespan_json")
    EXISTING_JSON_FIELD_NUMBER: _ClassVar[int]
    DESIRED_TIMESPAN_JSON_FIELD_NUMBER: _ClassVar[int]
    existing_json: str
    desired_timespan_json: str
    def __init__(self, existing_json: _Optional[str] = ..., desired_timespan_json: _Optional[str] = ...) -> None: ...

class OptimizeMarkerSettingsResponse(_message.Message):
    __slots__ = ("best_settings_json",)
    BEST_SETTINGS_JSON_FIELD_NUMBER: _ClassVar[int]
    best_settings_json: str
    def __init__(self, best_settings_json: _Optional[str] = ...) -> None: ...
