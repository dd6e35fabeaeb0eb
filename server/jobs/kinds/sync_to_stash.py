"""`sync-to-stash`: tagging (and optionally face identification) results written into the user's
Stash the way the AITagger plugin writes them (aitagger-contract.md §1.2, §1.3): `<tag>_AI` tags
under `AI`, `AI_Tagged`, and a marker per time span of a scene — without the plugin's loop.

Each item (`scene:<id>` or `image:<id>`) is answered by the same flows as the plugin's calls with
the plugin's defaults, so a file a `tag-library` job already did is answered from the result store
and only what is missing is computed. Dry run by default: the item's result lists what it would
change. Only additions, and only what is missing, so a second run changes nothing. Every write is
recorded in the item's result (ids included), which is what `undo-sync-to-stash` takes back.

Everything an item needs is computed before its first write; a Stash failure between writes
fails the item (PartlyDone) with `incomplete: true` next to what it did write, which the runner
keeps with the failed item, so the undo still finds it."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stash_vision.server.connections.errors import SourceError
from stash_vision.server.connections.stash_tagging import StashTagging, TaggedItem
from stash_vision.server.errors import InvalidInput
from stash_vision.server.faces.identification import FaceIdentification
from stash_vision.server.faces.matching import Match
from stash_vision.server.faces.results import IdentifyOptions, VideoRequest, VideoResult
from stash_vision.server.image_source import ImageBytes, ImagePath, ImageRef
from stash_vision.server.tagging.image_flow import ImageTagging, TaggingOptions
from stash_vision.server.tagging.video_flow import VideoOptions, VideoOutcome, VideoTagging

from .base import (
    ItemFailed,
    ItemOutcome,
    ItemProblem,
    PartlyDone,
    boolean,
    check_keys,
    current_job_id,
    number,
    string_list,
)
from .stash_sync_plan import (
    AI_TAGGED,
    ItemPlan,
    Wanted,
    WantedPerformer,
    plan_item,
    wanted_for_image,
    wanted_for_scene,
)
from .stash_sync_session import CreatedTag, Sessions, SyncSession, check_stash, connect, stash_failure
from .tag_library import PLUGIN_FRAME_INTERVAL, PLUGIN_IMAGE_THRESHOLD, PLUGIN_VIDEO_THRESHOLD

MEDIA = ("scene", "image")
_KEYS = frozenset(
    {"scene_ids", "image_ids", "media", "only_untagged", "apply", "markers", "performers", "min_confidence"}
)


@dataclass(frozen=True)
class SyncParams:
    scene_ids: tuple[str, ...]
    image_ids: tuple[str, ...]
    media: tuple[str, ...]
    only_untagged: bool
    apply: bool
    markers: bool
    performers: bool
    min_confidence: float


def split_item(item: str) -> tuple[str, str]:
    media, _, item_id = item.partition(":")
    if media not in MEDIA or not item_id:
        raise InvalidInput(f"{item!r} is not a Stash item (scene:<id> or image:<id>)")
    return media, item_id


@dataclass
class Record:
    """One item's changes, as its result: what the undo reads back."""

    media: str
    id: str
    path: str | None
    applied: bool
    tags_created: list[dict[str, Any]]
    tags_added: list[dict[str, Any]]
    markers_created: list[dict[str, Any]]
    performers_added: list[dict[str, Any]]

    def created(self, tags: list[CreatedTag]) -> None:
        self.tags_created += [{"name": t.name, **({"id": t.id} if t.id else {})} for t in tags]

    @property
    def wrote(self) -> bool:
        return self.applied and bool(
            self.tags_created or self.tags_added or self.markers_created or self.performers_added
        )


class SyncToStash:
    name = "sync-to-stash"
    unit = "items"

    def __init__(
        self, images: ImageTagging, videos: VideoTagging, faces: FaceIdentification, settings: Any
    ) -> None:
        self.images = images
        self.videos = videos
        self.faces = faces
        self.settings = settings
        self.sessions = Sessions()

    def parse(self, params: Mapping[str, Any]) -> SyncParams:
        check_keys(params, _KEYS, self.name)
        media = string_list(params, "media") or MEDIA
        unknown = [m for m in media if m not in MEDIA]
        if unknown:
            raise InvalidInput(f"media must name scene or image, got {unknown}")
        parsed = SyncParams(
            scene_ids=_ids(params, "scene_ids"),
            image_ids=_ids(params, "image_ids"),
            media=tuple(media),
            only_untagged=boolean(params, "only_untagged", False),
            apply=boolean(params, "apply", False),
            markers=boolean(params, "markers", True),
            performers=boolean(params, "performers", False),
            min_confidence=float(number(params, "min_confidence", 0.7, minimum=0.0) or 0.0),
        )
        if parsed.min_confidence > 1.0:
            raise InvalidInput(f"min_confidence must lie between 0 and 1, got {parsed.min_confidence}")
        check_stash(self.settings)
        return parsed

    def items(self, params: SyncParams) -> Iterator[str | ItemProblem]:
        """The ids given, else every scene and image of the Stash (without `AI_Tagged` when
        `only_untagged`), listed up front: the filter changes while the job tags. A Stash that
        stops answering while listing becomes a failed `scene:*` / `image:*` item that says so."""
        if params.scene_ids or params.image_ids:
            yield from (f"scene:{i}" for i in params.scene_ids)
            yield from (f"image:{i}" for i in params.image_ids)
            return
        for media in params.media:
            try:
                ids = asyncio.run(self._list(media, params.only_untagged))
            except SourceError as error:
                yield ItemProblem(
                    f"{media}:*", f"cannot list the {media}s of Stash: {error}", "ListingProblem"
                )
                continue
            yield from (f"{media}:{i}" for i in ids)

    async def _list(self, media: str, only_untagged: bool) -> list[str]:
        connection = connect(self.settings)
        writer = StashTagging(connection)
        try:
            tagged = await writer.tag_named(AI_TAGGED) if only_untagged else None
            return [i async for i in writer.ids(media, tagged.id if tagged else None)]
        finally:
            await connection.aclose()

    async def _session(self, params: SyncParams) -> SyncSession:
        async def opener() -> SyncSession:
            session = SyncSession(connect(self.settings), params.apply)
            await session.open(params.performers)
            return session

        try:
            return await self.sessions.get(current_job_id(), opener)
        except SourceError as error:
            raise stash_failure(error) from None

    async def run(self, params: SyncParams, item: str) -> ItemOutcome:
        media, item_id = split_item(item)
        session = await self._session(params)
        try:
            present = await session.writer.item(media, item_id)
        except SourceError as error:
            raise stash_failure(error) from None
        wanted = await (
            self._scene(params, session, present)
            if media == "scene"
            else self._image(params, session, present)
        )
        plan = plan_item(wanted, present, session.tags.known)
        record = Record(media, item_id, present.path, params.apply, [], [], [], [])
        try:
            await self._write(session, present, plan, record)
        except SourceError as error:
            if not record.wrote:
                raise stash_failure(error) from None
            failure = stash_failure(error)
            raise PartlyDone(
                str(failure), type(failure).__name__, {**_result(record, plan), "incomplete": True}
            ) from None
        return ItemOutcome(_result(record, plan))

    async def _write(self, session: SyncSession, present: TaggedItem, plan: ItemPlan, record: Record) -> None:
        ids: dict[str, str | None] = {}
        for name, tag_id in plan.tags:
            if tag_id is None:
                tag_id, made = await session.tags.ensure(name)
                record.created(made)
            ids[name] = tag_id
        tags = [{"name": n, **({"id": i} if i else {})} for n, i in ids.items()]
        performers = [
            {"id": p.id, "name": p.name, "confidence": round(p.confidence, 4)} for p in plan.performers
        ]
        if record.applied:
            tag_ids = [i for i in ids.values() if i]
            await session.writer.change_links(
                present.media, present.id, "ADD", tag_ids, [p.id for p in plan.performers]
            )
        record.tags_added, record.performers_added = tags, performers
        for marker in plan.markers:
            tag_id = ids.get(marker.tag) or session.tags.known.get(marker.tag.lower())
            entry: dict[str, Any] = {
                "tag": marker.tag,
                "seconds": marker.seconds,
                "end_seconds": marker.end_seconds,
            }
            if record.applied and tag_id:
                end = marker.end_seconds if session.marker_ends else None
                entry["id"] = await session.writer.create_marker(
                    present.id, tag_id, marker.tag, marker.seconds, end
                )
            record.markers_created.append(entry)

    async def _scene(self, params: SyncParams, session: SyncSession, scene: TaggedItem) -> Wanted:
        location = session.connection.local(scene.path)
        if scene.path is None or location is None or location.member is not None:
            raise ItemFailed(
                f"scene {scene.id}: its file {scene.path or '(none)'} is not readable here; map Stash's "
                "folder to this machine's with STASH_VISION_PATH_MAPPINGS (videos are not tagged "
                "from Stash's stream)",
                "MediaNotFound",
            )
        options = VideoOptions(
            frame_interval=PLUGIN_FRAME_INTERVAL, threshold=PLUGIN_VIDEO_THRESHOLD, return_confidence=True
        )
        outcome: VideoOutcome | None = None
        async for event in self.videos.tag(scene.path, options):
            if isinstance(event, VideoOutcome):
                outcome = event
        if outcome is None:
            raise InvalidInput(f"scene {scene.id}: tagging ended without a result")
        wanted = wanted_for_scene(outcome.video_tag_info, params.markers)
        if not params.performers:
            return wanted
        result: VideoResult | None = None
        async for found in self.faces.identify_video(
            VideoRequest(path=scene.path, options=IdentifyOptions(top_k=1))
        ):
            if isinstance(found, VideoResult):
                result = found
        best = [p.best for p in result.persons if p.best is not None] if result else []
        return Wanted(wanted.tags, wanted.markers, self._performers(params, session, best))

    async def _image(self, params: SyncParams, session: SyncSession, image: TaggedItem) -> Wanted:
        ref: ImageRef
        if session.connection.local(image.path) is not None and image.path is not None:
            ref = ImagePath(image.path)
        elif image.url:
            try:  # not readable here: Stash's own copy, with the key
                ref = ImageBytes(await session.connection.fetch_bytes(image.url))
            except SourceError as error:
                raise ItemFailed(f"image {image.id}: {error}", "MediaNotFound") from None
        else:
            raise ItemFailed(f"image {image.id} has no file readable here and no URL", "MediaNotFound")
        tagged = await self.images.tag([ref], TaggingOptions(threshold=PLUGIN_IMAGE_THRESHOLD))
        outcome = tagged.results[0]
        if outcome.error:
            raise ItemFailed(f"image {image.id}: {outcome.error}", outcome.error_kind)
        wanted = wanted_for_image({c: [h.name for h in hits] for c, hits in outcome.categories.items()})
        if not params.performers:
            return wanted
        faces, _ = await self.faces.identify_image(ref, IdentifyOptions(top_k=1))
        best = [face.matches[0] for face in faces if face.matches]
        return Wanted(wanted.tags, (), self._performers(params, session, best))

    @staticmethod
    def _performers(
        params: SyncParams, session: SyncSession, matches: list[Match]
    ) -> tuple[WantedPerformer, ...]:
        """Identified performers above `min_confidence` that this Stash knows (by stash-box id)."""
        found: dict[str, WantedPerformer] = {}
        for match in matches:
            local = session.local_performer(match) if match.confidence >= params.min_confidence else None
            if local is not None and (local.id not in found or found[local.id].confidence < match.confidence):
                found[local.id] = WantedPerformer(local.id, local.name, match.confidence)
        return tuple(found.values())


def _result(record: Record, plan: ItemPlan) -> dict[str, Any]:
    return {
        "media": record.media,
        "id": record.id,
        "path": record.path,
        "applied": record.applied,
        "tags_created": record.tags_created,
        "tags_added": record.tags_added,
        "markers_created": record.markers_created,
        "performers_added": record.performers_added,
        "unchanged": plan.unchanged,
    }


def _ids(params: Mapping[str, Any], key: str) -> tuple[str, ...]:
    """Stash ids as strings (JSON numbers are taken too: Stash's ids are numbers in text)."""
    raw = params.get(key, [])
    if not isinstance(raw, list) or not all(
        isinstance(v, str | int) and not isinstance(v, bool) for v in raw
    ):
        raise InvalidInput(f"{key} must be a list of Stash ids, got {raw!r}")
    values = [str(v) for v in raw]
    bad = [v for v in values if not v.strip() or any(c.isspace() for c in v)]
    if bad:
        raise InvalidInput(f"{key} must be Stash ids, got {bad}")
    return tuple(dict.fromkeys(values))
