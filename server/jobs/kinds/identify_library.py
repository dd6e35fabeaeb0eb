"""`identify-library`: every image, video and zip gallery under some roots through face
identification, on the same service as the `/identify…` calls. Per item it keeps who was found:
for an image each face with its best matches, for a video the persons of the scene with their time
ranges, for a gallery the performers voted for across its images."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash_vision.server.errors import InvalidInput
from stash_vision.server.faces.identification import FaceIdentification
from stash_vision.server.faces.matching import Match
from stash_vision.server.faces.results import IdentifyOptions, VideoRequest, VideoResult
from stash_vision.server.image_source import ImagePath
from stash_vision.server.jobs.listing import MediaKind, media_kind, validate
from stash_vision.server.media.paths import MediaPaths

from .base import ItemOutcome, ItemProblem, check_keys, number
from .tag_library import LISTING_KEYS, gallery_images, library_items, listing_request

_KEYS = LISTING_KEYS | {"top_k", "max_distance", "video_frames"}


@dataclass(frozen=True)
class IdentifyLibraryParams:
    listing: Any  # ListingRequest
    options: IdentifyOptions
    video_frames: int


class IdentifyLibrary:
    name = "identify-library"
    unit = "files"

    def __init__(self, faces: FaceIdentification, paths: MediaPaths) -> None:
        self.faces = faces
        self.paths = paths

    def parse(self, params: Mapping[str, Any]) -> IdentifyLibraryParams:
        check_keys(params, _KEYS, self.name)
        listing = listing_request(params)
        validate(listing, self.paths)
        top_k = number(params, "top_k", 3, minimum=1)
        frames = number(params, "video_frames", 0, minimum=0)
        return IdentifyLibraryParams(
            listing=listing,
            options=IdentifyOptions(
                top_k=int(top_k or 3), max_distance=number(params, "max_distance", None, minimum=0.0)
            ),
            video_frames=int(frames or 0),
        )

    def items(self, params: IdentifyLibraryParams) -> Iterator[str | ItemProblem]:
        return library_items(params.listing, self.paths)

    async def run(self, params: IdentifyLibraryParams, item: str) -> ItemOutcome:
        kind = media_kind(item)
        if kind is MediaKind.VIDEO:
            return ItemOutcome(await self._video(params, item))
        if kind is MediaKind.GALLERY:
            members = await asyncio.to_thread(gallery_images, Path(item))
            refs = [ImagePath(f"{item}/{member}") for member in members[: self.faces.max_images]]
            gallery = await self.faces.identify_gallery(refs, params.options)
            return ItemOutcome(
                {
                    "media": "gallery",
                    "images": gallery.images_processed,
                    "faces": gallery.faces_detected,
                    "performers": [
                        {
                            **_match(p.best),
                            "vote_share": round(p.vote_share, 4),
                            "images": len(p.image_indexes),
                        }
                        for p in gallery.performers
                    ],
                    "answered_by": gallery.answered_by.index_version,
                }
            )
        faces, answered = await self.faces.identify_image(ImagePath(item), params.options)
        return ItemOutcome(
            {
                "media": "image",
                "faces": [
                    {
                        "box": [round(float(v), 1) for v in face.face.box],
                        "confidence": round(face.face.confidence, 4),
                        "matches": [_match(m) for m in face.matches],
                    }
                    for face in faces
                ],
                "answered_by": answered.index_version,
            }
        )

    async def _video(self, params: IdentifyLibraryParams, item: str) -> dict[str, Any]:
        result: VideoResult | None = None
        request = VideoRequest(path=item, num_frames=params.video_frames, options=params.options)
        async for event in self.faces.identify_video(request):
            if isinstance(event, VideoResult):
                result = event
        if result is None:
            raise InvalidInput(f"{item}: identification ended without a result")
        return {
            "media": "video",
            "frames": result.frames_analyzed,
            "faces": result.faces_detected,
            "persons": [
                {
                    "best": _match(person.best) if person.best else None,
                    "frames": person.frame_count,
                    "time_ranges": [[round(a, 2), round(b, 2)] for a, b in person.time_ranges],
                }
                for person in result.persons
            ],
            "partial": result.partial,
            "answered_by": result.answered_by.index_version,
        }


def _match(match: Match) -> dict[str, Any]:
    return {
        "performer_id": match.performer.id,
        "name": match.performer.name,
        "distance": round(match.distance, 4),
        "confidence": round(match.confidence, 4),
    }
