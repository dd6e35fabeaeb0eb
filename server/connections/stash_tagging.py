"""Writes on the user's Stash for the `sync-to-stash` job and its undo: tags, scene and image tag and
performer links, scene markers, and the reads that decide what to write.

Every link is written with the bulk updates' `ADD`/`REMOVE` modes (never `SET`), so a write adds or
removes exactly the ids named and leaves whatever else a user put on a scene or image alone: that
is what lets an undo take back only what a sync added."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any

from stash_vision.server.connections.errors import SourceNotFound
from stash_vision.server.connections.stash import StashConnection

_TAG_FIELDS = "id name aliases"
_TAGS = f"""query SyncTags($tag_filter: TagFilterType, $filter: FindFilterType) {{
  findTags(tag_filter: $tag_filter, filter: $filter) {{ count tags {{ {_TAG_FIELDS} }} }} }}"""
_TAG_USAGE = """query SyncTagUsage($id: ID!) { findTag(id: $id) {
  id scene_count image_count scene_marker_count child_count parents { id } } }"""
_SCENE = """query SyncScene($id: ID!) { findScene(id: $id) {
  id files { path } tags { id } performers { id }
  scene_markers { id seconds end_seconds primary_tag { id } } } }"""
_IMAGE = """query SyncImage($id: ID!) { findImage(id: $id) {
  id visual_files { ... on ImageFile { path } } paths { image } tags { id } performers { id } } }"""
_SCENE_IDS = """query SyncSceneIds($scene_filter: SceneFilterType, $filter: FindFilterType) {
  findScenes(scene_filter: $scene_filter, filter: $filter) { count scenes { id } } }"""
_IMAGE_IDS = """query SyncImageIds($image_filter: ImageFilterType, $filter: FindFilterType) {
  findImages(image_filter: $image_filter, filter: $filter) { count images { id } } }"""
_TAG_CREATE = "mutation SyncTagCreate($input: TagCreateInput!) { tagCreate(input: $input) { id name } }"
_TAG_DESTROY = "mutation SyncTagDestroy($input: TagDestroyInput!) { tagDestroy(input: $input) }"
_SCENE_UPDATE = (
    "mutation SyncSceneLinks($input: BulkSceneUpdateInput!) { bulkSceneUpdate(input: $input) { id } }"
)
_IMAGE_UPDATE = (
    "mutation SyncImageLinks($input: BulkImageUpdateInput!) { bulkImageUpdate(input: $input) { id } }"
)
_MARKER_CREATE = """mutation SyncMarkerCreate($input: SceneMarkerCreateInput!) {
  sceneMarkerCreate(input: $input) { id } }"""
_MARKER_DESTROY = "mutation SyncMarkerDestroy($id: ID!) { sceneMarkerDestroy(id: $id) }"

MEDIA_FIELDS = {"scene": ("findScenes", "scenes", _SCENE_IDS), "image": ("findImages", "images", _IMAGE_IDS)}


@dataclass(frozen=True)
class StashTag:
    id: str
    name: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class StashMarker:
    id: str
    primary_tag_id: str
    seconds: float
    end_seconds: float | None


@dataclass(frozen=True)
class TaggedItem:
    """A scene or an image as a sync sees it: its file, and the links it has now."""

    media: str  # "scene" or "image"
    id: str
    path: str | None  # as Stash sees it (zip members as `archive.zip/member`)
    url: str | None  # an image's URL on Stash (for files not readable here)
    tag_ids: frozenset[str]
    performer_ids: frozenset[str]
    markers: tuple[StashMarker, ...] = ()


@dataclass(frozen=True)
class TagUsage:
    """What still refers to a tag: an undo destroys a tag it created only when nothing does."""

    id: str
    uses: int  # scenes + images + markers + child tags
    parent_ids: tuple[str, ...]


class StashTagging:
    def __init__(self, connection: StashConnection) -> None:
        self.connection = connection
        self.client = connection.client

    async def _paged(
        self, query: str, variables: dict[str, Any], field: str, items: str
    ) -> AsyncIterator[dict[str, Any]]:
        page, size = 1, self.connection.page_size
        while True:
            flt = {"page": page, "per_page": size, "sort": "id", "direction": "ASC"}
            result = (await self.client.execute(query, {**variables, "filter": flt}))[field]
            for raw in result[items]:
                yield raw
            if page * size >= result["count"] or not result[items]:
                return
            page += 1

    async def tags(self) -> AsyncIterator[StashTag]:
        async for raw in self._paged(_TAGS, {}, "findTags", "tags"):
            yield StashTag(str(raw["id"]), raw["name"], tuple(raw.get("aliases") or ()))

    async def tag_named(self, name: str) -> StashTag | None:
        """The tag whose name is `name` (Stash compares names without case)."""
        variables = {"tag_filter": {"name": {"value": name, "modifier": "EQUALS"}}}
        async for raw in self._paged(_TAGS, variables, "findTags", "tags"):
            if raw["name"].lower() == name.lower():
                return StashTag(str(raw["id"]), raw["name"], tuple(raw.get("aliases") or ()))
        return None

    async def ids(self, media: str, without_tag: str | None) -> AsyncIterator[str]:
        """Every scene's or image's id, or only those without the tag `without_tag`."""
        field, items, query = MEDIA_FIELDS[media]
        criteria = {"tags": {"value": [without_tag], "modifier": "EXCLUDES"}} if without_tag else {}
        async for raw in self._paged(query, {f"{media}_filter": criteria}, field, items):
            yield str(raw["id"])

    async def item(self, media: str, item_id: str) -> TaggedItem:
        if media == "scene":
            raw = (await self.client.execute(_SCENE, {"id": item_id})).get("findScene")
            files = (raw or {}).get("files") or []
            url = None
        else:
            raw = (await self.client.execute(_IMAGE, {"id": item_id})).get("findImage")
            files = [f for f in (raw or {}).get("visual_files") or [] if f and "path" in f]
            url = ((raw or {}).get("paths") or {}).get("image")
        if raw is None:
            raise SourceNotFound(self.connection.name, f"{self.connection.name} has no {media} {item_id}")
        return TaggedItem(
            media=media,
            id=str(raw["id"]),
            path=files[0]["path"] if files else None,
            url=url,
            tag_ids=frozenset(str(t["id"]) for t in raw.get("tags") or []),
            performer_ids=frozenset(str(p["id"]) for p in raw.get("performers") or []),
            markers=tuple(
                StashMarker(
                    str(m["id"]), str(m["primary_tag"]["id"]), float(m["seconds"]), m.get("end_seconds")
                )
                for m in raw.get("scene_markers") or []
            ),
        )

    async def create_tag(self, name: str, parent_id: str | None) -> StashTag:
        """A new tag as the AITagger plugin makes it: `ignore_auto_tag`, under `parent_id`."""
        tag_input: dict[str, Any] = {"name": name, "ignore_auto_tag": True}
        if parent_id is not None:
            tag_input["parent_ids"] = [parent_id]
        created = (await self.client.execute(_TAG_CREATE, {"input": tag_input}))["tagCreate"]
        return StashTag(str(created["id"]), created["name"])

    async def tag_usage(self, tag_id: str) -> TagUsage | None:
        """None when the tag is gone."""
        raw = (await self.client.execute(_TAG_USAGE, {"id": tag_id})).get("findTag")
        if raw is None:
            return None
        uses = sum(int(raw[k]) for k in ("scene_count", "image_count", "scene_marker_count", "child_count"))
        return TagUsage(str(raw["id"]), uses, tuple(str(p["id"]) for p in raw.get("parents") or []))

    async def destroy_tag(self, tag_id: str) -> None:
        await self.client.execute(_TAG_DESTROY, {"input": {"id": tag_id}})

    async def change_links(
        self, media: str, item_id: str, mode: str, tag_ids: Sequence[str], performer_ids: Sequence[str]
    ) -> None:
        """Adds (`ADD`) or removes (`REMOVE`) exactly these tags and performers, in one mutation."""
        update: dict[str, Any] = {"ids": [item_id]}
        if tag_ids:
            update["tag_ids"] = {"ids": list(tag_ids), "mode": mode}
        if performer_ids:
            update["performer_ids"] = {"ids": list(performer_ids), "mode": mode}
        if len(update) > 1:
            await self.client.execute(_SCENE_UPDATE if media == "scene" else _IMAGE_UPDATE, {"input": update})

    async def create_marker(
        self, scene_id: str, tag_id: str, title: str, seconds: float, end_seconds: float | None
    ) -> str:
        """A marker as the plugin makes it: the tag as primary tag and only tag, titled by its name."""
        marker: dict[str, Any] = {
            "scene_id": scene_id,
            "primary_tag_id": tag_id,
            "tag_ids": [tag_id],
            "seconds": seconds,
            "title": title,
        }
        if end_seconds is not None:
            marker["end_seconds"] = end_seconds
        created = (await self.client.execute(_MARKER_CREATE, {"input": marker}))["sceneMarkerCreate"]
        return str(created["id"])

    async def destroy_marker(self, marker_id: str) -> None:
        await self.client.execute(_MARKER_DESTROY, {"id": marker_id})
