"""gRPC FaceService: protobuf <-> the face domain service (server/faces/identification.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import grpc

from stash_vision.server.api.convert import image_ref
from stash_vision.server.api.status import mapped_errors, mapped_stream_errors
from stash_vision.server.errors import InvalidInput
from stash_vision.server.faces.identification import FaceIdentification
from stash_vision.server.faces.index.records import PerformerRecord
from stash_vision.server.faces.matching import EmbedderDistance, Match
from stash_vision.server.faces.pipeline import Face, FaceGates
from stash_vision.server.faces.results import (
    AnsweredBy,
    GalleryResult,
    IdentifyOptions,
    VideoPerson,
    VideoProgress,
    VideoRequest,
    VideoResult,
)
from stash_vision.server.faces.stash_media import FaceImageRef, StashImageRef
from stash_vision.v1 import faces_pb2, faces_pb2_grpc, media_pb2


def face_image_ref(source: media_pb2.ImageSource) -> FaceImageRef:
    """image_ref, plus a Stash image id (only the face services read the user's Stash)."""
    if source.WhichOneof("source") == "stash_image_id":
        if not source.stash_image_id.strip():
            raise InvalidInput("image.stash_image_id is empty")
        return StashImageRef(source.stash_image_id.strip())
    return image_ref(source)


def _face(face: Face) -> faces_pb2.Face:
    x1, y1, x2, y2 = (float(v) for v in face.box)
    return faces_pb2.Face(
        box=faces_pb2.FaceBox(x=x1, y=y1, width=x2 - x1, height=y2 - y1),
        confidence=face.confidence,
        landmarks=[faces_pb2.Point(x=float(x), y=float(y)) for x, y in face.landmarks],
        yaw_degrees=face.yaw_degrees,
    )


def _answered(answered: AnsweredBy) -> faces_pb2.AnsweredBy:
    return faces_pb2.AnsweredBy(profile=answered.profile, index_version=answered.index_version)


def _distances(per: tuple[EmbedderDistance, ...]) -> list[faces_pb2.EmbedderDistance]:
    return [faces_pb2.EmbedderDistance(embedder=d.embedder, distance=d.distance, found=d.found) for d in per]


def _performer(record: PerformerRecord) -> faces_pb2.Performer:
    return faces_pb2.Performer(
        id=record.id,
        name=record.name,
        aliases=list(record.aliases),
        stash_ids=[faces_pb2.StashBoxId(endpoint=e, stash_id=s) for e, s in record.stash_ids],
        country=record.country or "",
        image_url=record.image_url or "",
        face_count=record.face_count,
    )


def _match(match: Match) -> faces_pb2.Match:
    return faces_pb2.Match(
        performer=_performer(match.performer),
        distance=match.distance,
        confidence=match.confidence,
        embedder_distances=_distances(match.per_embedder),
    )


def _filter(face_filter: faces_pb2.FaceFilter) -> tuple[float | None, int | None]:
    """(min_confidence, min_face_size); None where the caller left the profile's value."""
    return (
        face_filter.min_confidence if face_filter.HasField("min_confidence") else None,
        face_filter.min_face_size if face_filter.HasField("min_face_size") else None,
    )


def _options(options: faces_pb2.IdentifyOptions) -> IdentifyOptions:
    min_confidence, min_face_size = _filter(options.filter)
    return IdentifyOptions(
        top_k=options.top_k,
        max_distance=options.max_distance if options.HasField("max_distance") else None,
        min_confidence=min_confidence,
        min_face_size=min_face_size,
    )


def _person(person: VideoPerson) -> faces_pb2.VideoPerson:
    message = faces_pb2.VideoPerson(
        person_id=person.person_id,
        frame_count=person.frame_count,
        alternatives=[_match(m) for m in person.alternatives],
        time_ranges=[faces_pb2.TimeRange(start=s, end=e) for s, e in person.time_ranges],
        sightings=[
            faces_pb2.Sighting(frame_index=s.frame_index, time_seconds=s.time_s, face=_face(s.face))
            for s in person.sightings
        ],
    )
    if person.best is not None:
        message.best_match.CopyFrom(_match(person.best))
    return message


def _video_result(result: VideoResult) -> faces_pb2.IdentifyVideoResult:
    timing = result.timing
    return faces_pb2.IdentifyVideoResult(
        frames_requested=result.frames_requested,
        frames_analyzed=result.frames_analyzed,
        faces_detected=result.faces_detected,
        faces_after_filter=result.faces_after_filter,
        persons=[_person(p) for p in result.persons],
        duration=result.duration_s,
        partial=result.partial,
        partial_reason=result.partial_reason,
        timing=faces_pb2.FaceTiming(
            total_ms=timing.total_ms,
            decode_ms=timing.decode_ms,
            detection_ms=timing.detection_ms,
            embedding_ms=timing.embedding_ms,
            matching_ms=timing.matching_ms,
        ),
        answered_by=_answered(result.answered_by),
    )


class FaceServicer(faces_pb2_grpc.FaceServiceServicer):  # type: ignore[misc]
    def __init__(self, faces: FaceIdentification) -> None:
        self.faces = faces

    def _gates(self, face_filter: faces_pb2.FaceFilter) -> FaceGates:
        return self.faces.gates(*_filter(face_filter))

    @mapped_errors
    async def DetectFaces(
        self, request: faces_pb2.DetectFacesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> faces_pb2.DetectFacesResponse:
        faces, width, height = await self.faces.detect(
            face_image_ref(request.image), self._gates(request.filter)
        )
        return faces_pb2.DetectFacesResponse(
            faces=[_face(f) for f in faces],
            image_width=width,
            image_height=height,
            answered_by=_answered(self.faces.answered()),
        )

    @mapped_errors
    async def EmbedFaces(
        self, request: faces_pb2.EmbedFacesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> faces_pb2.EmbedFacesResponse:
        embedded = await self.faces.embed(
            face_image_ref(request.image), self._gates(request.filter), request.largest_only
        )
        return faces_pb2.EmbedFacesResponse(
            faces=[
                faces_pb2.EmbeddedFace(
                    face=_face(e.face),
                    embeddings=[
                        faces_pb2.Embedding(embedder=name, values=vector.tolist())
                        for name, vector in e.vectors.items()
                    ],
                )
                for e in embedded
            ],
            answered_by=_answered(self.faces.answered()),
        )

    @mapped_errors
    async def CompareFaces(
        self, request: faces_pb2.CompareFacesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> faces_pb2.CompareFacesResponse:
        result = await self.faces.compare(
            face_image_ref(request.first), face_image_ref(request.second), self._gates(request.filter)
        )
        return faces_pb2.CompareFacesResponse(
            first_faces=[_face(f) for f in result.first_faces],
            second_faces=[_face(f) for f in result.second_faces],
            pairs=[
                faces_pb2.FacePair(
                    first_face=p.first,
                    second_face=p.second,
                    similarity=p.similarity,
                    distance=p.distance,
                    same_person=p.distance <= result.same_person_distance,
                    embedder_distances=_distances(p.per_embedder),
                )
                for p in result.pairs
            ],
            same_person_distance=result.same_person_distance,
            answered_by=_answered(result.answered_by),
        )

    @mapped_errors
    async def IdentifyImage(
        self, request: faces_pb2.IdentifyImageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> faces_pb2.IdentifyImageResponse:
        faces, answered = await self.faces.identify_image(
            face_image_ref(request.image), _options(request.options)
        )
        return faces_pb2.IdentifyImageResponse(
            faces=[
                faces_pb2.IdentifiedFace(face=_face(f.face), matches=[_match(m) for m in f.matches])
                for f in faces
            ],
            answered_by=_answered(answered),
        )

    @mapped_errors
    async def IdentifyGallery(
        self, request: faces_pb2.IdentifyGalleryRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> faces_pb2.IdentifyGalleryResponse:
        result = await self._gallery(request)
        return faces_pb2.IdentifyGalleryResponse(
            total_images=result.total_images,
            images_processed=result.images_processed,
            faces_detected=result.faces_detected,
            performers=[
                faces_pb2.GalleryPerformer(
                    best_match=_match(p.best),
                    average_distance=p.average_distance,
                    image_count=len(p.image_indexes),
                    image_indexes=p.image_indexes,
                    vote_share=p.vote_share,
                )
                for p in result.performers
            ],
            errors=[faces_pb2.ImageError(image_index=i, message=m) for i, m in result.errors],
            answered_by=_answered(result.answered_by),
            images_selected=result.images_selected,
            image_ids=result.image_ids,
        )

    async def _gallery(self, request: faces_pb2.IdentifyGalleryRequest) -> GalleryResult:
        options = _options(request.options)
        gallery_id = request.stash_gallery_id.strip()
        if gallery_id and request.images:
            raise InvalidInput("give either images or stash_gallery_id, not both")
        if gallery_id:
            return await self.faces.identify_stash_gallery(gallery_id, options)
        return await self.faces.identify_gallery([face_image_ref(s) for s in request.images], options)

    @mapped_stream_errors
    async def IdentifyVideo(
        self, request: faces_pb2.IdentifyVideoRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[faces_pb2.IdentifyVideoResponse]:
        video = VideoRequest(
            path=request.path,
            num_frames=request.num_frames,
            start_fraction=request.start_fraction if request.HasField("start_fraction") else None,
            end_fraction=request.end_fraction if request.HasField("end_fraction") else None,
            cover=face_image_ref(request.cover) if request.HasField("cover") else None,
            options=_options(request.options),
            cluster_distance=request.cluster_distance if request.HasField("cluster_distance") else None,
            stash_scene_id=request.stash_scene_id.strip(),
        )
        async for event in self.faces.identify_video(video):
            if isinstance(event, VideoProgress):
                yield faces_pb2.IdentifyVideoResponse(
                    progress=faces_pb2.IdentifyVideoProgress(
                        frames_done=event.frames_done,
                        frames_total=event.frames_total,
                        elapsed_seconds=event.elapsed_s,
                    )
                )
            else:
                yield faces_pb2.IdentifyVideoResponse(result=_video_result(event))

    @mapped_errors
    async def GetFaceIndex(
        self, request: faces_pb2.GetFaceIndexRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> faces_pb2.GetFaceIndexResponse:
        index, problem = await self.faces.indexes.describe()
        profile = self.faces.profile
        return faces_pb2.GetFaceIndexResponse(
            answered_by=_answered(self.faces.answered(index)),
            index_loaded=index is not None,
            index_problem=problem,
            performer_count=index.performer_count if index else 0,
            face_count=index.face_count if index else 0,
            embedders=profile.embedder_names,
            detector=profile.detector.model,
            max_distance=profile.thresholds.max_distance,
        )
