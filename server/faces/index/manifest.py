"""manifest.json: a superset of Stash Sense's manifest (see docs/face-recognition-peers.md §1.2).

Stash Sense writes `version`, `created_at`, `performer_count`, `face_count`, `sources`, `models`
(`detector` plus `<embedder>_dim`) and `checksums` (`{"<file>": "sha256:<hex>"}`). stash-vision adds
two blocks:

- `recipe`: the face profile's full preprocessing recipe (opaque JSON object given by the caller:
  detector, alignment, normalisation, flip averaging, model hashes, ...). An index is only valid for
  the recipe it was built with; a Stash Sense release has no recipe block and is refused.
- `voyager`: the HNSW parameters (`space`, `M`, `ef_construction`, `storage`, `embedders`).

Unknown keys are kept, so any real Stash Sense manifest parses.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import IndexCorruptError, IndexNotFoundError
from .layout import CHECKSUM_PREFIX, MANIFEST_FILE, dim_key

_HEX_DIGITS = frozenset("0123456789abcdef")


class VoyagerParams(BaseModel):
    """The `voyager` block: how every face_<embedder>.voy of the index was built."""

    model_config = ConfigDict(extra="allow")

    space: Literal["cosine"] = "cosine"
    M: int = Field(ge=2)
    ef_construction: int = Field(ge=1)
    storage: Literal["float32"] = "float32"
    embedders: list[str] = Field(min_length=1)


class IndexManifest(BaseModel):
    model_config = ConfigDict(extra="allow")

    version: str = Field(min_length=1)
    created_at: str
    performer_count: int = Field(ge=0)
    face_count: int = Field(ge=0)
    sources: list[str] = Field(default_factory=list)
    models: dict[str, Any] = Field(default_factory=dict)
    checksums: dict[str, str] = Field(default_factory=dict)
    # stash-vision's blocks; absent from Stash Sense releases, which must still parse.
    recipe: dict[str, Any] | None = None
    voyager: VoyagerParams | None = None

    @field_validator("checksums")
    @classmethod
    def _sha256_only(cls, value: dict[str, str]) -> dict[str, str]:
        for name, checksum in value.items():
            digest = checksum[len(CHECKSUM_PREFIX) :] if checksum.startswith(CHECKSUM_PREFIX) else ""
            if len(digest) != 64 or not set(digest) <= _HEX_DIGITS:
                raise ValueError(
                    f"checksum of {name!r} is not 'sha256:<64 lower-case hex digits>': {checksum!r}"
                )
            if Path(name).name != name or name in {".", ".."}:
                raise ValueError(f"checksum entry {name!r} is not a plain file name in the index folder")
        return value

    def dim(self, embedder: str) -> int | None:
        """The embedder's vector dimension from `models["<embedder>_dim"]`, or None if not listed."""
        value = self.models.get(dim_key(embedder))
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            return None
        return value

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json", exclude_none=True), indent=2, sort_keys=False) + "\n"


def read_manifest(folder: Path) -> IndexManifest:
    """Parse `folder/manifest.json`; IndexNotFoundError if it is missing, IndexCorruptError if unreadable."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise IndexNotFoundError(
            f"{path} does not exist: {folder} is not a face index, or its build did not finish "
            "(manifest.json is written last). Build one with `stash-vision index build`."
        )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexCorruptError(
            f"{path} is not readable JSON ({exc}); rebuild or re-download the index"
        ) from exc
    if not isinstance(data, dict):
        raise IndexCorruptError(f"{path} must hold a JSON object, found {type(data).__name__}")
    try:
        return IndexManifest.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or '(top level)'}: {error['msg']}"
            for error in exc.errors()
        )
        raise IndexCorruptError(f"{path} is not a valid index manifest: {problems}") from exc
