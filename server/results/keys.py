"""Result-store keys: which file (path, size, mtime) and what produced the answer.

A key is the SHA-256 of one canonical JSON text (sorted keys, no spaces, ASCII only), so it is the
same in every process and release that builds it from the same facts. Size and mtime stand in for
the content: hashing a video to look its answer up would cost more than many answers. A file
edited in place gets a new mtime and so a new key; the stale entry ages out of the store by LRU.
The producer mapping names everything that changes the answer (model names and versions, the
face profile's recipe, thresholds, frame interval…); it must be JSON-representable."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import MediaNotFound


@dataclass(frozen=True)
class FileKey:
    path: str  # resolved (symlinks followed), so two routes to one file share answers
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> FileKey:
        """The key of the file `path` points to now. MediaNotFound if it cannot be stat'ed."""
        try:
            resolved = path.resolve()
            info = resolved.stat()
        except FileNotFoundError:
            raise MediaNotFound(f"{path} does not exist (as the server sees it)") from None
        except OSError as exc:
            raise MediaNotFound(f"{path} cannot be read: {exc.strerror or exc}") from None
        return cls(str(resolved), info.st_size, info.st_mtime_ns)


def result_key(kind: str, file: FileKey, producer: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of (kind, file, producer)."""
    canonical = json.dumps(
        {"kind": kind, "file": asdict(file), "producer": dict(producer)},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,  # lone surrogates (undecodable file names) become \udcxx, not an error
        allow_nan=False,
    )
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()
