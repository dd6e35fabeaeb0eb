"""`tag-library`: every image, video and zip gallery under some roots through the active taggers,
on the same flows as the plugin's calls (no second copy of tagging), with the plugin's defaults.

A video is tagged exactly as `/process_video/` would tag it (same sampling, same `.AI.json`
schema 1), and its answer lands in the result store, so the plugin's own pass over the library later
is answered without decoding. With `write_sidecars`, `<video>.AI.json` is written beside the video
the way the AITagger plugin expects to find it: atomically, and never over a file that changed
after the item started (someone else wrote a newer one)."""

from __future__ import annotations

import asyncio
import json
import math
import time
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from stash_vision.atomic import replace_text
from stash_vision.server.errors import InvalidInput, StashVisionError
from stash_vision.server.image_source import ImagePath
from stash_vision.server.jobs.listing import (
    ListingProblem,
    ListingRequest,
    MediaKind,
    iter_media,
    media_kind,
    validate,
)
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.tagging.image_flow import ImageOutcome, ImageTagging, TaggingOptions
from stash_vision.server.tagging.video_flow import VideoOptions, VideoOutcome, VideoTagging

from .base import ItemFailed, ItemOutcome, ItemProblem, boolean, check_keys, number, string_list

# The AITagger plugin's defaults (aitagger-contract.md §1): what its own calls would send.
PLUGIN_FRAME_INTERVAL = 2.0
PLUGIN_VIDEO_THRESHOLD = 0.3
PLUGIN_IMAGE_THRESHOLD = 0.5

# The listing parameters both library kinds take (listing_request reads them).
LISTING_KEYS = frozenset({"roots", "paths", "include", "exclude", "modified_since", "media"})
_KEYS = LISTING_KEYS | {
    "frame_interval",
    "video_threshold",
    "image_threshold",
    "vr",
    "skip_categories",
    "write_sidecars",
}


@dataclass(frozen=True)
class TagLibraryParams:
    listing: ListingRequest
    frame_interval: float
    video_threshold: float
    image_threshold: float
    vr: bool
    skip_categories: frozenset[str]
    write_sidecars: bool


class TagLibrary:
    name = "tag-library"
    unit = "files"

    def __init__(self, images: ImageTagging, videos: VideoTagging, paths: MediaPaths) -> None:
        self.images = images
        self.videos = videos
        self.paths = paths

    def parse(self, params: Mapping[str, Any]) -> TagLibraryParams:
        check_keys(params, _KEYS, self.name)
        listing = listing_request(params)
        validate(listing, self.paths)
        parsed = TagLibraryParams(
            listing=listing,
            frame_interval=_required(number(params, "frame_interval", PLUGIN_FRAME_INTERVAL, minimum=0.001)),
            video_threshold=_fraction(params, "video_threshold", PLUGIN_VIDEO_THRESHOLD),
            image_threshold=_fraction(params, "image_threshold", PLUGIN_IMAGE_THRESHOLD),
            vr=boolean(params, "vr", False),
            skip_categories=frozenset(string_list(params, "skip_categories")),
            write_sidecars=boolean(params, "write_sidecars", False),
        )
        if not self.images.active(parsed.skip_categories):
            raise InvalidInput("no tagger is active (none configured, or every category skipped)")
        return parsed

    def items(self, params: TagLibraryParams) -> Iterator[str | ItemProblem]:
        return library_items(params.listing, self.paths)

    async def run(self, params: TagLibraryParams, item: str) -> ItemOutcome:
        kind = media_kind(item)
        if kind is MediaKind.VIDEO:
            return await self._video(params, item)
        if kind is MediaKind.GALLERY:
            return await self._gallery(params, item)
        outcome = await self._images(params, [item])
        return ItemOutcome({"media": "image", **_image_result(outcome[0])})

    async def _images(self, params: TagLibraryParams, paths: list[str]) -> list[ImageOutcome]:
        options = TaggingOptions(threshold=params.image_threshold, skip_categories=params.skip_categories)
        tagged = await self.images.tag([ImagePath(p) for p in paths], options)
        if len(paths) == 1 and tagged.results[0].error:
            raise ItemFailed(tagged.results[0].error, tagged.results[0].error_kind)
        return tagged.results

    async def _gallery(self, params: TagLibraryParams, item: str) -> ItemOutcome:
        members = await asyncio.to_thread(gallery_images, Path(item))
        images: dict[str, Any] = {}
        batch = max(1, self.images.max_images)
        for start in range(0, len(members), batch):
            chunk = members[start : start + batch]
            outcomes = await self._images(params, [f"{item}/{member}" for member in chunk])
            images.update({member: _image_result(o) for member, o in zip(chunk, outcomes, strict=True)})
        return ItemOutcome({"media": "gallery", "images": images})

    async def _video(self, params: TagLibraryParams, item: str) -> ItemOutcome:
        started = time.time()
        sidecar = Path(f"{item}.AI.json")
        existing = await asyncio.to_thread(_read_sidecar, sidecar) if params.write_sidecars else None
        options = VideoOptions(
            frame_interval=params.frame_interval,
            threshold=params.video_threshold,
            return_confidence=True,
            vr=params.vr,
            existing=existing,
            skip_categories=params.skip_categories,
        )
        outcome: VideoOutcome | None = None
        async for event in self.videos.tag(item, options):
            if isinstance(event, VideoOutcome):
                outcome = event
        if outcome is None:
            raise InvalidInput(f"{item}: tagging ended without a result")
        result: dict[str, Any] = {
            "media": "video",
            "ai_json": outcome.json_result,
            "video_tag_info": outcome.video_tag_info,
            "frames": outcome.frames,
            "partial": outcome.partial,
        }
        if outcome.partial:
            result["partial_reason"] = outcome.partial_reason
        if params.write_sidecars:
            result["sidecar"] = await asyncio.to_thread(_write_sidecar, sidecar, outcome.json_result, started)
        return ItemOutcome(result)


def library_items(listing: ListingRequest, paths: MediaPaths) -> Iterator[str | ItemProblem]:
    """The items of both library kinds: listed media paths, and what could not be listed as
    failed items."""
    for listed in iter_media(listing, paths):
        if isinstance(listed, ListingProblem):
            yield ItemProblem(listed.path, listed.error, "ListingProblem")
        else:
            yield listed.path


def listing_request(params: Mapping[str, Any]) -> ListingRequest:
    """The listing parameters both library kinds share: roots, paths, include, exclude,
    modified_since (ISO 8601 or seconds since 1970) and media (image, video, gallery)."""
    media = string_list(params, "media") or tuple(MediaKind)
    unknown = [m for m in media if m not in {k.value for k in MediaKind}]
    if unknown:
        raise InvalidInput(f"media must name image, video or gallery, got {unknown}")
    return ListingRequest(
        roots=string_list(params, "roots"),
        paths=string_list(params, "paths"),
        include=string_list(params, "include"),
        exclude=string_list(params, "exclude"),
        modified_since=_timestamp(params.get("modified_since")),
        kinds=frozenset(MediaKind(m) for m in media),
    )


def _image_result(outcome: ImageOutcome) -> dict[str, Any]:
    if outcome.error:
        return {"error": outcome.error}
    return {"tags": {c: [[h.name, h.confidence] for h in hits] for c, hits in outcome.categories.items()}}


def gallery_images(archive: Path) -> list[str]:
    """The image members of a zip gallery, sorted; InvalidInput when it is unreadable or holds none."""
    try:
        with zipfile.ZipFile(archive) as bundle:
            names = [
                info.filename
                for info in bundle.infolist()
                if not info.is_dir() and media_kind(info.filename) is MediaKind.IMAGE
            ]
    except zipfile.BadZipFile as error:
        raise InvalidInput(f"{archive} is not a readable zip archive ({error})") from None
    except OSError as error:
        raise InvalidInput(f"cannot read {archive}: {error.strerror or error}") from None
    if not names:
        raise InvalidInput(f"{archive} holds no images")
    return sorted(names)


def _read_sidecar(sidecar: Path) -> Any:
    """The `.AI.json` already beside the video (the plugin's incremental input), or None. A symlink
    is not followed (it could lead outside the library roots); writing replaces it with a file."""
    if sidecar.is_symlink():
        return None
    try:
        return json.loads(sidecar.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None  # unreadable or not JSON: tag afresh and replace it


def _write_sidecar(sidecar: Path, json_result: str | None, item_started: float) -> str:
    if json_result is None:
        return "unchanged"  # the stored file was already complete and current
    try:
        if not sidecar.is_symlink() and sidecar.stat().st_mtime > item_started:
            return "kept newer file"
    except FileNotFoundError:
        pass
    try:
        replace_text(sidecar, json_result, mode=0o644)
    except OSError as error:
        raise SidecarNotWritten(f"cannot write {sidecar}: {error.strerror or error}") from None
    return "written"


class SidecarNotWritten(StashVisionError):
    """The video was tagged but its `.AI.json` could not be written (read-only library, full disk)."""


def _timestamp(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            raise InvalidInput(
                f"modified_since must be an ISO 8601 time or seconds since 1970, got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise InvalidInput(f"modified_since must be an ISO 8601 time or seconds since 1970, got {value!r}")
    return float(value)


def _fraction(params: Mapping[str, Any], key: str, default: float) -> float:
    value = _required(number(params, key, default, minimum=0.0))
    if value > 1.0:
        raise InvalidInput(f"{key} must lie between 0 and 1, got {value}")
    return value


def _required(value: float | None) -> float:
    if value is None:
        raise InvalidInput("a required number is null")
    return value
