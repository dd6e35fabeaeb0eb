"""What a `sync-to-stash` item should change on Stash, and the record an undo reads back.

Pure: the wanted state comes from a tagging answer (the AITagger plugin's rules,
aitagger-contract.md §1.2 for images, §1.3 for scenes), the present state from Stash, and the plan
is their difference. Only additions: tags, markers and performers already there are left alone, so
a second sync plans nothing and an undo removes only what a sync added."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from stash_vision.server.connections.stash_tagging import TaggedItem
from stash_vision.server.errors import InvalidInput

AI_PARENT = "AI"  # the plugin's parent of every `<tag>_AI` tag
AI_TAGGED = "AI_Tagged"  # the plugin's mark of a tagged scene or image (not under AI)
_SECONDS_DIGITS = 2  # markers at the same tag and the same hundredth of a second are the same


@dataclass(frozen=True)
class WantedMarker:
    tag: str
    seconds: float
    end_seconds: float | None


@dataclass(frozen=True)
class WantedPerformer:
    id: str  # the local Stash performer
    name: str
    confidence: float


@dataclass(frozen=True)
class Wanted:
    tags: tuple[str, ...]  # tag names, AI_Tagged included
    markers: tuple[WantedMarker, ...] = ()
    performers: tuple[WantedPerformer, ...] = ()


@dataclass
class ItemPlan:
    """`tags` pairs a name with its Stash id, None for a tag that does not exist yet."""

    tags: list[tuple[str, str | None]] = field(default_factory=list)
    markers: list[WantedMarker] = field(default_factory=list)
    performers: list[WantedPerformer] = field(default_factory=list)
    unchanged: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.tags or self.markers or self.performers)


def _names(groups: Iterable[Iterable[Any]]) -> list[str]:
    """Tag names in first-seen order; a `[name, confidence]` pair counts by its name."""
    seen: dict[str, None] = {}
    for group in groups:
        for entry in group:
            name = entry[0] if isinstance(entry, list | tuple) else entry
            seen.setdefault(str(name), None)
    return list(seen)


def wanted_for_image(categories: Mapping[str, Sequence[Any]]) -> Wanted:
    """§1.2: every tag of every category, plus AI_Tagged."""
    return Wanted(tags=(*_names(categories.values()), AI_TAGGED))


def wanted_for_scene(video_tag_info: Mapping[str, Any], markers: bool) -> Wanted:
    """§1.3: the union of `video_tags` plus AI_Tagged; a marker per time span of `tag_timespans`
    (title and primary tag: the tag; `end_seconds` only for a span that ends after it starts)."""
    tags = _names((video_tag_info.get("video_tags") or {}).values())
    wanted: list[WantedMarker] = []
    if markers:
        for per_tag in (video_tag_info.get("tag_timespans") or {}).values():
            for name, spans in per_tag.items():
                for span in spans:
                    start, end = float(span["start"]), span.get("end")
                    ending = float(end) if end is not None and float(end) > start else None
                    wanted.append(WantedMarker(str(name), start, ending))
    return Wanted(tags=(*tags, AI_TAGGED), markers=tuple(wanted))


def plan_item(wanted: Wanted, present: TaggedItem, known: Mapping[str, str]) -> ItemPlan:
    """The difference between what the item should carry and what it carries. `known` maps tag
    names, lower-cased (Stash's names are unique without case), to ids. A marker's tag is added to
    the item too, as the plugin's scene tags always include the tags its markers use."""
    plan = ItemPlan()
    names = list(dict.fromkeys([*wanted.tags, *(m.tag for m in wanted.markers)]))
    kept_tags = 0
    for name in names:
        tag_id = known.get(name.lower())
        if tag_id is not None and tag_id in present.tag_ids:
            kept_tags += 1
        else:
            plan.tags.append((name, tag_id))
    there = {(m.primary_tag_id, round(m.seconds, _SECONDS_DIGITS)) for m in present.markers}
    kept_markers = 0
    for marker in dict.fromkeys(wanted.markers):
        tag_id = known.get(marker.tag.lower())
        if tag_id is not None and (tag_id, round(marker.seconds, _SECONDS_DIGITS)) in there:
            kept_markers += 1
        else:
            plan.markers.append(marker)
    kept_performers = 0
    for performer in {p.id: p for p in wanted.performers}.values():
        if performer.id in present.performer_ids:
            kept_performers += 1
        else:
            plan.performers.append(performer)
    plan.unchanged = {"tags": kept_tags, "markers": kept_markers, "performers": kept_performers}
    return plan


# ------------------------------------------------------------------------------------ undo items
@dataclass(frozen=True)
class UndoItem:
    """What one synced scene or image got, as an undo job's item:
    `scene:12 tags=4,5 markers=9 performers=3 created=5,1` (`created`: tags the sync job made that
    this item used or made, destroyed once nothing refers to them)."""

    media: str
    id: str
    tags: tuple[str, ...] = ()
    markers: tuple[str, ...] = ()
    performers: tuple[str, ...] = ()
    created: tuple[str, ...] = ()

    def encode(self) -> str:
        parts = [f"{self.media}:{self.id}"]
        for key in ("tags", "markers", "performers", "created"):
            values: tuple[str, ...] = getattr(self, key)
            if values:
                parts.append(f"{key}={','.join(values)}")
        return " ".join(parts)


_UNDO_ITEM = re.compile(
    r"^(scene|image):(\S+)((?: (?:tags|markers|performers|created)=[^\s,]+(?:,[^\s,]+)*)*)$"
)


def decode_undo_item(text: str) -> UndoItem:
    match = _UNDO_ITEM.match(text)
    if match is None:
        raise InvalidInput(
            f"{text!r} is not an undo item (scene:<id> tags=… markers=… performers=… created=…)"
        )
    fields: dict[str, tuple[str, ...]] = {}
    for part in match.group(3).split():
        key, values = part.split("=", 1)
        fields[key] = tuple(values.split(","))
    return UndoItem(match.group(1), match.group(2), **fields)


def undo_item(
    result: Mapping[str, Any], created_by_job: Iterable[str], parents: Sequence[str] = ()
) -> UndoItem | None:
    """The undo of one sync item's result, None when it wrote nothing. `created_by_job`: every
    tag id the sync job created, of which the item lists those it touched; `parents`: the created
    parent tags (`AI`), listed after them on every such item, so the last item undone destroys
    them too."""
    if not result.get("applied"):
        return None
    added = tuple(str(t["id"]) for t in result.get("tags_added", []) if t.get("id"))
    made = [str(t["id"]) for t in result.get("tags_created", []) if t.get("id")]
    markers = tuple(str(m["id"]) for m in result.get("markers_created", []) if m.get("id"))
    performers = tuple(str(p["id"]) for p in result.get("performers_added", []) if p.get("id"))
    job_made = set(created_by_job)
    touched = [t for t in added if t in job_made] + made
    if touched:
        touched += list(parents)  # checked after their children
    if not (added or markers or performers or touched):
        return None
    return UndoItem(
        media=str(result["media"]),
        id=str(result["id"]),
        tags=added,
        markers=markers,
        performers=performers,
        created=tuple(dict.fromkeys(touched)),
    )
