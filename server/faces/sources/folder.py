"""A folder of performers: FOLDER/<performer>/<images>, with an optional `performer.json` (or
`.yaml`) in a performer's folder giving {name, aliases, country, image_url, stash_ids: [{endpoint,
stash_id}]}; the folder name is the name otherwise. The universal id is the first stash-box id as
`<domain>:<stash_id>` (the endpoint may be a domain, `stashdb.org`, or the GraphQL URL Stash
stores, `https://stashdb.org/graphql`: both pool with the same performer from Stash or
stash-box), else `local:<slug of the folder name>`."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from stash_vision.server.connections.stash import endpoint_domain
from stash_vision.server.faces.index.records import PerformerRecord

from .base import SourceError, SourceImage, SourcePerformer

log = logging.getLogger("stash_vision.faces.sources")
# Whether a resolved path may be read (MediaPaths.within_roots for a job); None: any path.
Allowed = Callable[[Path], bool] | None
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff", ".gif"})
METADATA_FILES = ("performer.json", "performer.yaml", "performer.yml")


@dataclass(frozen=True)
class PerformerFolder:
    record: PerformerRecord
    images: list[Path]


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "performer"


def _metadata(folder: Path) -> dict[str, Any]:
    for name in METADATA_FILES:
        path = folder / name
        if path.is_file():
            try:
                text = path.read_text()
                loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
            except (OSError, ValueError, yaml.YAMLError) as error:
                raise SourceError(f"{path} is not valid {path.suffix[1:].upper()}: {error}") from error
            if not isinstance(loaded, dict):
                raise SourceError(f"{path} must hold an object with name, aliases, stash_ids")
            return loaded
    return {}


def _readable(path: Path, allowed: Allowed) -> bool:
    """Not a symlink (file or folder) that leads outside the library roots."""
    if allowed is None or allowed(path.resolve()):
        return True
    log.warning("face source: %s links to %s, outside the library roots; skipped", path, path.resolve())
    return False


def read_performer(folder: Path, allowed: Allowed = None) -> PerformerFolder:
    metadata = _metadata(folder)
    stash_ids = tuple(
        (str(item["endpoint"]), str(item["stash_id"]))
        for item in metadata.get("stash_ids") or []
        if isinstance(item, dict) and item.get("endpoint") and item.get("stash_id")
    )
    universal = (
        f"{endpoint_domain(stash_ids[0][0])}:{stash_ids[0][1]}"
        if stash_ids
        else f"local:{_slug(folder.name)}"
    )
    record = PerformerRecord(
        id=universal,
        name=str(metadata.get("name") or folder.name),
        aliases=tuple(str(a) for a in metadata.get("aliases") or []),
        stash_ids=stash_ids,
        country=str(metadata.get("country") or ""),
        image_url=str(metadata.get("image_url") or ""),
        face_count=0,
    )
    images = sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and _readable(p, allowed)
    )
    return PerformerFolder(record, images)


def scan(root: Path, allowed: Allowed = None) -> list[PerformerFolder]:
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder; expected FOLDER/<performer>/<images>")
    performers = [
        read_performer(folder, allowed)
        for folder in sorted(root.iterdir())
        if folder.is_dir() and _readable(folder, allowed)
    ]
    performers = [p for p in performers if p.images]
    if not performers:
        raise SourceError(
            f"no performer folders with images under {root} (expected FOLDER/<performer>/<images>)"
        )
    ids = Counter(p.record.id for p in performers)
    duplicates = [pid for pid, n in ids.items() if n > 1]
    if duplicates:
        raise SourceError(f"several folders map to the same performer id: {', '.join(duplicates)}")
    return performers


def _reader(path: Path) -> SourceImage:
    async def read() -> bytes:
        try:
            return await asyncio.to_thread(path.read_bytes)
        except OSError as error:
            raise SourceError(f"cannot read {path}: {error.strerror or error}") from None

    return SourceImage(str(path), read)


class FolderSource:
    kind = "folder"

    def __init__(self, root: Path, allowed: Allowed = None) -> None:
        self.root = root
        self.allowed = allowed
        self.name = f"folder:{root}"

    async def performers(self) -> AsyncIterator[SourcePerformer]:
        for performer in await asyncio.to_thread(scan, self.root, self.allowed):
            yield SourcePerformer(performer.record, [_reader(path) for path in performer.images])

    async def aclose(self) -> None:
        pass
