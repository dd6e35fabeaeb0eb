"""The StashAI gateway's queue jobs (AI Overhaul plugin, contract part B): identify the performers
in an uploaded image, in a gallery's uploaded images (one item per image, so progress moves and a
cancel takes effect after each image), or in a Stash scene resolved through the Stash connection
(the plugin sends only the scene's id; the original gateway could not identify a scene).

Each item's result is the gateway's answer object (`stash_ai_results`): for an image or a scene the
whole `FacialRecognitionResponse`, for a gallery image its `processingResults` entry (the adapter
folds them into `gallery_results`). A failure that belongs to the request (no face index, an
undecodable image, a scene Stash does not know) is a result with `success: false` and the reason,
which the plugin shows; only Triton being away is raised, so the runner retries the item."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stash_vision.server.errors import BackendUnavailable, DeadlineExceeded, InvalidInput, StashVisionError
from stash_vision.server.faces.identification import MAX_TOP_K, MAX_VIDEO_FRAMES, FaceIdentification
from stash_vision.server.faces.matching import Match
from stash_vision.server.faces.results import (
    AnsweredBy,
    IdentifiedFace,
    IdentifyOptions,
    VideoProgress,
    VideoRequest,
    VideoResult,
)
from stash_vision.server.image_source import ImageBytes

from .base import ItemOutcome, ItemProblem, check_keys, number, report_progress
from .stash_ai_results import (
    KIND_OF_TYPE,
    Answer,
    Candidate,
    FoundFace,
    best_per_face,
    failure_response,
    gallery_image_result,
    image_response,
)
from .stash_ai_uploads import Uploads, check_upload_id

_REQUEST_KEYS = frozenset({"entity", "threshold", "max_results", "request_id"})
_ENTITY_KEYS = ("id", "type", "title", "path")
MAX_RESULTS = 50  # the gateway's limit; the index is asked for at most MAX_TOP_K
# Errors the runner retries (Triton restarting); every other domain error answers the request.
_RETRIED = (BackendUnavailable, DeadlineExceeded)


@dataclass(frozen=True)
class RequestParams:
    """What every gateway request carries: the Stash entity it is about and the matching knobs."""

    entity: dict[str, Any]
    threshold: float
    max_results: int
    request_id: str | None

    @property
    def options(self) -> IdentifyOptions:
        return IdentifyOptions(top_k=min(self.max_results, MAX_TOP_K))


def parse_request(params: Mapping[str, Any]) -> RequestParams:
    entity = params.get("entity")
    if not isinstance(entity, Mapping) or not isinstance(entity.get("id"), str):
        raise InvalidInput(f"entity must be an object with a string id, got {entity!r}")
    threshold = number(params, "threshold", 0.5, minimum=0.0)
    if threshold is None or threshold > 1.0:
        raise InvalidInput(f"threshold must be between 0 and 1, got {params.get('threshold')!r}")
    max_results = number(params, "max_results", 5, minimum=1)
    if max_results is None or max_results > MAX_RESULTS or not float(max_results).is_integer():
        raise InvalidInput(f"max_results must be a whole number from 1 to {MAX_RESULTS}")
    request_id = params.get("request_id")
    if request_id is not None and not isinstance(request_id, str):
        raise InvalidInput(f"request_id must be a string, got {request_id!r}")
    return RequestParams(
        {key: entity[key] for key in _ENTITY_KEYS if key in entity}, threshold, int(max_results), request_id
    )


def candidate(match: Match) -> Candidate:
    record = match.performer
    return Candidate(record.id, record.name, match.distance, record.image_url, record.country)


def found_faces(faces: list[IdentifiedFace]) -> list[FoundFace]:
    return [
        FoundFace(
            tuple(float(v) for v in face.face.box),  # type: ignore[arg-type]  # always four values
            face.face.confidence,
            [candidate(m) for m in face.matches],
        )
        for face in faces
    ]


def model_info(faces: FaceIdentification, answered: AnsweredBy) -> dict[str, Any]:
    """`ai_model_info`: which profile, models and index answered."""
    return {
        "models_used": list(faces.profile.embedder_names),
        "ensemble_method": "weighted_distance_fusion",
        "profile": answered.profile,
        "index_version": answered.index_version,
    }


class _UploadedImages:
    """Shared by the image and gallery kinds: one uploaded image through face identification."""

    unit = "images"

    def __init__(self, faces: FaceIdentification, uploads: Uploads) -> None:
        self.faces = faces
        self.uploads = uploads

    async def identify(
        self, upload: str, index: int, request: RequestParams
    ) -> tuple[list[FoundFace], AnsweredBy] | str:
        """The faces found, or the reason there is no answer. The image is deleted afterwards,
        unless the item is retried (Triton away)."""
        try:
            data = await asyncio.to_thread(self.uploads.read, upload, index)
            faces, answered = await self.faces.identify_image(ImageBytes(data), request.options)
        except _RETRIED:
            raise
        except StashVisionError as error:
            outcome: tuple[list[FoundFace], AnsweredBy] | str = str(error)
        else:
            outcome = found_faces(faces), answered
        await asyncio.to_thread(self.uploads.discard, upload, index)
        return outcome


@dataclass(frozen=True)
class ImageParams:
    request: RequestParams
    upload: str


class IdentifyUploadedImage(_UploadedImages):
    name = KIND_OF_TYPE["image"]

    def parse(self, params: Mapping[str, Any]) -> ImageParams:
        check_keys(params, _REQUEST_KEYS | {"upload"}, self.name)
        return ImageParams(parse_request(params), check_upload_id(params.get("upload")))

    def items(self, params: ImageParams) -> Iterator[str | ItemProblem]:
        return iter(["0"])

    async def run(self, params: ImageParams, item: str) -> ItemOutcome:
        started = time.perf_counter()
        request = params.request
        outcome = await self.identify(params.upload, 0, request)
        elapsed = time.perf_counter() - started
        if isinstance(outcome, str):
            return ItemOutcome(failure_response(request.entity, outcome, request.request_id, elapsed))
        faces, answered = outcome
        answer = Answer(request.entity, request.request_id, elapsed, model_info(self.faces, answered))
        return ItemOutcome(
            image_response(answer, faces, request.threshold, best_per_face(faces, request.threshold))
        )


@dataclass(frozen=True)
class GalleryParams:
    request: RequestParams
    upload: str
    # Per image, in the plugin's order: {id, url, title, uploaded, error}; image i is upload file i.
    images: tuple[dict[str, Any], ...]


class IdentifyUploadedGallery(_UploadedImages):
    name = KIND_OF_TYPE["gallery"]

    def parse(self, params: Mapping[str, Any]) -> GalleryParams:
        check_keys(params, _REQUEST_KEYS | {"upload", "images"}, self.name)
        images = params.get("images")
        if not isinstance(images, list) or not images or not all(isinstance(i, Mapping) for i in images):
            raise InvalidInput("images must be a non-empty list of {id, url, title, uploaded} objects")
        if len(images) > self.faces.max_images:
            raise InvalidInput(
                f"{len(images)} images in one gallery; the limit is {self.faces.max_images} "
                "(STASH_VISION_MAX_IMAGES_PER_REQUEST)"
            )
        return GalleryParams(
            parse_request(params), check_upload_id(params.get("upload")), tuple(dict(i) for i in images)
        )

    def items(self, params: GalleryParams) -> Iterator[str | ItemProblem]:
        return iter([str(index) for index in range(len(params.images))])

    async def run(self, params: GalleryParams, item: str) -> ItemOutcome:
        started = time.perf_counter()
        index = int(item)
        image = params.images[index]
        if not image.get("uploaded"):  # why not: bad base64, or none sent
            reason = str(image.get("error") or "the plugin sent no image data for this image")
            return ItemOutcome(gallery_image_result(image, error=reason))
        outcome = await self.identify(params.upload, index, params.request)
        elapsed = time.perf_counter() - started
        if isinstance(outcome, str):
            return ItemOutcome(gallery_image_result(image, error=outcome, processing_time=elapsed))
        faces, _ = outcome
        performers = best_per_face(faces, params.request.threshold)
        return ItemOutcome(gallery_image_result(image, performers, processing_time=elapsed))


@dataclass(frozen=True)
class SceneParams:
    request: RequestParams
    frames: int  # 0: the face service's default (60)


class IdentifyStashScene:
    name = KIND_OF_TYPE["scene"]
    unit = "scenes"

    def __init__(self, faces: FaceIdentification) -> None:
        self.faces = faces

    def parse(self, params: Mapping[str, Any]) -> SceneParams:
        check_keys(params, _REQUEST_KEYS | {"frames"}, self.name)
        frames = number(params, "frames", 0, minimum=0)
        if frames is None or frames > MAX_VIDEO_FRAMES or not float(frames).is_integer():
            raise InvalidInput(f"frames must be a whole number from 0 to {MAX_VIDEO_FRAMES}")
        return SceneParams(parse_request(params), int(frames))

    def items(self, params: SceneParams) -> Iterator[str | ItemProblem]:
        return iter([str(params.request.entity["id"])])

    async def run(self, params: SceneParams, item: str) -> ItemOutcome:
        started = time.perf_counter()
        request = params.request
        video = VideoRequest(path="", stash_scene_id=item, num_frames=params.frames, options=request.options)
        result: VideoResult | None = None
        try:
            async for event in self.faces.identify_video(video):
                if isinstance(event, VideoProgress):
                    report_progress(f"Scene {item}: read {event.frames_done}/{event.frames_total} frames")
                else:
                    result = event
        except _RETRIED:
            raise
        except StashVisionError as error:
            elapsed = time.perf_counter() - started
            return ItemOutcome(failure_response(request.entity, str(error), request.request_id, elapsed))
        if result is None:
            raise InvalidInput(f"scene {item}: identification ended without a result")
        return ItemOutcome(self._response(request, result, time.perf_counter() - started))

    def _response(self, request: RequestParams, result: VideoResult, elapsed: float) -> dict[str, Any]:
        """Every person of the scene with a match, each performer once (closest first), with no
        threshold, as the original did for a scene; one face entry per person."""
        faces = [
            FoundFace(
                tuple(float(v) for v in person.sightings[0].face.box),  # type: ignore[arg-type]
                person.sightings[0].face.confidence,
                [candidate(m) for m in ([person.best] if person.best else []) + person.alternatives],
            )
            for person in result.persons
            if person.sightings
        ]
        performers = best_per_face(faces, 0.0)
        info = {
            **model_info(self.faces, result.answered_by),
            "frames_requested": result.frames_requested,
            "frames_analyzed": result.frames_analyzed,
            "faces_detected": result.faces_detected,
            "persons": len(result.persons),
            "partial": result.partial,
            "partial_reason": result.partial_reason or None,
        }
        answer = Answer(request.entity, request.request_id, elapsed, info)
        return image_response(answer, faces, request.threshold, performers)
