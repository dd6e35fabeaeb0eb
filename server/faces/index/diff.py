"""What changed between two index versions: performers and faces added and removed, per source.

A performer is its universal id (`stashdb.org:<uuid>`, `local:<slug>`); its source is the part
before the first ':' (the stash-box it came from, or `local`). A face is (performer, image it was
enrolled from) from performers.db; an index whose performers.db does not say (a Stash Sense
release) falls back to faces.json, where faces are only counted per performer. Counts are exact;
the id lists are capped so a diff of two 100k-performer releases stays a readable answer.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from .layout import FACES_FILE, PERFORMERS_DB_FILE, PERFORMERS_JSON_FILE
from .loading import read_faces, read_performers

MAX_LISTED_IDS = 1000

FaceKey = tuple[str, str]


@dataclass
class SourceDiff:
    source: str
    performers_added: int = 0
    performers_removed: int = 0
    faces_added: int = 0
    faces_removed: int = 0


@dataclass
class VersionDiff:
    base: str
    other: str
    sources: list[SourceDiff] = field(default_factory=list)
    added_performer_ids: list[str] = field(default_factory=list)
    removed_performer_ids: list[str] = field(default_factory=list)

    @property
    def performers_added(self) -> int:
        return sum(s.performers_added for s in self.sources)

    @property
    def performers_removed(self) -> int:
        return sum(s.performers_removed for s in self.sources)

    @property
    def faces_added(self) -> int:
        return sum(s.faces_added for s in self.sources)

    @property
    def faces_removed(self) -> int:
        return sum(s.faces_removed for s in self.sources)


def performer_source(universal_id: str) -> str:
    return universal_id.split(":", 1)[0] if ":" in universal_id else "local"


def _faces(folder: Path) -> Counter[FaceKey]:
    """Each face as (performer, enrolment image); a multiset, since one image may be enrolled twice."""
    try:
        connection = sqlite3.connect((folder / PERFORMERS_DB_FILE).resolve().as_uri() + "?mode=ro", uri=True)
        try:
            rows = connection.execute(
                "SELECT p.universal_id, COALESCE(f.image_url, f.source_endpoint, '') FROM faces f "
                "JOIN performers p ON p.id = f.performer_id"
            ).fetchall()
        finally:
            connection.close()
        return Counter((str(performer), str(image)) for performer, image in rows)
    except sqlite3.Error:
        # Not stash-vision's schema (no universal_id column): faces.json still says whose each row is.
        return Counter((performer, "") for performer in read_faces(folder / FACES_FILE) if performer)


def diff_folders(base: Path, other: Path) -> VersionDiff:
    """What `other` has that `base` has not (added) and the reverse (removed)."""
    base_performers = set(read_performers(base / PERFORMERS_JSON_FILE))
    other_performers = set(read_performers(other / PERFORMERS_JSON_FILE))
    base_faces, other_faces = _faces(base), _faces(other)
    faces_added, faces_removed = other_faces - base_faces, base_faces - other_faces
    added = sorted(other_performers - base_performers)
    removed = sorted(base_performers - other_performers)

    per: dict[str, SourceDiff] = {}

    def entry(performer: str) -> SourceDiff:
        source = performer_source(performer)
        return per.setdefault(source, SourceDiff(source))

    for performer in added:
        entry(performer).performers_added += 1
    for performer in removed:
        entry(performer).performers_removed += 1
    for (performer, _), count in faces_added.items():
        entry(performer).faces_added += count
    for (performer, _), count in faces_removed.items():
        entry(performer).faces_removed += count
    return VersionDiff(
        base=base.name,
        other=other.name,
        sources=[per[name] for name in sorted(per)],
        added_performer_ids=added[:MAX_LISTED_IDS],
        removed_performer_ids=removed[:MAX_LISTED_IDS],
    )
