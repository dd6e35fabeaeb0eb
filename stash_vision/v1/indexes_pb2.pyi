from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IndexVersion(_message.Message):
    __slots__ = ("version", "created_at", "sources", "performer_count", "face_count", "size_bytes", "recipe_json", "parent_version", "build_job_id", "origin", "active", "previous")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    PERFORMER_COUNT_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    RECIPE_JSON_FIELD_NUMBER: _ClassVar[int]
    PARENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    BUILD_JOB_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_FIELD_NUMBER: _ClassVar[int]
    version: str
    created_at: str
    sources: _containers.RepeatedScalarFieldContainer[str]
    performer_count: int
    face_count: int
    size_bytes: int
    recipe_json: str
    parent_version: str
    build_job_id: str
    origin: str
    active: bool
    previous: bool
    def __init__(self, version: _Optional[str] = ..., created_at: _Optional[str] = ..., sources: _Optional[_Iterable[str]] = ..., performer_count: _Optional[int] = ..., face_count: _Optional[int] = ..., size_bytes: _Optional[int] = ..., recipe_json: _Optional[str] = ..., parent_version: _Optional[str] = ..., build_job_id: _Optional[str] = ..., origin: _Optional[str] = ..., active: _Optional[bool] = ..., previous: _Optional[bool] = ...) -> None: ...

class ListIndexVersionsRequest(_message.Message):
    __slots__ = ("profile",)
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    profile: str
    def __init__(self, profile: _Optional[str] = ...) -> None: ...

class ListIndexVersionsResponse(_message.Message):
    __slots__ = ("profile", "versions", "active_version", "previous_version")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    VERSIONS_FIELD_NUMBER: _ClassVar[int]
    ACTIVE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_VERSION_FIELD_NUMBER: _ClassVar[int]
    profile: str
    versions: _containers.RepeatedCompositeFieldContainer[IndexVersion]
    active_version: str
    previous_version: str
    def __init__(self, profile: _Optional[str] = ..., versions: _Optional[_Iterable[_Union[IndexVersion, _Mapping]]] = ..., active_version: _Optional[str] = ..., previous_version: _Optional[str] = ...) -> None: ...

class GetIndexVersionRequest(_message.Message):
    __slots__ = ("profile", "version")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    profile: str
    version: str
    def __init__(self, profile: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class GetIndexVersionResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: IndexVersion
    def __init__(self, version: _Optional[_Union[IndexVersion, _Mapping]] = ...) -> None: ...

class DiffIndexVersionsRequest(_message.Message):
    __slots__ = ("profile", "base", "other")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    BASE_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    profile: str
    base: str
    other: str
    def __init__(self, profile: _Optional[str] = ..., base: _Optional[str] = ..., other: _Optional[str] = ...) -> None: ...

class SourceDiff(_message.Message):
    __slots__ = ("source", "performers_added", "performers_removed", "faces_added", "faces_removed")
    SOURCE_FIELD_NUMBER: _ClassVar[int]
    PERFORMERS_ADDED_FIELD_NUMBER: _ClassVar[int]
    PERFORMERS_REMOVED_FIELD_NUMBER: _ClassVar[int]
    FACES_ADDED_FIELD_NUMBER: _ClassVar[int]
    FACES_REMOVED_FIELD_NUMBER: _ClassVar[int]
    source: str
    performers_added: int
    performers_removed: int
    faces_added: int
    faces_removed: int
    def __init__(self, source: _Optional[str] = ..., performers_added: _Optional[int] = ..., performers_removed: _Optional[int] = ..., faces_added: _Optional[int] = ..., faces_removed: _Optional[int] = ...) -> None: ...

class DiffIndexVersionsResponse(_message.Message):
    __slots__ = ("base", "other", "sources", "total", "added_performer_ids", "removed_performer_ids")
    BASE_FIELD_NUMBER: _ClassVar[int]
    OTHER_FIELD_NUMBER: _ClassVar[int]
    SOURCES_FIELD_NUMBER: _ClassVar[int]
    TOTAL_FIELD_NUMBER: _ClassVar[int]
    ADDED_PERFORMER_IDS_FIELD_NUMBER: _ClassVar[int]
    REMOVED_PERFORMER_IDS_FIELD_NUMBER: _ClassVar[int]
    base: str
    other: str
    sources: _containers.RepeatedCompositeFieldContainer[SourceDiff]
    total: SourceDiff
    added_performer_ids: _containers.RepeatedScalarFieldContainer[str]
    removed_performer_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, base: _Optional[str] = ..., other: _Optional[str] = ..., sources: _Optional[_Iterable[_Union[SourceDiff, _Mapping]]] = ..., total: _Optional[_Union[SourceDiff, _Mapping]] = ..., added_performer_ids: _Optional[_Iterable[str]] = ..., removed_performer_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ActivateIndexVersionRequest(_message.Message):
    __slots__ = ("profile", "version", "rollback")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ROLLBACK_FIELD_NUMBER: _ClassVar[int]
    profile: str
    version: str
    rollback: bool
    def __init__(self, profile: _Optional[str] = ..., version: _Optional[str] = ..., rollback: _Optional[bool] = ...) -> None: ...

class ActivateIndexVersionResponse(_message.Message):
    __slots__ = ("version", "replaced_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REPLACED_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: IndexVersion
    replaced_version: str
    def __init__(self, version: _Optional[_Union[IndexVersion, _Mapping]] = ..., replaced_version: _Optional[str] = ...) -> None: ...

class DeleteIndexVersionRequest(_message.Message):
    __slots__ = ("profile", "version")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    profile: str
    version: str
    def __init__(self, profile: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class DeleteIndexVersionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExportIndexVersionRequest(_message.Message):
    __slots__ = ("profile", "version")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    profile: str
    version: str
    def __init__(self, profile: _Optional[str] = ..., version: _Optional[str] = ...) -> None: ...

class ExportIndexVersionChunk(_message.Message):
    __slots__ = ("file_name", "size_bytes", "data")
    FILE_NAME_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    file_name: str
    size_bytes: int
    data: bytes
    def __init__(self, file_name: _Optional[str] = ..., size_bytes: _Optional[int] = ..., data: _Optional[bytes] = ...) -> None: ...

class ImportIndexReleaseRequest(_message.Message):
    __slots__ = ("profile", "path", "activate")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    PATH_FIELD_NUMBER: _ClassVar[int]
    ACTIVATE_FIELD_NUMBER: _ClassVar[int]
    profile: str
    path: str
    activate: bool
    def __init__(self, profile: _Optional[str] = ..., path: _Optional[str] = ..., activate: _Optional[bool] = ...) -> None: ...

class ImportIndexReleaseResponse(_message.Message):
    __slots__ = ("version",)
    VERSION_FIELD_NUMBER: _ClassVar[int]
    version: IndexVersion
    def __init__(self, version: _Optional[_Union[IndexVersion, _Mapping]] = ...) -> None: ...
