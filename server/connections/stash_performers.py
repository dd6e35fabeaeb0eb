"""Performer actions on the user's Stash behind the Stash Sense buttons (stash-plugins-contract.md
A.3.5–A.3.7): search the local performers, create one from a stash-box performer and add it to a
scene ("Add to Stash + Scene"), and add an existing one to a scene, optionally linking its
stash-box id ("Add as…").

Nothing is half-written: every read that can fail (the stash-box and its performer, the scene, the
local performer) happens before the first mutation. Scene performer lists are replaced whole by
Stash's `sceneUpdate`, so the list is read right before it is written. Repeating an action changes
nothing: a performer already on the scene is not added again, stash ids already present are not
added again, and "create" reuses a local performer that already carries the stash-box id instead
of making a duplicate (the original sidecar would create a second one)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stash_vision.server.connections.errors import SourceNotFound
from stash_vision.server.connections.stash import StashConnection, endpoint_domain
from stash_vision.server.connections.stashbox import StashBoxConnection
from stash_vision.server.errors import InvalidInput
from stash_vision.settings import StashBoxEndpoint

SEARCH_LIMIT = 10
_SEARCH = """query SearchPerformers($filter: FindFilterType) { findPerformers(filter: $filter) {
  performers { id name disambiguation alias_list image_path } } }"""
_BY_STASH_ID = """query PerformerByStashId($performer_filter: PerformerFilterType, $filter: FindFilterType) {
  findPerformers(performer_filter: $performer_filter, filter: $filter) { performers { id name } } }"""
_PERFORMER = """query Performer($id: ID!) { findPerformer(id: $id) {
  id name stash_ids { endpoint stash_id updated_at } } }"""
_SCENE_PERFORMERS = "query ScenePerformers($id: ID!) { findScene(id: $id) { id performers { id } } }"
_STASH_BOXES = """query StashBoxes { configuration { general {
  stashBoxes { endpoint api_key name max_requests_per_minute } } } }"""
_CREATE = """mutation CreatePerformer($input: PerformerCreateInput!) {
  performerCreate(input: $input) { id name } }"""
_UPDATE = """mutation LinkStashIds($input: PerformerUpdateInput!) {
  performerUpdate(input: $input) { id } }"""
_SCENE_UPDATE = """mutation SetScenePerformers($input: SceneUpdateInput!) {
  sceneUpdate(input: $input) { id } }"""
_BOX_PERFORMER = """query BoxPerformer($id: ID!) { findPerformer(id: $id) {
  id name disambiguation aliases gender birth_date death_date ethnicity country eye_color hair_color
  height cup_size band_size waist_size hip_size breast_type career_start_year career_end_year
  tattoos { location description } piercings { location description } urls { url } images { url }
  deleted merged_into_id } }"""
_FAKE_TITS = {"NATURAL": "Natural", "FAKE": "Augmented"}
_STASH_GENDERS = {"MALE", "FEMALE", "TRANSGENDER_MALE", "TRANSGENDER_FEMALE", "INTERSEX", "NON_BINARY"}


@dataclass(frozen=True)
class PerformerHit:
    """One answer of a search, in the fields the "Add as…" panel reads."""

    id: str
    name: str
    disambiguation: str | None
    alias_list: list[str]
    image_path: str | None


@dataclass(frozen=True)
class CreatedPerformer:
    id: str
    name: str
    created: bool  # False: a local performer already had the stash-box id and was reused
    added_to_scene: bool


@dataclass(frozen=True)
class LinkedPerformer:
    added_to_scene: bool
    stash_ids_added: list[tuple[str, str]]


def _body_mods(mods: Sequence[dict[str, Any]] | None) -> str | None:
    """`location: description` pairs joined by `; ` (either alone when the other is empty)."""
    parts = []
    for mod in mods or []:
        location, description = mod.get("location") or "", mod.get("description") or ""
        text = f"{location}: {description}" if location and description else location or description
        if text:
            parts.append(text)
    return "; ".join(parts) or None


def _title(value: str | None) -> str | None:
    # stash-box answers enums (CAUCASIAN, LIGHT_BROWN); Stash stores these fields as free text and
    # its own stash-box import writes them title-cased, so a created performer reads the same.
    return value.replace("_", " ").title() if value else None


def performer_input(box: dict[str, Any], endpoint: str) -> dict[str, Any]:
    """Stash's PerformerCreateInput from a stash-box performer (A.3.6's mapping); fields the
    stash-box leaves empty are left out."""
    band, cup = box.get("band_size"), box.get("cup_size")
    waist, hip = box.get("waist_size"), box.get("hip_size")
    measurements = None
    if any((band, cup, waist, hip)):
        parts = [f"{band or ''}{cup or ''}", str(waist or ""), str(hip or "")]
        measurements = "-".join(parts).strip("-") or None
    start, end = box.get("career_start_year"), box.get("career_end_year")
    urls = [u["url"] for u in box.get("urls") or [] if u.get("url")]
    images = [i["url"] for i in box.get("images") or [] if i.get("url")]
    gender = box.get("gender")
    fields: dict[str, Any] = {
        "name": box["name"],
        "disambiguation": box.get("disambiguation"),
        "alias_list": list(box.get("aliases") or []) or None,
        "gender": gender if gender in _STASH_GENDERS else None,
        "birthdate": box.get("birth_date"),
        "death_date": box.get("death_date"),
        "ethnicity": _title(box.get("ethnicity")),
        "country": box.get("country"),
        "eye_color": _title(box.get("eye_color")),
        "hair_color": _title(box.get("hair_color")),
        "height_cm": box.get("height"),
        "measurements": measurements,
        "fake_tits": _FAKE_TITS.get(str(box.get("breast_type") or "").upper()),
        "career_length": (f"{start}-{end or ''}" if start else None),
        "tattoos": _body_mods(box.get("tattoos")),
        "piercings": _body_mods(box.get("piercings")),
        "image": images[0] if images else None,
        # The first URL only, as the original; `urls` is the non-deprecated form of Stash's `url`.
        "urls": urls[:1] or None,
        "stash_ids": [{"endpoint": endpoint, "stash_id": box["id"]}],
    }
    return {key: value for key, value in fields.items() if value is not None}


def _same_id(a: tuple[str, str], b: tuple[str, str]) -> bool:
    """Stash ids name a stash-box by URL; the same box written with or without a trailing slash or
    another scheme is the same box (universal ids are by domain too)."""
    return endpoint_domain(a[0]) == endpoint_domain(b[0]) and a[1] == b[1]


class StashPerformers:
    """The actions, on one Stash and the stash-boxes configured here (STASH_VISION_STASHBOX_ENDPOINTS,
    tried first) or in that Stash."""

    def __init__(self, stash: StashConnection, stashboxes: Sequence[StashBoxEndpoint] = ()) -> None:
        self.stash = stash
        self.stashboxes = list(stashboxes)

    async def search(self, query: str, limit: int = SEARCH_LIMIT) -> list[PerformerHit]:
        flt = {"q": query, "per_page": limit, "sort": "name", "direction": "ASC"}
        data = await self.stash.client.execute(_SEARCH, {"filter": flt})
        return [
            PerformerHit(
                id=str(raw["id"]),
                name=raw.get("name") or "",
                disambiguation=raw.get("disambiguation") or None,
                alias_list=list(raw.get("alias_list") or []),
                image_path=raw.get("image_path") or None,
            )
            for raw in data["findPerformers"]["performers"]
        ]

    async def stash_box(self, endpoint: str) -> StashBoxEndpoint:
        """The stash-box named by a bare domain (`stashdb.org`) or its URL: ours first, then the
        ones configured in Stash. InvalidInput when neither knows it."""
        wanted = endpoint_domain(endpoint.strip())
        if not wanted:
            raise InvalidInput("endpoint is empty: give the stash-box's domain, e.g. stashdb.org")
        for box in self.stashboxes:
            if endpoint_domain(box.endpoint) == wanted:
                return box
        data = await self.stash.client.execute(_STASH_BOXES)
        in_stash = ((data.get("configuration") or {}).get("general") or {}).get("stashBoxes") or []
        for raw in in_stash:
            if endpoint_domain(raw["endpoint"]) == wanted and raw.get("api_key"):
                return StashBoxEndpoint(
                    name=raw.get("name") or wanted,
                    endpoint=raw["endpoint"],
                    api_key=raw["api_key"],
                    max_requests_per_minute=max(1, raw.get("max_requests_per_minute") or 240),
                )
        known = sorted(
            {endpoint_domain(b.endpoint) for b in self.stashboxes}
            | {endpoint_domain(r["endpoint"]) for r in in_stash if r.get("api_key")}
        )
        raise InvalidInput(
            f"Unknown or unconfigured endpoint: {endpoint} (known stash-boxes: {', '.join(known) or 'none'}; "
            "add it with its API key in Stash's Settings > Metadata Providers or in "
            "STASH_VISION_STASHBOX_ENDPOINTS)"
        )

    async def box_performer(self, box: StashBoxEndpoint, performer_id: str) -> dict[str, Any]:
        connection = StashBoxConnection(box)
        try:
            data = await connection.client.execute(_BOX_PERFORMER, {"id": performer_id})
        finally:
            await connection.aclose()
        raw: dict[str, Any] | None = data.get("findPerformer")
        if raw is None:
            raise SourceNotFound(
                box.name, f"Performer not found on StashBox: {box.name} has no performer {performer_id}"
            )
        if raw.get("deleted"):
            merged = raw.get("merged_into_id")
            hint = f"; it was merged into {merged}" if merged else ""
            raise SourceNotFound(box.name, f"performer {performer_id} was deleted on {box.name}{hint}")
        return raw

    async def scene_performer_ids(self, scene_id: str) -> list[str]:
        raw = (await self.stash.client.execute(_SCENE_PERFORMERS, {"id": scene_id})).get("findScene")
        if raw is None:
            raise SourceNotFound(self.stash.name, f"{self.stash.name} has no scene {scene_id}")
        return [str(p["id"]) for p in raw.get("performers") or []]

    async def _add_to_scene(self, scene_id: str, current: list[str], performer_id: str) -> bool:
        if performer_id in current:
            return False
        await self.stash.client.execute(
            _SCENE_UPDATE, {"input": {"id": scene_id, "performer_ids": [*current, performer_id]}}
        )
        return True

    async def _by_stash_id(self, endpoint: str, stash_id: str) -> dict[str, Any] | None:
        criterion = {"endpoint": endpoint, "stash_id": stash_id, "modifier": "EQUALS"}
        data = await self.stash.client.execute(
            _BY_STASH_ID, {"performer_filter": {"stash_id_endpoint": criterion}, "filter": {"per_page": 1}}
        )
        found = data["findPerformers"]["performers"]
        return found[0] if found else None

    async def create_from_stashbox(self, scene_id: str, endpoint: str, stash_id: str) -> CreatedPerformer:
        box = await self.stash_box(endpoint)
        raw = await self.box_performer(box, stash_id)
        current = await self.scene_performer_ids(scene_id)
        existing = await self._by_stash_id(box.endpoint, stash_id)
        if existing is not None:
            performer, created = existing, False
        else:
            data = await self.stash.client.execute(_CREATE, {"input": performer_input(raw, box.endpoint)})
            performer, created = data["performerCreate"], True
        added = await self._add_to_scene(scene_id, current, str(performer["id"]))
        return CreatedPerformer(str(performer["id"]), performer["name"], created, added)

    async def link(
        self,
        scene_id: str,
        performer_id: str,
        stash_ids: Sequence[tuple[str, str]] = (),
        update_metadata: bool = False,
    ) -> LinkedPerformer:
        current = await self.scene_performer_ids(scene_id)
        raw = (await self.stash.client.execute(_PERFORMER, {"id": performer_id})).get("findPerformer")
        if raw is None:
            raise SourceNotFound(self.stash.name, f"{self.stash.name} has no performer {performer_id}")
        added = await self._add_to_scene(scene_id, current, performer_id)
        if not update_metadata:
            return LinkedPerformer(added, [])
        have = [dict(s) for s in raw.get("stash_ids") or []]
        new: list[tuple[str, str]] = []
        for pair in stash_ids:
            if not any(_same_id(pair, (s["endpoint"], s["stash_id"])) for s in have) and pair not in new:
                new.append(pair)
        if new:
            merged = have + [{"endpoint": e, "stash_id": s} for e, s in new]
            await self.stash.client.execute(_UPDATE, {"input": {"id": performer_id, "stash_ids": merged}})
        return LinkedPerformer(added, new)
