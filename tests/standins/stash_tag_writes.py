"""The Stash stand-in's tagging writes: tags (findTags, findTag, tagCreate, tagDestroy), scene and
image links (bulkSceneUpdate, bulkImageUpdate with ADD/REMOVE/SET), scene markers
(sceneMarkerCreate, sceneMarkerDestroy), and the reads that go with them (Scene.tags,
Scene.scene_markers, Image.tags, a `tags` criterion and `ids` on findScenes/findImages). Every
mutation is appended to `standin.fx.mutations`.

Fixture shapes: `fx.tags[id] = {id, name, aliases, ignore_auto_tag, _parents}`,
`fx.markers[id] = {id, _scene, title, seconds, end_seconds, _primary, _tags}`; scenes and images
carry their tag ids in `_tags` (absent: none). Like Stash, tag names are unique without case
(aliases included), and a destroyed tag leaves every scene, image and marker it was on."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ariadne import MutationType, ObjectType, UnionType
from graphql import GraphQLError

if TYPE_CHECKING:
    from tests.standins.stash import Fixtures, StashStandIn

NOW = "2025-01-01T00:00:00Z"


def visible_state(fx: Fixtures) -> dict[str, Any]:
    """A copy of what a Stash user sees of tagging: the tags, the markers, and every scene's and
    image's tags and performers (what an undo must bring back)."""
    links = {
        f"{kind}:{i}": (sorted(o.get("_tags", [])), sorted(o["_performers"]))
        for kind, objects in (("scene", fx.scenes), ("image", fx.images))
        for i, o in objects.items()
    }
    return copy.deepcopy({"tags": fx.tags, "markers": fx.markers, "links": links})


def _page(items: list[Any], flt: dict[str, Any] | None) -> list[Any]:
    per_page = (flt or {}).get("per_page") or 25
    page = (flt or {}).get("page") or 1
    return items if per_page == -1 else items[(page - 1) * per_page : page * per_page]


def _next_id(objects: dict[str, Any]) -> str:
    return str(max((int(i) for i in objects), default=0) + 1)


def _apply(current: list[str], change: dict[str, Any] | None) -> list[str]:
    """A BulkUpdateIds on a list of ids."""
    if change is None:
        return current
    ids = [str(i) for i in change.get("ids") or []]
    if change["mode"] == "SET":
        return list(dict.fromkeys(ids))
    if change["mode"] == "ADD":
        return list(dict.fromkeys([*current, *ids]))
    return [i for i in current if i not in ids]


class TagWrites:
    def __init__(self, standin: StashStandIn) -> None:
        self.fx = standin.fx
        # Markers created before sceneMarkerCreate answers a GraphQL error (None: never): a Stash
        # failing in the middle of an item's writes.
        self.markers_before_failure: int | None = None

    def record(self, name: str, args: dict[str, Any]) -> None:
        self.fx.mutations.append((name, args))

    # ----------------------------------------------------------------------------- reads
    def find_tags(
        self,
        _: Any,
        __: Any,
        tag_filter: dict[str, Any] | None = None,
        filter: dict[str, Any] | None = None,
        ids: list[str] | None = None,
    ) -> dict[str, Any]:
        tags = sorted(self.fx.tags.values(), key=lambda t: int(t["id"]))
        if ids is not None:
            tags = [t for t in tags if t["id"] in ids]
        for key, crit in (tag_filter or {}).items():
            if key == "name" and crit["modifier"] == "EQUALS":
                tags = [t for t in tags if t["name"].lower() == crit["value"].lower()]
            else:
                raise ValueError(f"stand-in: tag_filter {key} {crit} not implemented")
        return {"count": len(tags), "tags": _page(tags, filter)}

    def usage(self, tag: dict[str, Any], field: str) -> int:
        tid = tag["id"]
        if field == "scene_count":
            return sum(tid in s.get("_tags", []) for s in self.fx.scenes.values())
        if field == "image_count":
            return sum(tid in i.get("_tags", []) for i in self.fx.images.values())
        if field == "scene_marker_count":
            return sum(tid == m["_primary"] or tid in m["_tags"] for m in self.fx.markers.values())
        return sum(tid in t["_parents"] for t in self.fx.tags.values())  # child_count

    def filtered(self, base: Callable[..., Any], items: str) -> Callable[..., Any]:
        """findScenes/findImages with `ids` and a `tags` criterion, the rest left to `base`."""

        def find(
            obj: Any, info: Any, filter: dict[str, Any] | None = None, ids: list[str] | None = None, **kw: Any
        ) -> Any:
            key = "scene_filter" if items == "scenes" else "image_filter"
            criteria = dict(kw.pop(key, None) or {})
            tags = criteria.pop("tags", None)
            result = base(obj, info, filter={"per_page": -1}, **{key: criteria or None}, **kw)
            found = [o for o in result[items] if ids is None or o["id"] in ids]
            if tags is not None:
                wanted = set(tags.get("value") or [])
                if tags["modifier"] not in ("INCLUDES", "EXCLUDES"):
                    raise ValueError(f"stand-in: tags {tags} not implemented")
                keep = tags["modifier"] == "INCLUDES"
                found = [o for o in found if bool(wanted & set(o.get("_tags", []))) == keep]
            return {**result, "count": len(found), items: _page(found, filter)}

        return find

    # ----------------------------------------------------------------------------- mutations
    def tag_create(self, _: Any, __: Any, input: dict[str, Any]) -> dict[str, Any]:
        self.record("tagCreate", {"input": input})
        name = input["name"]
        for tag in self.fx.tags.values():
            if name.lower() in (n.lower() for n in (tag["name"], *tag["aliases"])):
                raise GraphQLError(f"tag with name '{name}' already exists")
        tag = {
            "id": _next_id(self.fx.tags),
            "name": name,
            "aliases": list(input.get("aliases") or []),
            "ignore_auto_tag": bool(input.get("ignore_auto_tag")),
            "_parents": [str(p) for p in input.get("parent_ids") or []],
        }
        self.fx.tags[tag["id"]] = tag
        return tag

    def tag_destroy(self, _: Any, __: Any, input: dict[str, Any]) -> bool:
        self.record("tagDestroy", {"input": input})
        tid = str(input["id"])
        if self.fx.tags.pop(tid, None) is None:
            raise GraphQLError(f"tag with id {tid} not found")
        for holder in (*self.fx.scenes.values(), *self.fx.images.values()):
            if tid in holder.get("_tags", []):
                holder["_tags"] = [t for t in holder["_tags"] if t != tid]
        for tag in self.fx.tags.values():
            tag["_parents"] = [p for p in tag["_parents"] if p != tid]
        for marker_id in [m for m, marker in self.fx.markers.items() if marker["_primary"] == tid]:
            del self.fx.markers[marker_id]
        return True

    def bulk_update(self, name: str, objects: str) -> Callable[..., list[dict[str, Any]]]:
        def update(_: Any, __: Any, input: dict[str, Any]) -> list[dict[str, Any]]:
            self.record(name, {"input": input})
            store = getattr(self.fx, objects)
            targets = [store[str(i)] for i in input.get("ids") or [] if str(i) in store]
            for target in targets:
                for tid in (input.get("tag_ids") or {}).get("ids") or []:
                    if str(tid) not in self.fx.tags:
                        raise GraphQLError(f"tag {tid} not found")
                target["_tags"] = _apply(target.get("_tags", []), input.get("tag_ids"))
                target["_performers"] = _apply(target["_performers"], input.get("performer_ids"))
            return targets

        return update

    def marker_create(self, _: Any, __: Any, input: dict[str, Any]) -> dict[str, Any]:
        self.record("sceneMarkerCreate", {"input": input})
        if self.markers_before_failure is not None:
            if self.markers_before_failure <= 0:
                raise GraphQLError("database is locked")
            self.markers_before_failure -= 1
        if str(input["scene_id"]) not in self.fx.scenes:
            raise GraphQLError(f"scene {input['scene_id']} not found")
        tags = [str(input["primary_tag_id"]), *(str(t) for t in input.get("tag_ids") or [])]
        if any(t not in self.fx.tags for t in tags):
            raise GraphQLError(f"a tag of {tags} not found")
        marker = {
            "id": _next_id(self.fx.markers),
            "_scene": str(input["scene_id"]),
            "title": input["title"],
            "seconds": float(input["seconds"]),
            "end_seconds": input.get("end_seconds"),
            "_primary": str(input["primary_tag_id"]),
            "_tags": [str(t) for t in input.get("tag_ids") or []],
            "created_at": NOW,
            "updated_at": NOW,
        }
        self.fx.markers[marker["id"]] = marker
        return marker

    def marker_destroy(self, _: Any, __: Any, id: str) -> bool:
        self.record("sceneMarkerDestroy", {"id": id})
        if self.fx.markers.pop(str(id), None) is None:
            raise GraphQLError(f"scene marker {id} not found")
        return True


def bind(
    standin: StashStandIn, query: ObjectType, mutation: MutationType, types: dict[str, ObjectType]
) -> list[ObjectType | UnionType]:
    """Sets this module's resolvers on `query`/`mutation`/`types`; returns extra bindables."""
    writes = TagWrites(standin)
    standin.tag_writes = writes  # type: ignore[attr-defined]  # the tests' handle on the failure knob
    fx = standin.fx
    query.set_field("findTags", writes.find_tags)
    query.set_field("findTag", lambda _, __, id: fx.tags.get(str(id)))
    for field, items in (("findScenes", "scenes"), ("findImages", "images")):
        query.set_field(field, writes.filtered(query._resolvers[field], items))
    for name in ("Scene", "Image"):
        types[name].set_field("tags", lambda obj, _: [fx.tags[t] for t in obj.get("_tags", [])])
    types["Scene"].set_field(
        "scene_markers", lambda obj, _: [m for m in fx.markers.values() if m["_scene"] == obj["id"]]
    )
    mutation.set_field("tagCreate", writes.tag_create)
    mutation.set_field("tagDestroy", writes.tag_destroy)
    mutation.set_field("bulkSceneUpdate", writes.bulk_update("bulkSceneUpdate", "scenes"))
    mutation.set_field("bulkImageUpdate", writes.bulk_update("bulkImageUpdate", "images"))
    mutation.set_field("sceneMarkerCreate", writes.marker_create)
    mutation.set_field("sceneMarkerDestroy", writes.marker_destroy)
    tag, marker = ObjectType("Tag"), ObjectType("SceneMarker")
    for count in ("scene_count", "image_count", "scene_marker_count", "child_count"):
        tag.set_field(count, lambda obj, _, depth=None, count=count: writes.usage(obj, count))
    tag.set_field("parents", lambda obj, _: [fx.tags[p] for p in obj["_parents"] if p in fx.tags])
    tag.set_field("children", lambda obj, _: [t for t in fx.tags.values() if obj["id"] in t["_parents"]])
    marker.set_field("scene", lambda obj, _: fx.scenes[obj["_scene"]])
    marker.set_field("primary_tag", lambda obj, _: fx.tags[obj["_primary"]])
    marker.set_field("tags", lambda obj, _: [fx.tags[t] for t in obj["_tags"] if t in fx.tags])
    return [tag, marker]
