"""Incremental stash-box builds: fetch only what changed since the parent version.

A stash-box endpoint holds hundreds of thousands of performers; walking every page and
downloading every image on each build costs hours of the endpoint's request budget even when the
embedding cache spares all inference. stash-box sorts performers by UPDATED_AT, so a build that
remembers the newest `updated` it saw (its watermark) asks the next time only for performers
updated after it (`StashBoxConnection.performers_updated_since`).

What each version remembers, per stash-box source, is `sources.json` beside its index files:
the watermark, the settings the faces depend on (endpoint, image size, images per performer,
faces per performer) and every performer the source covered (its record and image keys). Like
lineage.json it is not part of the release layout (not checksummed, not exported): an imported
or older version simply has none, and the next build fetches in full. It is written after the
version folder was sealed and before it is activated; a build that fails writes nothing, so the
next one resumes from the same watermark (nothing fetched by a failed build is lost from view).

The parent is the active version. A later build (unless `full`) sets the source's `since` to the
parent's watermark, and after the walk carries over every performer of the parent's record for
that source that the walk did not meet: its record from sources.json, its faces from the
parent's index — the vectors Voyager stores (bit for bit what the parent serves), quality, yaw and
detection score from performers.db, only those whose image key the source itself offered (a
performer pooled from several sources keeps the others' faces apart). Performers the walk met
are replaced by their fresh state; deleted and merged ones are met too and so drop out.

Why the parent's index and not the embedding cache: the cache is keyed by image bytes, which
would have to be downloaded again — the requests this saves — and it is only a cache (it may be
deleted); the parent version is verified by its checksums before anything is carried over.

Any doubt falls back to a full fetch, with the reason in the job's result: no parent, no
sources.json or no entry for the source, other settings, or a parent that does not load with the
profile's recipe. The watermark compares `updated` with `<=`: a performer updated within the
same instant as the watermark but after the build read it would be missed until its next change.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from stash_vision.atomic import replace_text
from stash_vision.server.connections.stashbox import parse_time
from stash_vision.server.faces.index.errors import FaceIndexError
from stash_vision.server.faces.index.layout import PERFORMERS_DB_FILE
from stash_vision.server.faces.index.records import PerformerRecord
from stash_vision.server.faces.index.store import FaceIndex
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.faces.sources.base import FaceSource
from stash_vision.server.faces.sources.release import ReleaseSource
from stash_vision.server.faces.sources.stashbox import StashBoxSource

from .build import BuildResult, CarriedPerformer, KnownPerformer, PooledFace
from .selection import Candidate

log = logging.getLogger("stash_vision.server.faces")

SOURCES_FILE = "sources.json"
_FORMAT = 1


@dataclass(frozen=True)
class SourceState:
    """What a version remembers of one stash-box source."""

    settings: dict[str, Any]
    watermark: datetime | None
    performers: dict[str, KnownPerformer]


@dataclass(frozen=True)
class _StoredFace:
    row: int
    key: str
    quality: float
    yaw: float
    detection_score: float


def _state_json(state: SourceState) -> dict[str, Any]:
    return {
        "settings": state.settings,
        "watermark": state.watermark.isoformat() if state.watermark else None,
        "performers": {
            uid: {"record": known.record.to_json_entry(), "images": list(known.images)}
            for uid, known in state.performers.items()
        },
    }


def _state_from_json(raw: Mapping[str, Any]) -> SourceState:
    watermark = raw.get("watermark")
    return SourceState(
        settings=dict(raw["settings"]),
        watermark=parse_time(watermark) if isinstance(watermark, str) else None,
        performers={
            uid: KnownPerformer(
                PerformerRecord.from_json_entry(uid, entry["record"]),
                tuple(str(key) for key in entry["images"]),
            )
            for uid, entry in raw["performers"].items()
        },
    )


def read_source_states(folder: Path) -> dict[str, SourceState]:
    """A version's sources.json, by source name; {} when it has none or it does not parse (the
    next build then fetches in full)."""
    try:
        data = json.loads((folder / SOURCES_FILE).read_text(encoding="utf-8"))
        if data.get("format") != _FORMAT:
            return {}
        return {name: _state_from_json(raw) for name, raw in data["sources"].items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:
        log.warning(
            "build: %s is unreadable (%s); the next build fetches in full", folder / SOURCES_FILE, error
        )
        return {}


def write_source_states(folder: Path, states: Mapping[str, SourceState]) -> None:
    """Written beside the sealed version (a temporary file renamed into place)."""
    data = {"format": _FORMAT, "sources": {name: _state_json(state) for name, state in states.items()}}
    replace_text(
        folder / SOURCES_FILE, json.dumps(data, ensure_ascii=False, separators=(",", ":")), mode=0o644
    )


def _stored_faces(folder: Path) -> dict[str, list[_StoredFace]]:
    """performers.db's faces by performer: the row, the image key and the scores."""
    database = (folder / PERFORMERS_DB_FILE).resolve().as_uri() + "?mode=ro"
    with contextlib.closing(sqlite3.connect(database, uri=True)) as connection:
        rows = connection.execute(
            "SELECT p.universal_id, f.row, f.source_endpoint, f.quality_score, f.yaw, f.detection_score "
            "FROM faces f JOIN performers p ON p.id = f.performer_id ORDER BY f.row"
        ).fetchall()
    faces: dict[str, list[_StoredFace]] = {}
    for uid, row, key, quality, yaw, score in rows:
        faces.setdefault(uid, []).append(
            _StoredFace(int(row), str(key or ""), float(quality or 0), float(yaw or 0), float(score or 0))
        )
    return faces


def _faces_of(stored: list[_StoredFace], known: KnownPerformer) -> list[_StoredFace]:
    """The faces that came from this source's images (a pooled performer has others' too)."""
    keys = set(known.images)
    return [face for face in stored if face.key in keys]


def _settings(source: StashBoxSource, max_faces: int) -> dict[str, Any]:
    return {**source.settings(), "max_faces_per_performer": max_faces}


def carry_faces(
    index: FaceIndex,
    known: Mapping[str, KnownPerformer],
    faces: Mapping[str, list[_StoredFace]],
    source: str,
) -> list[CarriedPerformer]:
    """Performers with their stored faces read back from `index` unchanged (vectors as Voyager
    keeps them, scores from performers.db), marked carried. Blocking: run it in a thread."""
    rows = [face.row for stored in faces.values() for face in stored]
    vectors = index.vectors(rows)
    at = {row: i for i, row in enumerate(rows)}
    return [
        CarriedPerformer(
            performer,
            tuple(
                PooledFace(
                    Candidate(f.key, {n: v[at[f.row]] for n, v in vectors.items()}, f.quality),
                    f.yaw,
                    f.detection_score,
                    source,
                    carried=True,
                )
                for f in faces.get(uid, [])
            ),
        )
        for uid, performer in known.items()
    ]


def _release_faces(source: ReleaseSource) -> list[CarriedPerformer]:
    """Every performer of an opened release with all its faces."""
    if source.index is None:
        return []
    stored = _stored_faces(source.index.folder)
    known: dict[str, KnownPerformer] = {}
    for uid, faces in stored.items():
        record = source.index.performer(uid)
        if record is not None:
            known[uid] = KnownPerformer(record, tuple(face.key for face in faces))
    return carry_faces(source.index, known, stored, source.name)


@dataclass
class IncrementalPlan:
    """How each source of one build fetches (`modes`, for the job's result) and what it carries."""

    max_faces: int
    modes: dict[str, str] = field(default_factory=dict)
    parent_states: dict[str, SourceState] = field(default_factory=dict)  # incremental sources only
    parent: FaceIndex | None = None
    parent_faces: dict[str, list[_StoredFace]] = field(default_factory=dict)

    async def carry_over(self, source: FaceSource) -> list[CarriedPerformer]:
        """The parent's performers of `source` that its walk did not meet, with their faces; for
        a release source, every performer of the release (opened by its walk)."""
        if isinstance(source, ReleaseSource):
            return await asyncio.to_thread(_release_faces, source)
        state = self.parent_states.get(source.name)
        if state is None or self.parent is None or not isinstance(source, StashBoxSource):
            return []
        changed = source.changed
        kept = {uid: known for uid, known in state.performers.items() if uid not in changed}
        faces = {uid: _faces_of(self.parent_faces.get(uid, []), known) for uid, known in kept.items()}
        return await asyncio.to_thread(carry_faces, self.parent, kept, faces, source.name)

    def states_after(self, sources: Sequence[FaceSource], result: BuildResult) -> dict[str, SourceState]:
        """What the new version remembers: each stash-box source's newest `updated` (never older
        than the parent's watermark) and every performer it now covers."""
        states: dict[str, SourceState] = {}
        for source in sources:
            if not isinstance(source, StashBoxSource):
                continue
            parent = self.parent_states.get(source.name)
            marks = [m for m in (source.newest, parent.watermark if parent else None) if m is not None]
            states[source.name] = SourceState(
                _settings(source, self.max_faces), max(marks, default=None), result.seen.get(source.name, {})
            )
        return states


def plan_build(
    parent: Path | None, sources: Sequence[FaceSource], profile: FaceProfile, max_faces: int, *, full: bool
) -> IncrementalPlan:
    """Decide, per stash-box source, between a full fetch and one since the parent's watermark,
    and set the sources' `since` accordingly. Blocking (loads the parent): run it in a thread."""
    plan = IncrementalPlan(max_faces)
    box = [s for s in sources if isinstance(s, StashBoxSource)]
    if not box:
        return plan
    states = read_source_states(parent) if parent is not None and not full else {}
    for source in box:
        state = states.get(source.name)
        if full:
            plan.modes[source.name] = "full (requested)"
        elif parent is None:
            plan.modes[source.name] = "full (no parent version)"
        elif state is None or state.watermark is None:
            plan.modes[source.name] = f"full (version {parent.name} has no watermark for it)"
        elif state.settings != _settings(source, max_faces):
            plan.modes[source.name] = f"full (settings differ from version {parent.name})"
        else:
            plan.parent_states[source.name] = state
    if plan.parent_states and parent is not None:
        try:
            plan.parent = FaceIndex.load(
                parent, profile.embedder_names, profile.recipe(), profile=profile.name
            )
            plan.parent_faces = _stored_faces(parent)
        except (FaceIndexError, sqlite3.Error) as error:
            log.warning("build: version %s cannot be carried over (%s): fetching in full", parent.name, error)
            for name in plan.parent_states:
                plan.modes[name] = f"full (version {parent.name} does not load: {type(error).__name__})"
            plan.parent_states.clear()
    for source in box:
        state = plan.parent_states.get(source.name)
        source.since = state.watermark if state is not None else None
        if state is not None and state.watermark is not None:
            plan.modes[source.name] = (
                f"updated since {state.watermark.isoformat()} (version {parent.name if parent else ''})"
            )
    return plan
