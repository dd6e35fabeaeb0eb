"""Performer metadata as stored in performers.json (and mirrored in performers.db)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class PerformerRecord:
    """One identity. `id` is a universal id: `<stash-box domain>:<uuid>` (`stashdb.org:50459d16-...`,
    as in Stash Sense's faces.json) or `local:<slug>` for performers known to no stash-box."""

    id: str
    name: str
    aliases: tuple[str, ...] = ()
    # (endpoint, stash_id) pairs: every stash-box that knows this performer.
    stash_ids: tuple[tuple[str, str], ...] = ()
    country: str | None = None
    image_url: str | None = None
    face_count: int = 0

    def to_json_entry(self) -> dict[str, Any]:
        """The value stored under this performer's id in performers.json."""
        return {
            "name": self.name,
            "country": self.country,
            "image_url": self.image_url,
            "face_count": self.face_count,
            "aliases": list(self.aliases),
            "stash_ids": [
                {"endpoint": endpoint, "stash_id": stash_id} for endpoint, stash_id in self.stash_ids
            ],
        }

    @classmethod
    def from_json_entry(cls, universal_id: str, entry: Mapping[str, Any]) -> PerformerRecord:
        """Parse a performers.json value; raises ValueError (with the offending field) if malformed.

        `aliases` and `stash_ids` are stash-vision additions; Stash Sense entries lack them."""
        name = entry.get("name")
        if not isinstance(name, str):
            raise ValueError("'name' must be a string")
        country = entry.get("country")
        image_url = entry.get("image_url")
        if country is not None and not isinstance(country, str):
            raise ValueError("'country' must be a string or null")
        if image_url is not None and not isinstance(image_url, str):
            raise ValueError("'image_url' must be a string or null")
        face_count = entry.get("face_count", 0)
        if isinstance(face_count, bool) or not isinstance(face_count, int) or face_count < 0:
            raise ValueError("'face_count' must be a non-negative integer")
        aliases = entry.get("aliases") or []
        if not isinstance(aliases, list) or not all(isinstance(alias, str) for alias in aliases):
            raise ValueError("'aliases' must be a list of strings")
        raw_ids = entry.get("stash_ids") or []
        if not isinstance(raw_ids, list):
            raise ValueError("'stash_ids' must be a list of {endpoint, stash_id} objects")
        stash_ids: list[tuple[str, str]] = []
        for item in raw_ids:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("endpoint"), str)
                and isinstance(item.get("stash_id"), str)
            ):
                raise ValueError("'stash_ids' must be a list of {endpoint, stash_id} objects")
            stash_ids.append((item["endpoint"], item["stash_id"]))
        return cls(
            id=universal_id,
            name=name,
            aliases=tuple(aliases),
            stash_ids=tuple(stash_ids),
            country=country,
            image_url=image_url,
            face_count=face_count,
        )


def check_universal_id(universal_id: str) -> str:
    """`<namespace>:<id>` with both parts non-empty (`stashdb.org:<uuid>`, `local:<slug>`)."""
    namespace, sep, rest = universal_id.partition(":") if isinstance(universal_id, str) else ("", "", "")
    if not sep or not namespace or not rest or universal_id != universal_id.strip():
        raise ValueError(
            f"performer id {universal_id!r} is not a universal id: expected '<stash-box domain>:<id>' "
            "(e.g. 'stashdb.org:<uuid>') or 'local:<slug>'"
        )
    return universal_id
