"""Replacing a small text file so that a reader sees the old content or the new, never half: the
text goes to a temporary file beside it (same filesystem), which is renamed over it. Used for
`.AI.json` sidecars, catalog entries and the small JSON files beside an index version."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def replace_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Writes `text` to `path` atomically; `mode` sets the file's permissions (default: the
    temporary file's, 0600). OSError when the folder cannot be written (full disk, read-only)."""
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if mode is not None:
            os.chmod(temporary, mode)
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
