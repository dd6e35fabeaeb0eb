"""On-disk layout of a face index folder (Stash Sense's layout, see docs/face-recognition-peers.md §1.2).

    face_<embedder>.voy   one Voyager index per embedder; row i is the same face in every one
    faces.json            JSON array: row i -> performer universal id, or null for a gap
    performers.json       {universal_id: {"name", "country", "image_url", "face_count", ...}}
    performers.db         SQLite: performers, stashbox_ids, faces, aliases
    manifest.json         version, counts, models, sha256 checksums, recipe and Voyager parameters

manifest.json is written last: a folder without one is not an index (or a build that did not finish).
"""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

MANIFEST_FILE = "manifest.json"
FACES_FILE = "faces.json"
PERFORMERS_JSON_FILE = "performers.json"
PERFORMERS_DB_FILE = "performers.db"
CURRENT_LINK = "current"
CHECKSUM_PREFIX = "sha256:"

# Embedder names end up in file names and SQLite column names: keep them to a safe alphabet.
_EMBEDDER_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
_HASH_CHUNK = 1 << 20


def check_embedder_name(name: str) -> str:
    if not isinstance(name, str) or not _EMBEDDER_NAME.fullmatch(name):
        raise ValueError(
            f"embedder name {name!r} is not usable in an index: use 1-32 characters of a-z, 0-9 and _, "
            "starting with a letter (it becomes part of a file name)"
        )
    return name


def voyager_file(embedder: str) -> str:
    return f"face_{check_embedder_name(embedder)}.voy"


def dim_key(embedder: str) -> str:
    """The manifest's `models` key holding an embedder's dimension, as in Stash Sense (`facenet_dim`)."""
    return f"{embedder}_dim"


def sha256_file(path: Path) -> str:
    """`sha256:<hex>` of a file, read in 1 MiB chunks (index files are hundreds of MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(_HASH_CHUNK):
            digest.update(chunk)
    return CHECKSUM_PREFIX + digest.hexdigest()
