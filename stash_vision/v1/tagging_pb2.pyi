from stash_vision.v1 import media_pb2 as _media_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class TagNaming(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TAG_NAMING_UNSPECIFIED: _ClassVar[TagNaming]
    TAG_NAMING_RENAMED: _ClassVar[TagNaming]
    TAG_NAMING_ORIGINAL: _ClassVar[TagNaming]
TAG_NAMING_UNSPECIFIED: TagNaming
TAG_NAMING_RENAMED: TagNaming
TAG_NAMING_ORIGINAL: TagNaming

class ListTaggersRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListTaggersResponse(_message.Message):
    __slots__ = ("taggers",)
    TAGGERS_FIELD_NUMBER: _ClassVar[int]
    taggers: _containers.RepeatedCompositeFieldContainer[Tagger]
    def __init__(self, taggers: _Optional[_Iterable[_Union[Tagger, _Mapping]]] = ...) -> None: ...

class Tagger(_message.Message):
    __slots__ = ("name", "identifier", "version", "categories", "type", "model", "ready")
    NAME_FIELD_NUMBER: _ClassVar[int]
    IDENTIFIER_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    name: str
    identifier: int
    version: float
    categories: _containers.RepeatedScalarFieldContainer[str]
    type: str
    model: str
    ready: bool
    def __init__(self, name: _Optional[str] = ..., identifier: _Optional[int] = ..., version: _Optional[float] = ..., categories: _Optional[_Iterable[str]] = ..., type: _Optional[str] = ..., model: _Optional[str] = ..., ready: _Optional[bool] = ...) -> None: ...

class TagImagesRequest(_message.Message):
    __slots__ = ("images", "threshold", "return_confidence", "naming", "categories_to_skip")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    RETURN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    NAMING_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_TO_SKIP_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_media_pb2.ImageSource]
    threshold: float
    return_confidence: bool
    naming: TagNaming
    categories_to_skip: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, images: _Optional[_Iterable[_Union[_media_pb2.ImageSource, _Mapping]]] = ..., threshold: _Optional[float] = ..., return_confidence: _Optional[bool] = ..., naming: _Optional[_Union[TagNaming, str]] = ..., categories_to_skip: _Optional[_Iterable[str]] = ...) -> None: ...

class TagImagesResponse(_message.Message):
    __slots__ = ("results", "taggers", "metrics")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    TAGGERS_FIELD_NUMBER: _ClassVar[int]
    METRICS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[ImageTags]
    taggers: _containers.RepeatedCompositeFieldContainer[Tagger]
    metrics: TaggingMetrics
    def __init__(self, results: _Optional[_Iterable[_Union[ImageTags, _Mapping]]] = ..., taggers: _Optional[_Iterable[_Union[Tagger, _Mapping]]] = ..., metrics: _Optional[_Union[TaggingMetrics, _Mapping]] = ...) -> None: ...

class ImageTags(_message.Message):
    __slots__ = ("error", "categories")
    ERROR_FIELD_NUMBER: _ClassVar[int]
    CATEGORIES_FIELD_NUMBER: _ClassVar[int]
    error: str
    categories: _containers.RepeatedCompositeFieldContainer[CategoryTags]
    def __init__(self, error: _Optional[str] = ..., categories: _Optional[_Iterable[_Union[CategoryTags, _Mapping]]] = ...) -> None: ...

class CategoryTags(_message.Message):
    __slots__ = ("category", "tags")
    CATEGORY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    category: str
    tags: _containers.RepeatedCompositeFieldContainer[TagHit]
    def __init__(self, category: _Optional[str] = ..., tags: _Optional[_Iterable[_Union[TagHit, _Mapping]]] = ...) -> None: ...

class TagHit(_message.Message):
    __slots__ = ("name", "confidence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    confidence: float
    def __init__(self, name: _Optional[str] = ..., confidence: _Optional[float] = ...) -> None: ...

class TaggingMetrics(_message.Message):
    __slots__ = ("preprocess_seconds", "inference_seconds", "image_count", "model_count", "total_seconds")
    PREPROCESS_SECONDS_FIELD_NUMBER: _ClassVar[int]
    INFERENCE_SECONDS_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    MODEL_COUNT_FIELD_NUMBER: _ClassVar[int]
    TOTAL_SECONDS_FIELD_NUMBER: _ClassVar[int]
    preprocess_seconds: float
    inference_seconds: float
    image_count: int
    model_count: int
    total_seconds: float
    def __init__(self, preprocess_seconds: _Optional[float] = ..., inference_seconds: _Optional[float] = ..., image_count: _Optional[int] = ..., model_count: _Optional[int] = ..., total_seconds: _Optional[float] = ...) -> None: ...
