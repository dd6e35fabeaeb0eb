"""The Stash stand-in's performer writes: performerCreate, performerUpdate, sceneUpdate
(performer_ids and tag_ids: Stash has one sceneUpdate, so one resolver serves both concerns),
findPerformer, findPerformers with the `q` filter and `performer_filter.stash_id_endpoint`, and
`configuration { general { stashBoxes } }` (set with `set_stash_boxes`). Every mutation is
appended to `standin.fx.mutations` as (name, its arguments).

Stash's own checks that matter to a client are kept: a performer name (with its disambiguation)
is unique, ids in an update must exist, and anything the stand-in does not implement fails loudly
instead of being ignored."""

from __future__ import annotations

import weakref
from typing import TYPE_CHECKING, Any

from ariadne import MutationType, ObjectType, UnionType

if TYPE_CHECKING:
    from tests.standins.stash import StashStandIn

_SCENE_UPDATE_FIELDS = {"id", "performer_ids", "tag_ids"}
_NOW = "2026-01-01T00:00:00Z"


def _stash_ids(values: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [
        {"endpoint": s["endpoint"], "stash_id": s["stash_id"], "updated_at": s.get("updated_at") or _NOW}
        for s in values or []
    ]


def _matches(performer: dict[str, Any], q: str) -> bool:
    """Stash's `q` for performers: a case-insensitive substring of the name, an alias or the
    disambiguation."""
    words = [performer.get("name") or "", performer.get("disambiguation") or ""]
    words.extend(performer.get("alias_list") or [])
    return any(q.lower() in w.lower() for w in words)


def _sorted(performers: list[dict[str, Any]], flt: dict[str, Any]) -> list[dict[str, Any]]:
    sort = flt.get("sort") or "id"
    if sort == "name":
        key: Any = lambda p: (p["name"].lower(), int(p["id"]))  # noqa: E731
    elif sort == "id":
        key = lambda p: int(p["id"])  # noqa: E731
    else:
        raise ValueError(f"stand-in: performer sort {sort!r} not implemented")
    return sorted(performers, key=key, reverse=flt.get("direction") == "DESC")


def _stash_id_filter(performers: list[dict[str, Any]], crit: dict[str, Any]) -> list[dict[str, Any]]:
    if crit.get("modifier") != "EQUALS":
        raise ValueError(f"stand-in: stash_id_endpoint {crit} not implemented")
    return [
        p
        for p in performers
        if any(
            (crit.get("endpoint") is None or s["endpoint"] == crit["endpoint"])
            and (crit.get("stash_id") is None or s["stash_id"] == crit["stash_id"])
            for s in p["stash_ids"]
        )
    ]


class PerformerWrites:
    def __init__(self, standin: StashStandIn) -> None:
        self.standin = standin
        # Stash's Settings > Metadata Providers: {endpoint, api_key, name, max_requests_per_minute}.
        self.stash_boxes: list[dict[str, Any]] = []

    @property
    def fx(self) -> Any:
        return self.standin.fx

    def find_performers(
        self,
        _: Any,
        __: Any,
        performer_filter: dict[str, Any] | None = None,
        filter: dict[str, Any] | None = None,
        ids: list[str] | None = None,
        **unknown: Any,
    ) -> dict[str, Any]:
        if unknown:
            raise ValueError(f"stand-in: findPerformers {sorted(unknown)} not implemented")
        flt = filter or {}
        performers = list(self.fx.performers.values())
        if ids is not None:
            performers = [p for p in performers if p["id"] in ids]
        if flt.get("q"):
            performers = [p for p in performers if _matches(p, flt["q"])]
        for key, crit in (performer_filter or {}).items():
            if key != "stash_id_endpoint":
                raise ValueError(f"stand-in: performer_filter {key} not implemented")
            performers = _stash_id_filter(performers, crit)
        performers = _sorted(performers, flt)
        per_page, page = flt.get("per_page") or 25, flt.get("page") or 1
        shown = performers if per_page == -1 else performers[(page - 1) * per_page : page * per_page]
        return {"count": len(performers), "performers": shown}

    def _record(self, name: str, args: dict[str, Any]) -> None:
        self.fx.mutations.append((name, args))

    def _check_unique(self, name: str, disambiguation: str | None, own_id: str | None = None) -> None:
        for p in self.fx.performers.values():
            same_name = p["id"] != own_id and p["name"].lower() == name.lower()
            if same_name and (p.get("disambiguation") or "") == (disambiguation or ""):
                raise ValueError(f"performer with name '{name}' already exists")

    def performer_create(self, _: Any, __: Any, input: dict[str, Any]) -> dict[str, Any]:
        self._record("performerCreate", {"input": input})
        self._check_unique(input["name"], input.get("disambiguation"))
        pid = str(max((int(i) for i in self.fx.performers), default=0) + 1)
        performer = {
            **{k: v for k, v in input.items() if k != "stash_ids"},
            "id": pid,
            "alias_list": list(input.get("alias_list") or []),
            "stash_ids": _stash_ids(input.get("stash_ids")),
            "custom_fields": {},
            "_real": None,
        }
        self.fx.performers[pid] = performer
        return performer

    def performer_update(self, _: Any, __: Any, input: dict[str, Any]) -> dict[str, Any]:
        self._record("performerUpdate", {"input": input})
        performer = self.fx.performers.get(str(input["id"]))
        if performer is None:
            raise ValueError(f"performer {input['id']} not found")
        if "name" in input or "disambiguation" in input:
            name = input.get("name", performer["name"])
            self._check_unique(
                name, input.get("disambiguation", performer.get("disambiguation")), performer["id"]
            )
        for key, value in input.items():
            if key == "stash_ids":
                performer["stash_ids"] = _stash_ids(value)
            elif key != "id":
                performer[key] = value
        return performer

    def scene_update(self, _: Any, __: Any, input: dict[str, Any]) -> dict[str, Any]:
        self._record("sceneUpdate", {"input": input})
        unknown = set(input) - _SCENE_UPDATE_FIELDS
        if unknown:
            raise ValueError(f"stand-in: sceneUpdate {sorted(unknown)} not implemented")
        scene = self.fx.scenes.get(str(input["id"]))
        if scene is None:
            raise ValueError(f"scene {input['id']} not found")
        if "performer_ids" in input:
            missing = [p for p in input["performer_ids"] if str(p) not in self.fx.performers]
            if missing:
                raise ValueError(f"performers {missing} not found")
            scene["_performers"] = list(dict.fromkeys(str(p) for p in input["performer_ids"]))
        if "tag_ids" in input:
            missing = [t for t in input["tag_ids"] if str(t) not in self.fx.tags]
            if missing:
                raise ValueError(f"tags {missing} not found")
            scene["_tags"] = list(dict.fromkeys(str(t) for t in input["tag_ids"]))
        return dict(scene)

    def configuration(self, *_: Any) -> dict[str, Any]:
        return {"general": {"stashBoxes": list(self.stash_boxes)}}


_WRITES: weakref.WeakKeyDictionary[StashStandIn, PerformerWrites] = weakref.WeakKeyDictionary()


def set_stash_boxes(standin: StashStandIn, boxes: list[dict[str, Any]]) -> None:
    """The stash-boxes the stand-in's `configuration` reports (as Stash's Metadata Providers)."""
    _WRITES[standin].stash_boxes = [{"max_requests_per_minute": 240, **box} for box in boxes]


def bind(
    standin: StashStandIn, query: ObjectType, mutation: MutationType, types: dict[str, ObjectType]
) -> list[ObjectType | UnionType]:
    """Sets this module's resolvers on `query`/`mutation`/`types`; returns extra bindables."""
    del types
    writes = _WRITES[standin] = PerformerWrites(standin)
    query.set_field("findPerformer", lambda _, __, id: standin.fx.performers.get(str(id)))
    query.set_field("findPerformers", writes.find_performers)
    query.set_field("configuration", writes.configuration)
    mutation.set_field("performerCreate", writes.performer_create)
    mutation.set_field("performerUpdate", writes.performer_update)
    mutation.set_field("sceneUpdate", writes.scene_update)
    return []
