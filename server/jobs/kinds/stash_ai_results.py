"""The StashAI gateway's answer shapes (../shared/docs/stash-plugins-contract.md B.1, B.2), built
from plain values so that the job kinds (from domain matches) and the adapter's synchronous
facial-recognition routes (from protobuf matches) give the AI Overhaul plugin the same objects.

Pure functions over plain data: no I/O, no model code, importable by the adapter."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

SERVICE_NAME = "stash-vision"

# Job kinds of the gateway's queue, by the plugin's job type (the {image|gallery|scene} of
# /queue/submit/{type}); prefixed so that they are told apart from the library kinds at a glance.
KIND_OF_TYPE = {
    "image": "stash-ai-identify-image",
    "gallery": "stash-ai-identify-gallery",
    "scene": "stash-ai-identify-scene",
}
TYPE_OF_KIND = {kind: job_type for job_type, kind in KIND_OF_TYPE.items()}


@dataclass(frozen=True)
class Candidate:
    """One performer a face may be: its universal id (`<stash-box domain>:<uuid>` or
    `local:<slug>`), what the index knows of it, and the fused distance of the match."""

    performer_id: str
    name: str
    distance: float
    image_url: str | None = None
    country: str | None = None

    @property
    def confidence(self) -> float:
        return min(1.0, max(0.0, 1.0 - self.distance))


@dataclass(frozen=True)
class FoundFace:
    """A detected face: box (x1, y1, x2, y2) in source pixels, detector confidence, and its
    candidates best first (each performer at most once per image)."""

    box: tuple[float, float, float, float]
    confidence: float
    candidates: Sequence[Candidate]


def utc_iso(unix_seconds: float | None = None) -> str:
    """The gateway's timestamps: naive UTC ISO 8601 (Pydantic's rendering of `datetime.utcnow()`)."""
    moment = (
        datetime.datetime.now(datetime.UTC)
        if unix_seconds is None
        else (datetime.datetime.fromtimestamp(unix_seconds, datetime.UTC))
    )
    return moment.replace(tzinfo=None).isoformat()


def _stash_box_id(performer_id: str) -> tuple[str, str | None]:
    """(the id the plugin shows and links, the stash-box domain) of a universal id. A stash-box
    performer is its UUID (as with the original's StashDB ids); a local one keeps its whole id."""
    domain, colon, uuid = performer_id.rpartition(":")
    if not colon or domain == "local":
        return performer_id, None
    return uuid, domain


def performer_info(candidate: Candidate) -> dict[str, Any]:
    """`PerformerInfo`: id = stash-box UUID, confidence 0–1, stash_url on the stash-box's site.
    `additional_info.distance` is our fused distance (the original put its percentage there)."""
    stash_id, domain = _stash_box_id(candidate.performer_id)
    return {
        "id": stash_id,
        "name": candidate.name,
        "confidence": round(candidate.confidence, 4),
        "image_url": candidate.image_url or None,
        "stash_url": f"https://{domain}/performers/{stash_id}" if domain else None,
        "additional_info": {
            "distance": round(candidate.distance, 4),
            "country": candidate.country or None,
            "hits": 1,
            "endpoint": domain,
            "performer_id": candidate.performer_id,
        },
    }


def face_info(face: FoundFace) -> dict[str, Any]:
    """`FaceInfo` with the real box as [x, y, w, h] (the original always sent zeros)."""
    x1, y1, x2, y2 = face.box
    return {
        "bbox": [round(x1), round(y1), round(x2 - x1), round(y2 - y1)],
        "confidence": round(face.confidence, 4),
        "landmarks": None,
        "age_estimate": None,
        "gender": None,
    }


def response_base(
    *,
    success: bool,
    message: str | None = None,
    error: str | None = None,
    request_id: str | None = None,
    processing_time: float | None = None,
    timestamp: float | None = None,
) -> dict[str, Any]:
    return {
        "success": success,
        "message": message,
        "error": error,
        "request_id": request_id,
        "processing_time": None if processing_time is None else round(processing_time, 4),
        "service_name": SERVICE_NAME,
        "timestamp": utc_iso(timestamp),
    }


def best_per_face(faces: Iterable[FoundFace], threshold: float) -> list[Candidate]:
    """Each face's top candidate when its confidence reaches `threshold`, each performer once
    (B.2 identify-image rule 3)."""
    kept: dict[str, Candidate] = {}
    for face in faces:
        if face.candidates and face.candidates[0].confidence >= threshold:
            top = face.candidates[0]
            if top.performer_id not in kept or top.distance < kept[top.performer_id].distance:
                kept[top.performer_id] = top
    return sorted(kept.values(), key=lambda c: c.distance)


@dataclass(frozen=True)
class Answer:
    """What every identify answer carries besides its findings."""

    entity: Mapping[str, Any]
    request_id: str | None
    processing_time: float
    model_info: Mapping[str, Any]  # profile, index version, models


def image_response(
    answer: Answer, faces: Sequence[FoundFace], threshold: float, performers: Sequence[Candidate]
) -> dict[str, Any]:
    """`FacialRecognitionResponse` of an image or a scene: `performers` as given (the caller
    chose them: best per face for an image, every person for a scene), every face."""
    message = f"Found {len(performers)} performer(s) in {len(faces)} face(s)"
    return {
        **response_base(
            success=True,
            message=message,
            request_id=answer.request_id,
            processing_time=answer.processing_time,
        ),
        "entity": dict(answer.entity),
        "performers": [performer_info(c) for c in performers],
        "faces": [face_info(face) for face in faces],
        "ai_model_info": {"threshold": threshold, "faces_detected": len(faces), **answer.model_info},
    }


def failure_response(
    entity: Mapping[str, Any], error: str, request_id: str | None = None, processing_time: float | None = None
) -> dict[str, Any]:
    """A business failure (no image, undecodable image, no index): `success: false` with the
    reason, which the plugin shows as it is (B.4 item 4)."""
    return {
        **response_base(success=False, error=error, request_id=request_id, processing_time=processing_time),
        "entity": dict(entity),
        "performers": [],
        "faces": [],
        "ai_model_info": None,
    }


# ------------------------------------------------------------------------------------------ gallery


def gallery_image_result(
    image: Mapping[str, Any],
    performers: Sequence[Candidate] = (),
    error: str | None = None,
    processing_time: float = 0.0,
) -> dict[str, Any]:
    """One image of a gallery job (a job item's result): a `processingResults` entry."""
    return {
        "imageId": image.get("id"),
        "imageUrl": image.get("url"),
        "success": error is None,
        "performers": [performer_info(c) for c in performers],
        "error": error,
        "processingTime": round(processing_time, 4),
    }


def _gallery_performers(images: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per performer over the gallery: how many images show them, where, how sure. Sorted by
    frequency, then best confidence (B.2)."""
    found: dict[str, dict[str, Any]] = {}
    for image in images:
        for performer in image.get("performers") or []:
            entry = found.setdefault(
                performer["id"], {"performer": performer, "appearances": [], "confidences": []}
            )
            confidence = float(performer["confidence"])
            entry["appearances"].append(
                {"imageId": image.get("imageId"), "imageUrl": image.get("imageUrl"), "confidence": confidence}
            )
            entry["confidences"].append(confidence)
            if confidence > entry["performer"]["confidence"]:
                entry["performer"] = performer
    performers = []
    for entry in found.values():
        best: dict[str, Any] = entry["performer"]
        confidences: list[float] = entry["confidences"]
        performers.append(
            {
                "performer": {
                    **best,
                    "distance": best["additional_info"]["distance"],
                    "image": best["image_url"],
                    "performer_url": best["stash_url"],
                },
                "frequency": len(entry["appearances"]),
                "appearances": entry["appearances"],
                "averageConfidence": round(sum(confidences) / len(confidences), 4),
                "bestConfidence": max(confidences),
            }
        )
    performers.sort(key=lambda p: (-p["frequency"], -p["bestConfidence"]))
    return performers


def gallery_results(
    gallery_id: str | None, total_images: int, images: Sequence[Mapping[str, Any]]
) -> dict[str, Any]:
    """`ai_model_info.gallery_results` from the finished images' results. An image that could not
    be read counts as skipped (the original dropped undecodable images silently)."""
    processed = [image for image in images if image.get("success")]
    return {
        "success": True,
        "galleryId": gallery_id,
        "totalImages": total_images,
        "processedImages": len(processed),
        "skippedImages": len(images) - len(processed),
        "performers": _gallery_performers(processed),
        "processingResults": list(images),
        "totalProcessingTime": round(sum(float(i.get("processingTime") or 0.0) for i in images), 4),
    }


def gallery_response(
    answer: Answer, total_images: int, images: Sequence[Mapping[str, Any]], timestamp: float | None = None
) -> dict[str, Any]:
    """The gallery job's result: the base response with the real answer in
    `ai_model_info.gallery_results` (B.2), `performers` and `faces` empty as in the original."""
    results = gallery_results(answer.entity.get("id"), total_images, images)
    return {
        **response_base(
            success=True,
            message=f"Processed {results['processedImages']}/{total_images} images, "
            f"found {len(results['performers'])} performer(s)",
            request_id=answer.request_id,
            processing_time=answer.processing_time,
            timestamp=timestamp,
        ),
        "entity": dict(answer.entity),
        "performers": [],
        "faces": [],
        "ai_model_info": {**answer.model_info, "gallery_results": results},
    }
