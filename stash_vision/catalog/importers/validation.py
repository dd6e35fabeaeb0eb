"""What every import checks first, and the error it raises: model names, category names, the
labels/tags file, and names taken by packaged models."""

from __future__ import annotations

import re
from pathlib import Path

from stash_vision.catalog.entries import Catalog, CatalogError

SKIER233_EXTRA_HINT = "pip install 'stash-vision[skier233]'"


class ModelImportError(ValueError):
    """A model cannot be imported; the message says which file, what is wrong and what to do."""


def triton_name(text: str) -> str:
    """The Triton/catalog model name for a user's model name: lowercase, [a-z0-9_] only."""
    name = re.sub(r"[^a-z0-9_]", "_", text.lower())
    if not name.strip("_"):
        raise ModelImportError(
            f"cannot derive a model name from {text!r}: give a name with letters or digits"
        )
    return name


def valid_category(name: str) -> bool:
    # The category is a CSV file stem on disk and a key of the AITagger JSON.
    return bool(name.strip()) and name not in (".", "..") and not re.search(r"[/\\\x00]", name)


def read_tags(path: Path) -> list[str]:
    """One tag per line, line index = output index. Blank lines inside would shift every later
    index in readers that skip them, so they are refused rather than guessed at."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise ModelImportError(f"cannot read tags file {path}: {error}") from error
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ModelImportError(f"tags file {path} is empty")
    blank = [number for number, line in enumerate(lines, 1) if not line]
    if blank:
        raise ModelImportError(
            f"tags file {path}: line {blank[0]} is empty (one tag per line, in output order)"
        )
    duplicates = sorted({tag for tag in lines if lines.count(tag) > 1})
    if duplicates:
        raise ModelImportError(f"tags file {path}: tags listed twice: {', '.join(duplicates)}")
    return lines


def refuse_packaged_name(name: str) -> None:
    try:
        packaged = Catalog.load().names()
    except CatalogError:  # a broken package is reported by whatever loads it next, not here
        return
    if name in packaged:
        raise ModelImportError(
            f"{name!r} is the name of a model that ships with stash-vision; give the import another name"
        )
