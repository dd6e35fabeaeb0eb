"""What the face services take and give back: request options, detected and identified faces,
comparisons, gallery votes, and the persons, sightings, progress and timings of a scene. Plain
dataclasses (frozen, but for the timings a scene adds up), transport-free: the gRPC servicer
translates them to and from protobuf.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stash_vision.server.faces.matching import EmbedderDistance, Match
from stash_vision.server.faces.pipeline import Face
from stash_vision.server.faces.stash_media import FaceImageRef


@dataclass(frozen=True)
class AnsweredBy:
    profile: str
    index_version: str = ""


@dataclass(frozen=True)
class IdentifyOptions:
    top_k: int = 0
    max_distance: float | None = None
    min_confidence: float | None = None
    min_face_size: int | None = None


@dataclass(frozen=True)
class IdentifiedFace:
    face: Face
    matches: list[Match]


@dataclass(frozen=True)
class FacePairResult:
    first: int
    second: int
    distance: float
    per_embedder: tuple[EmbedderDistance, ...]

    @property
    def similarity(self) -> float:
        return 1.0 - self.distance


@dataclass(frozen=True)
class Comparison:
    first_faces: list[Face]
    second_faces: list[Face]
    pairs: list[FacePairResult]
    same_person_distance: float
    answered_by: AnsweredBy


@dataclass(frozen=True)
class GalleryPerformer:
    best: Match
    average_distance: float
    image_indexes: list[int]
    vote_share: float


@dataclass(frozen=True)
class GalleryResult:
    total_images: int
    images_processed: int
    faces_detected: int
    performers: list[GalleryPerformer]
    errors: list[tuple[int, str]]
    answered_by: AnsweredBy
    # Images identified: total_images, or fewer when a Stash gallery is above the cap.
    images_selected: int = 0
    # For a Stash gallery, the Stash id of each selected image (indexes point into this list).
    image_ids: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Sighting:
    frame_index: int
    time_s: float
    face: Face


@dataclass(frozen=True)
class VideoPerson:
    person_id: int
    frame_count: int
    best: Match | None
    alternatives: list[Match]
    time_ranges: list[tuple[float, float]]
    sightings: list[Sighting]


@dataclass
class VideoTiming:
    total_ms: float = 0.0
    decode_ms: float = 0.0
    detection_ms: float = 0.0
    embedding_ms: float = 0.0
    matching_ms: float = 0.0


@dataclass(frozen=True)
class VideoRequest:
    path: str
    num_frames: int = 0
    start_fraction: float | None = None
    end_fraction: float | None = None
    cover: FaceImageRef | None = None
    options: IdentifyOptions = IdentifyOptions()
    cluster_distance: float | None = None
    # A scene of the user's Stash instead of `path` (exactly one of the two).
    stash_scene_id: str = ""


@dataclass(frozen=True)
class VideoProgress:
    frames_done: int
    frames_total: int
    elapsed_s: float


@dataclass(frozen=True)
class VideoResult:
    frames_requested: int
    frames_analyzed: int
    faces_detected: int
    faces_after_filter: int
    persons: list[VideoPerson]
    duration_s: float
    partial: bool
    partial_reason: str
    timing: VideoTiming
    answered_by: AnsweredBy
