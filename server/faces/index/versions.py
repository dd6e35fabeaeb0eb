"""Index versions of one profile: list, activate, roll back, delete, keep the last N.

Layout of a profile folder (`<face_indexes_dir>/<profile>/`):

    <version>/        one finished index (manifest.json written last), named by its version
    current  -> ...   the active version (what the server answers with)
    previous -> ...   the version that was active before it (what `rollback` returns to)

Both links are swapped with `os.replace`, so a reader sees the old or the new version, never none.
Each version folder may hold `lineage.json` ({parent, build_job, origin, imported_from}) beside the
index files: it is not part of the release layout (not in the manifest's checksums, not exported),
so it can be written after the folder was sealed.

These are file operations only; loading and checking a version before it serves is the job of
`IndexHolder.activate` (server/faces/index_holder.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stash_vision.atomic import replace_text

from .errors import FaceIndexError, IndexCorruptError, IndexNotFoundError
from .layout import CURRENT_LINK, MANIFEST_FILE
from .manifest import IndexManifest, read_manifest
from .writer import publish

PREVIOUS_LINK = "previous"
LINEAGE_FILE = "lineage.json"
# A version becomes a folder name and a link target: no separators, no leading dot.
_VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,63}")


class VersionNotFoundError(IndexNotFoundError):
    """No version of that name in the profile folder."""


class VersionConflictError(FaceIndexError):
    """The operation is not allowed on that version now (deleting the active one, no previous
    version to roll back to, a version that already exists)."""


@dataclass(frozen=True, slots=True)
class Lineage:
    """Where a version came from: the version active when it was published, the job that built
    it (empty for a CLI build), and whether it was built or imported."""

    parent: str = ""
    build_job: str = ""
    origin: str = ""
    imported_from: str = ""

    def to_json(self) -> str:
        return json.dumps(
            {
                "parent": self.parent,
                "build_job": self.build_job,
                "origin": self.origin,
                "imported_from": self.imported_from,
            },
            indent=2,
        )


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: str
    folder: Path
    manifest: IndexManifest
    size_bytes: int
    lineage: Lineage
    active: bool = False
    previous: bool = False
    recipe: dict[str, Any] = field(default_factory=dict)


def check_version_name(version: str) -> str:
    """The version string if it can be a folder name, else VersionNotFoundError (no version of a
    name that cannot exist; this also keeps `../x` from reaching the file system)."""
    if not isinstance(version, str) or not _VERSION_NAME.fullmatch(version):
        raise VersionNotFoundError(
            f"{version!r} is not a version name (letters, digits, '.', '_', '+', '-'; at most 64, "
            "not starting with a dot); `stash-vision index list` shows the versions"
        )
    return version


def _link_target(root: Path, name: str) -> str | None:
    link = root / name
    if not link.is_symlink() or not link.exists():
        return None
    target = link.resolve()
    return target.name if target.parent == root.resolve() else None


def active_version(root: Path) -> str | None:
    """The version `current` points at, or None (no link, a dangling one, or one outside `root`)."""
    return _link_target(Path(root), CURRENT_LINK)


def previous_version(root: Path) -> str | None:
    return _link_target(Path(root), PREVIOUS_LINK)


def version_folder(root: Path, version: str) -> Path:
    """The folder of a finished version, or VersionNotFoundError naming the versions there are."""
    folder = Path(root) / check_version_name(version)
    if folder.is_symlink() or not (folder / MANIFEST_FILE).is_file():
        known = ", ".join(info.version for info in list_versions(root)) or "none"
        raise VersionNotFoundError(
            f"no index version {version!r} in {root} (versions: {known}); `stash-vision index list` "
            "shows them"
        )
    return folder


def read_lineage(folder: Path) -> Lineage:
    try:
        data = json.loads((folder / LINEAGE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return Lineage()
    if not isinstance(data, dict):
        return Lineage()
    return Lineage(**{key: str(data.get(key) or "") for key in Lineage.__slots__})


def write_lineage(folder: Path, lineage: Lineage) -> None:
    replace_text(folder / LINEAGE_FILE, lineage.to_json(), mode=0o644)


def _size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.iterdir() if path.is_file())


def _info(
    root: Path, folder: Path, manifest: IndexManifest, active: str | None, previous: str | None
) -> VersionInfo:
    return VersionInfo(
        version=folder.name,
        folder=folder,
        manifest=manifest,
        size_bytes=_size(folder),
        lineage=read_lineage(folder),
        active=folder.name == active,
        previous=folder.name == previous,
        recipe=dict(manifest.recipe or {}),
    )


def list_versions(root: Path) -> list[VersionInfo]:
    """Every finished version in `root`, newest first (by the manifest's created_at, then name).
    Folders whose manifest does not parse are left out: they cannot be activated anyway."""
    root = Path(root)
    if not root.is_dir():
        return []
    active, previous = active_version(root), previous_version(root)
    found: list[VersionInfo] = []
    for folder in root.iterdir():
        if folder.name.startswith(".") or folder.is_symlink() or not folder.is_dir():
            continue
        if not _VERSION_NAME.fullmatch(folder.name):
            continue
        try:
            manifest = read_manifest(folder)
        except (IndexNotFoundError, IndexCorruptError):
            continue
        found.append(_info(root, folder, manifest, active, previous))
    found.sort(key=lambda info: (info.manifest.created_at, info.version), reverse=True)
    return found


def get_version(root: Path, version: str) -> VersionInfo:
    folder = version_folder(root, version)
    return _info(Path(root), folder, read_manifest(folder), active_version(root), previous_version(root))


def set_active(root: Path, version: str) -> str | None:
    """Point `current` at `version` and `previous` at the version it replaces; returns that one.

    Activating the active version changes nothing. The caller has loaded and checked the version
    first (IndexHolder.activate): this only swaps links."""
    root = Path(root)
    folder = version_folder(root, version)
    old = active_version(root)
    if old == version:
        return None
    if old is not None:
        publish(root, root / old, link_name=PREVIOUS_LINK)
    publish(root, folder)
    return old


def rollback_target(root: Path) -> str:
    """The version `rollback` activates: `previous`, if it still exists."""
    previous = previous_version(root)
    if previous is None:
        raise VersionConflictError(
            f"nothing to roll back to in {root}: no previous version is recorded (one is recorded each "
            "time another version becomes active)"
        )
    return previous


def delete_version(root: Path, version: str) -> None:
    """Delete a version folder; never the active one. Deleting the previous version forgets it.

    The folder is first renamed to a hidden name (one atomic step, so listings never show half a
    version), then removed. A server still answering a query with it keeps its loaded copy."""
    root = Path(root)
    folder = version_folder(root, version)
    if active_version(root) == version:
        raise VersionConflictError(
            f"version {version} is the active index of {root.name}: activate another version first"
        )
    if previous_version(root) == version:
        with contextlib.suppress(FileNotFoundError):
            (root / PREVIOUS_LINK).unlink()
    doomed = root / f".{version}.{uuid.uuid4().hex}.deleting"
    os.rename(folder, doomed)
    shutil.rmtree(doomed, ignore_errors=True)


def apply_retention(root: Path, keep: int) -> list[str]:
    """Delete all but the `keep` newest versions, never the active or the previous one.
    Returns the deleted versions. `keep` < 1 keeps everything (retention off)."""
    if keep < 1:
        return []
    deleted: list[str] = []
    for info in list_versions(root)[keep:]:
        if info.active or info.previous:
            continue
        delete_version(root, info.version)
        deleted.append(info.version)
    return deleted


def note_replaced(root: Path, old: Path, new: Path) -> None:
    """`current` moved from `old` to `new` without `set_active` (a build's `publish`): record `old`
    as `previous`, and as `new`'s parent unless `new` already says where it came from."""
    root = Path(root)
    if old.parent.resolve() == root.resolve() and (old / MANIFEST_FILE).is_file():
        publish(root, old, link_name=PREVIOUS_LINK)
    if not (new / LINEAGE_FILE).exists() and new.parent.resolve() == root.resolve():
        write_lineage(new, Lineage(parent=old.name, origin="build"))


def publish_version(root: Path, folder: Path, *, build_job: str = "", origin: str = "build") -> None:
    """Publish a freshly written version: record its lineage (parent = the version active now) and
    make it active, the replaced version becoming `previous`. What a build calls instead of a bare
    `publish`, so rollback after a build returns to the version the build replaced."""
    root = Path(root)
    write_lineage(folder, Lineage(parent=active_version(root) or "", build_job=build_job, origin=origin))
    set_active(root, folder.name)
