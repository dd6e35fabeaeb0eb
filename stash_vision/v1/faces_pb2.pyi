from stash_vision.v1 import media_pb2 as _media_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AnsweredBy(_message.Message):
    __slots__ = ("profile", "index_version")
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    INDEX_VERSION_FIELD_NUMBER: _ClassVar[int]
    profile: str
    index_version: str
    def __init__(self, profile: _Optional[str] = ..., index_version: _Optional[str] = ...) -> None: ...

class FaceBox(_message.Message):
    __slots__ = ("x", "y", "width", "height")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    WIDTH_FIELD_NUMBER: _ClassVar[int]
    HEIGHT_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    width: float
    height: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ..., width: _Optional[float] = ..., height: _Optional[float] = ...) -> None: ...

class Point(_message.Message):
    __slots__ = ("x", "y")
    X_FIELD_NUMBER: _ClassVar[int]
    Y_FIELD_NUMBER: _ClassVar[int]
    x: float
    y: float
    def __init__(self, x: _Optional[float] = ..., y: _Optional[float] = ...) -> None: ...

class Face(_message.Message):
    __slots__ = ("box", "confidence", "landmarks", "yaw_degrees")
    BOX_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    LANDMARKS_FIELD_NUMBER: _ClassVar[int]
    YAW_DEGREES_FIELD_NUMBER: _ClassVar[int]
    box: FaceBox
    confidence: float
    landmarks: _containers.RepeatedCompositeFieldContainer[Point]
    yaw_degrees: float
    def __init__(self, box: _Optional[_Union[FaceBox, _Mapping]] = ..., confidence: _Optional[float] = ..., landmarks: _Optional[_Iterable[_Union[Point, _Mapping]]] = ..., yaw_degrees: _Optional[float] = ...) -> None: ...

class FaceFilter(_message.Message):
    __slots__ = ("min_confidence", "min_face_size")
    MIN_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    MIN_FACE_SIZE_FIELD_NUMBER: _ClassVar[int]
    min_confidence: float
    min_face_size: int
    def __init__(self, min_confidence: _Optional[float] = ..., min_face_size: _Optional[int] = ...) -> None: ...

class DetectFacesRequest(_message.Message):
    __slots__ = ("image", "filter")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    image: _media_pb2.ImageSource
    filter: FaceFilter
    def __init__(self, image: _Optional[_Union[_media_pb2.ImageSource, _Mapping]] = ..., filter: _Optional[_Union[FaceFilter, _Mapping]] = ...) -> None: ...

class DetectFacesResponse(_message.Message):
    __slots__ = ("faces", "image_width", "image_height", "answered_by")
    FACES_FIELD_NUMBER: _ClassVar[int]
    IMAGE_WIDTH_FIELD_NUMBER: _ClassVar[int]
    IMAGE_HEIGHT_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[Face]
    image_width: int
    image_height: int
    answered_by: AnsweredBy
    def __init__(self, faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., image_width: _Optional[int] = ..., image_height: _Optional[int] = ..., answered_by: _Optional[_Union[AnsweredBy, _Mapping]] = ...) -> None: ...

class EmbedFacesRequest(_message.Message):
    __slots__ = ("image", "filter", "largest_only")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    LARGEST_ONLY_FIELD_NUMBER: _ClassVar[int]
    image: _media_pb2.ImageSource
    filter: FaceFilter
    largest_only: bool
    def __init__(self, image: _Optional[_Union[_media_pb2.ImageSource, _Mapping]] = ..., filter: _Optional[_Union[FaceFilter, _Mapping]] = ..., largest_only: _Optional[bool] = ...) -> None: ...

class Embedding(_message.Message):
    __slots__ = ("embedder", "values")
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    embedder: str
    values: _containers.RepeatedScalarFieldContainer[float]
    def __init__(self, embedder: _Optional[str] = ..., values: _Optional[_Iterable[float]] = ...) -> None: ...

class EmbeddedFace(_message.Message):
    __slots__ = ("face", "embeddings")
    FACE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDINGS_FIELD_NUMBER: _ClassVar[int]
    face: Face
    embeddings: _containers.RepeatedCompositeFieldContainer[Embedding]
    def __init__(self, face: _Optional[_Union[Face, _Mapping]] = ..., embeddings: _Optional[_Iterable[_Union[Embedding, _Mapping]]] = ...) -> None: ...

class EmbedFacesResponse(_message.Message):
    __slots__ = ("faces", "answered_by")
    FACES_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[EmbeddedFace]
    answered_by: AnsweredBy
    def __init__(self, faces: _Optional[_Iterable[_Union[EmbeddedFace, _Mapping]]] = ..., answered_by: _Optional[_Union[AnsweredBy, _Mapping]] = ...) -> None: ...

class CompareFacesRequest(_message.Message):
    __slots__ = ("first", "second", "filter")
    FIRST_FIELD_NUMBER: _ClassVar[int]
    SECOND_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    first: _media_pb2.ImageSource
    second: _media_pb2.ImageSource
    filter: FaceFilter
    def __init__(self, first: _Optional[_Union[_media_pb2.ImageSource, _Mapping]] = ..., second: _Optional[_Union[_media_pb2.ImageSource, _Mapping]] = ..., filter: _Optional[_Union[FaceFilter, _Mapping]] = ...) -> None: ...

class EmbedderDistance(_message.Message):
    __slots__ = ("embedder", "distance", "found")
    EMBEDDER_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    FOUND_FIELD_NUMBER: _ClassVar[int]
    embedder: str
    distance: float
    found: bool
    def __init__(self, embedder: _Optional[str] = ..., distance: _Optional[float] = ..., found: _Optional[bool] = ...) -> None: ...

class FacePair(_message.Message):
    __slots__ = ("first_face", "second_face", "similarity", "distance", "same_person", "embedder_distances")
    FIRST_FACE_FIELD_NUMBER: _ClassVar[int]
    SECOND_FACE_FIELD_NUMBER: _ClassVar[int]
    SIMILARITY_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    SAME_PERSON_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_DISTANCES_FIELD_NUMBER: _ClassVar[int]
    first_face: int
    second_face: int
    similarity: float
    distance: float
    same_person: bool
    embedder_distances: _containers.RepeatedCompositeFieldContainer[EmbedderDistance]
    def __init__(self, first_face: _Optional[int] = ..., second_face: _Optional[int] = ..., similarity: _Optional[float] = ..., distance: _Optional[float] = ..., same_person: _Optional[bool] = ..., embedder_distances: _Optional[_Iterable[_Union[EmbedderDistance, _Mapping]]] = ...) -> None: ...

class CompareFacesResponse(_message.Message):
    __slots__ = ("first_faces", "second_faces", "pairs", "same_person_distance", "answered_by")
    FIRST_FACES_FIELD_NUMBER: _ClassVar[int]
    SECOND_FACES_FIELD_NUMBER: _ClassVar[int]
    PAIRS_FIELD_NUMBER: _ClassVar[int]
    SAME_PERSON_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    first_faces: _containers.RepeatedCompositeFieldContainer[Face]
    second_faces: _containers.RepeatedCompositeFieldContainer[Face]
    pairs: _containers.RepeatedCompositeFieldContainer[FacePair]
    same_person_distance: float
    answered_by: AnsweredBy
    def __init__(self, first_faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., second_faces: _Optional[_Iterable[_Union[Face, _Mapping]]] = ..., pairs: _Optional[_Iterable[_Union[FacePair, _Mapping]]] = ..., same_person_distance: _Optional[float] = ..., answered_by: _Optional[_Union[AnsweredBy, _Mapping]] = ...) -> None: ...

class StashBoxId(_message.Message):
    __slots__ = ("endpoint", "stash_id")
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    STASH_ID_FIELD_NUMBER: _ClassVar[int]
    endpoint: str
    stash_id: str
    def __init__(self, endpoint: _Optional[str] = ..., stash_id: _Optional[str] = ...) -> None: ...

class Performer(_message.Message):
    __slots__ = ("id", "name", "aliases", "stash_ids", "country", "image_url", "face_count")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    STASH_IDS_FIELD_NUMBER: _ClassVar[int]
    COUNTRY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_URL_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    stash_ids: _containers.RepeatedCompositeFieldContainer[StashBoxId]
    country: str
    image_url: str
    face_count: int
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., stash_ids: _Optional[_Iterable[_Union[StashBoxId, _Mapping]]] = ..., country: _Optional[str] = ..., image_url: _Optional[str] = ..., face_count: _Optional[int] = ...) -> None: ...

class Match(_message.Message):
    __slots__ = ("performer", "distance", "confidence", "embedder_distances")
    PERFORMER_FIELD_NUMBER: _ClassVar[int]
    DISTANCE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    EMBEDDER_DISTANCES_FIELD_NUMBER: _ClassVar[int]
    performer: Performer
    distance: float
    confidence: float
    embedder_distances: _containers.RepeatedCompositeFieldContainer[EmbedderDistance]
    def __init__(self, performer: _Optional[_Union[Performer, _Mapping]] = ..., distance: _Optional[float] = ..., confidence: _Optional[float] = ..., embedder_distances: _Optional[_Iterable[_Union[EmbedderDistance, _Mapping]]] = ...) -> None: ...

class IdentifyOptions(_message.Message):
    __slots__ = ("top_k", "max_distance", "filter")
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    top_k: int
    max_distance: float
    filter: FaceFilter
    def __init__(self, top_k: _Optional[int] = ..., max_distance: _Optional[float] = ..., filter: _Optional[_Union[FaceFilter, _Mapping]] = ...) -> None: ...

class IdentifiedFace(_message.Message):
    __slots__ = ("face", "matches")
    FACE_FIELD_NUMBER: _ClassVar[int]
    MATCHES_FIELD_NUMBER: _ClassVar[int]
    face: Face
    matches: _containers.RepeatedCompositeFieldContainer[Match]
    def __init__(self, face: _Optional[_Union[Face, _Mapping]] = ..., matches: _Optional[_Iterable[_Union[Match, _Mapping]]] = ...) -> None: ...

class IdentifyImageRequest(_message.Message):
    __slots__ = ("image", "options")
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    image: _media_pb2.ImageSource
    options: IdentifyOptions
    def __init__(self, image: _Optional[_Union[_media_pb2.ImageSource, _Mapping]] = ..., options: _Optional[_Union[IdentifyOptions, _Mapping]] = ...) -> None: ...

class IdentifyImageResponse(_message.Message):
    __slots__ = ("faces", "answered_by")
    FACES_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    faces: _containers.RepeatedCompositeFieldContainer[IdentifiedFace]
    answered_by: AnsweredBy
    def __init__(self, faces: _Optional[_Iterable[_Union[IdentifiedFace, _Mapping]]] = ..., answered_by: _Optional[_Union[AnsweredBy, _Mapping]] = ...) -> None: ...

class IdentifyGalleryRequest(_message.Message):
    __slots__ = ("images", "options", "stash_gallery_id")
    IMAGES_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    STASH_GALLERY_ID_FIELD_NUMBER: _ClassVar[int]
    images: _containers.RepeatedCompositeFieldContainer[_media_pb2.ImageSource]
    options: IdentifyOptions
    stash_gallery_id: str
    def __init__(self, images: _Optional[_Iterable[_Union[_media_pb2.ImageSource, _Mapping]]] = ..., options: _Optional[_Union[IdentifyOptions, _Mapping]] = ..., stash_gallery_id: _Optional[str] = ...) -> None: ...

class GalleryPerformer(_message.Message):
    __slots__ = ("best_match", "average_distance", "image_count", "image_indexes", "vote_share")
    BEST_MATCH_FIELD_NUMBER: _ClassVar[int]
    AVERAGE_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_COUNT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_INDEXES_FIELD_NUMBER: _ClassVar[int]
    VOTE_SHARE_FIELD_NUMBER: _ClassVar[int]
    best_match: Match
    average_distance: float
    image_count: int
    image_indexes: _containers.RepeatedScalarFieldContainer[int]
    vote_share: float
    def __init__(self, best_match: _Optional[_Union[Match, _Mapping]] = ..., average_distance: _Optional[float] = ..., image_count: _Optional[int] = ..., image_indexes: _Optional[_Iterable[int]] = ..., vote_share: _Optional[float] = ...) -> None: ...

class ImageError(_message.Message):
    __slots__ = ("image_index", "message")
    IMAGE_INDEX_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    image_index: int
    message: str
    def __init__(self, image_index: _Optional[int] = ..., message: _Optional[str] = ...) -> None: ...

class IdentifyGalleryResponse(_message.Message):
    __slots__ = ("total_images", "images_processed", "faces_detected", "performers", "errors", "answered_by", "images_selected", "image_ids")
    TOTAL_IMAGES_FIELD_NUMBER: _ClassVar[int]
    IMAGES_PROCESSED_FIELD_NUMBER: _ClassVar[int]
    FACES_DETECTED_FIELD_NUMBER: _ClassVar[int]
    PERFORMERS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    IMAGES_SELECTED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_IDS_FIELD_NUMBER: _ClassVar[int]
    total_images: int
    images_processed: int
    faces_detected: int
    performers: _containers.RepeatedCompositeFieldContainer[GalleryPerformer]
    errors: _containers.RepeatedCompositeFieldContainer[ImageError]
    answered_by: AnsweredBy
    images_selected: int
    image_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, total_images: _Optional[int] = ..., images_processed: _Optional[int] = ..., faces_detected: _Optional[int] = ..., performers: _Optional[_Iterable[_Union[GalleryPerformer, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[ImageError, _Mapping]]] = ..., answered_by: _Optional[_Union[AnsweredBy, _Mapping]] = ..., images_selected: _Optional[int] = ..., image_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class IdentifyVideoRequest(_message.Message):
    __slots__ = ("path", "num_frames", "start_fraction", "end_fraction", "cover", "options", "cluster_distance", "stash_scene_id")
    PATH_FIELD_NUMBER: _ClassVar[int]
    NUM_FRAMES_FIELD_NUMBER: _ClassVar[int]
    START_FRACTION_FIELD_NUMBER: _ClassVar[int]
    END_FRACTION_FIELD_NUMBER: _ClassVar[int]
    COVER_FIELD_NUMBER: _ClassVar[int]
    OPTIONS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    STASH_SCENE_ID_FIELD_NUMBER: _ClassVar[int]
    path: str
    num_frames: int
    start_fraction: float
    end_fraction: float
    cover: _media_pb2.ImageSource
    options: IdentifyOptions
    cluster_distance: float
    stash_scene_id: str
    def __init__(self, path: _Optional[str] = ..., num_frames: _Optional[int] = ..., start_fraction: _Optional[float] = ..., end_fraction: _Optional[float] = ..., cover: _Optional[_Union[_media_pb2.ImageSource, _Mapping]] = ..., options: _Optional[_Union[IdentifyOptions, _Mapping]] = ..., cluster_distance: _Optional[float] = ..., stash_scene_id: _Optional[str] = ...) -> None: ...

class TimeRange(_message.Message):
    __slots__ = ("start", "end")
    START_FIELD_NUMBER: _ClassVar[int]
    END_FIELD_NUMBER: _ClassVar[int]
    start: float
    end: float
    def __init__(self, start: _Optional[float] = ..., end: _Optional[float] = ...) -> None: ...

class Sighting(_message.Message):
    __slots__ = ("frame_index", "time_seconds", "face")
    FRAME_INDEX_FIELD_NUMBER: _ClassVar[int]
    TIME_SECONDS_FIELD_NUMBER: _ClassVar[int]
    FACE_FIELD_NUMBER: _ClassVar[int]
    frame_index: int
    time_seconds: float
    face: Face
    def __init__(self, frame_index: _Optional[int] = ..., time_seconds: _Optional[float] = ..., face: _Optional[_Union[Face, _Mapping]] = ...) -> None: ...

class VideoPerson(_message.Message):
    __slots__ = ("person_id", "frame_count", "best_match", "alternatives", "time_ranges", "sightings")
    PERSON_ID_FIELD_NUMBER: _ClassVar[int]
    FRAME_COUNT_FIELD_NUMBER: _ClassVar[int]
    BEST_MATCH_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    TIME_RANGES_FIELD_NUMBER: _ClassVar[int]
    SIGHTINGS_FIELD_NUMBER: _ClassVar[int]
    person_id: int
    frame_count: int
    best_match: Match
    alternatives: _containers.RepeatedCompositeFieldContainer[Match]
    time_ranges: _containers.RepeatedCompositeFieldContainer[TimeRange]
    sightings: _containers.RepeatedCompositeFieldContainer[Sighting]
    def __init__(self, person_id: _Optional[int] = ..., frame_count: _Optional[int] = ..., best_match: _Optional[_Union[Match, _Mapping]] = ..., alternatives: _Optional[_Iterable[_Union[Match, _Mapping]]] = ..., time_ranges: _Optional[_Iterable[_Union[TimeRange, _Mapping]]] = ..., sightings: _Optional[_Iterable[_Union[Sighting, _Mapping]]] = ...) -> None: ...

class FaceTiming(_message.Message):
    __slots__ = ("total_ms", "decode_ms", "detection_ms", "embedding_ms", "matching_ms")
    TOTAL_MS_FIELD_NUMBER: _ClassVar[int]
    DECODE_MS_FIELD_NUMBER: _ClassVar[int]
    DETECTION_MS_FIELD_NUMBER: _ClassVar[int]
    EMBEDDING_MS_FIELD_NUMBER: _ClassVar[int]
    MATCHING_MS_FIELD_NUMBER: _ClassVar[int]
    total_ms: float
    decode_ms: float
    detection_ms: float
    embedding_ms: float
    matching_ms: float
    def __init__(self, total_ms: _Optional[float] = ..., decode_ms: _Optional[float] = ..., detection_ms: _Optional[float] = ..., embedding_ms: _Optional[float] = ..., matching_ms: _Optional[float] = ...) -> None: ...

class IdentifyVideoProgress(_message.Message):
    __slots__ = ("frames_done", "frames_total", "elapsed_seconds")
    FRAMES_DONE_FIELD_NUMBER: _ClassVar[int]
    FRAMES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    ELAPSED_SECONDS_FIELD_NUMBER: _ClassVar[int]
    frames_done: int
    frames_total: int
    elapsed_seconds: float
    def __init__(self, frames_done: _Optional[int] = ..., frames_total: _Optional[int] = ..., elapsed_seconds: _Optional[float] = ...) -> None: ...

class IdentifyVideoResult(_message.Message):
    __slots__ = ("frames_requested", "frames_analyzed", "faces_detected", "faces_after_filter", "persons", "duration", "partial", "partial_reason", "timing", "answered_by")
    FRAMES_REQUESTED_FIELD_NUMBER: _ClassVar[int]
    FRAMES_ANALYZED_FIELD_NUMBER: _ClassVar[int]
    FACES_DETECTED_FIELD_NUMBER: _ClassVar[int]
    FACES_AFTER_FILTER_FIELD_NUMBER: _ClassVar[int]
    PERSONS_FIELD_NUMBER: _ClassVar[int]
    DURATION_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_FIELD_NUMBER: _ClassVar[int]
    PARTIAL_REASON_FIELD_NUMBER: _ClassVar[int]
    TIMING_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    frames_requested: int
    frames_analyzed: int
    faces_detected: int
    faces_after_filter: int
    persons: _containers.RepeatedCompositeFieldContainer[VideoPerson]
    duration: float
    partial: bool
    partial_reason: str
    timing: FaceTiming
    answered_by: AnsweredBy
    def __init__(self, frames_requested: _Optional[int] = ..., frames_analyzed: _Optional[int] = ..., faces_detected: _Optional[int] = ..., faces_after_filter: _Optional[int] = ..., persons: _Optional[_Iterable[_Union[VideoPerson, _Mapping]]] = ..., duration: _Optional[float] = ..., partial: _Optional[bool] = ..., partial_reason: _Optional[str] = ..., timing: _Optional[_Union[FaceTiming, _Mapping]] = ..., answered_by: _Optional[_Union[AnsweredBy, _Mapping]] = ...) -> None: ...

class IdentifyVideoResponse(_message.Message):
    __slots__ = ("progress", "result")
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    progress: IdentifyVideoProgress
    result: IdentifyVideoResult
    def __init__(self, progress: _Optional[_Union[IdentifyVideoProgress, _Mapping]] = ..., result: _Optional[_Union[IdentifyVideoResult, _Mapping]] = ...) -> None: ...

class GetFaceIndexRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetFaceIndexResponse(_message.Message):
    __slots__ = ("answered_by", "index_loaded", "index_problem", "performer_count", "face_count", "embedders", "detector", "max_distance")
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    INDEX_LOADED_FIELD_NUMBER: _ClassVar[int]
    INDEX_PROBLEM_FIELD_NUMBER: _ClassVar[int]
    PERFORMER_COUNT_FIELD_NUMBER: _ClassVar[int]
    FACE_COUNT_FIELD_NUMBER: _ClassVar[int]
    EMBEDDERS_FIELD_NUMBER: _ClassVar[int]
    DETECTOR_FIELD_NUMBER: _ClassVar[int]
    MAX_DISTANCE_FIELD_NUMBER: _ClassVar[int]
    answered_by: AnsweredBy
    index_loaded: bool
    index_problem: str
    performer_count: int
    face_count: int
    embedders: _containers.RepeatedScalarFieldContainer[str]
    detector: str
    max_distance: float
    def __init__(self, answered_by: _Optional[_Union[AnsweredBy, _Mapping]] = ..., index_loaded: _Optional[bool] = ..., index_problem: _Optional[str] = ..., performer_count: _Optional[int] = ..., face_count: _Optional[int] = ..., embedders: _Optional[_Iterable[str]] = ..., detector: _Optional[str] = ..., max_distance: _Optional[float] = ...) -> None: ...
