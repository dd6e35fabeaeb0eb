"""Release .zip files in Stash Sense's layout: export a version so a user can move or share it,
import one (ours, or a Stash Sense data release) as a new version.

A release holds manifest.json, faces.json, performers.json, performers.db and face_<embedder>.voy
at its top level (a single top folder is accepted too). Import extracts into a hidden staging
folder, verifies every checksum the manifest lists and that every index file has one, and only
then renames the folder into place: a mismatch, a missing file or any other failure leaves
nothing behind. Stash Sense's manifests have no `recipe` or `voyager` block; such a release is
only accepted for the stash-sense profile, whose recipe reproduces Stash Sense's, and gets that
recipe (and the Voyager parameters read from its .voy files) written into its manifest.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any

import voyager

from .errors import IndexCorruptError, IndexFileMissingError, IndexIncompatibleError
from .layout import FACES_FILE, MANIFEST_FILE, PERFORMERS_DB_FILE, PERFORMERS_JSON_FILE, voyager_file
from .loading import verify_checksums
from .manifest import IndexManifest, VoyagerParams, read_manifest
from .recipe import normalise_recipe
from .versions import (
    Lineage,
    VersionConflictError,
    check_version_name,
    version_folder,
    write_lineage,
)

STASH_SENSE_PROFILE = "stash-sense"
_CHUNK = 1 << 20


def release_files(manifest: IndexManifest) -> list[str]:
    """The files of a release: the manifest and every file it lists a checksum for."""
    return [MANIFEST_FILE, *sorted(manifest.checksums)]


def export_release(folder: Path, destination: Path) -> Path:
    """Write `folder`'s index as a release zip at `destination` (written beside it, then renamed).
    .voy files are stored as they are (float vectors do not compress), the rest deflated."""
    manifest = read_manifest(folder)
    for name in release_files(manifest):
        if not (folder / name).is_file():
            raise IndexFileMissingError(
                f"{folder / name} is missing: version {folder.name} cannot be exported"
            )
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{destination.name}.", suffix=".partial", dir=destination.parent
    )
    os.close(handle)
    try:
        with zipfile.ZipFile(temporary, "w", allowZip64=True) as archive:
            for name in release_files(manifest):
                method = zipfile.ZIP_STORED if name.endswith(".voy") else zipfile.ZIP_DEFLATED
                archive.write(folder / name, arcname=name, compress_type=method)
        os.replace(temporary, destination)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return destination


def _members(archive: zipfile.ZipFile, source: Path) -> dict[str, zipfile.ZipInfo]:
    """Plain file name -> zip entry; entries at the top level or under one common top folder."""
    files = [info for info in archive.infolist() if not info.is_dir()]
    prefixes = {PurePosixPath(info.filename).parent for info in files}
    if len(prefixes) != 1 or len(next(iter(prefixes)).parts) > 1:
        raise IndexCorruptError(
            f"{source} is not a release: its files must sit together at the top level (or in one folder), "
            f"found folders {sorted(str(p) for p in prefixes)}"
        )
    members: dict[str, zipfile.ZipInfo] = {}
    for info in files:
        name = PurePosixPath(info.filename).name
        if name in {"", ".", ".."} or name.startswith("."):
            raise IndexCorruptError(f"{source} holds an entry with an unusable name: {info.filename!r}")
        members[name] = info
    return members


def _embedders(manifest: IndexManifest, names: Sequence[str]) -> list[str]:
    if manifest.voyager is not None:
        return list(manifest.voyager.embedders)
    return sorted(
        name[len("face_") : -len(".voy")]
        for name in names
        if name.startswith("face_") and name.endswith(".voy")
    )


def adopt_stash_sense(
    staging: Path, manifest: IndexManifest, embedders: list[str], recipe: Mapping[str, Any]
) -> IndexManifest:
    """A Stash Sense manifest completed with the stash-sense profile's recipe and the Voyager
    parameters its .voy files were built with; written back to manifest.json (not a checksummed file)."""
    first = voyager.Index.load(str(staging / voyager_file(embedders[0]))) if manifest.face_count else None
    adopted = manifest.model_copy(
        update={
            "recipe": normalise_recipe(recipe),
            "voyager": VoyagerParams(
                M=int(first.M) if first is not None else 12,
                ef_construction=int(first.ef_construction) if first is not None else 200,
                embedders=embedders,
            ),
        }
    )
    (staging / MANIFEST_FILE).write_text(adopted.to_json(), encoding="utf-8")
    return adopted


def unpack_release(source: Path, staging: Path) -> tuple[IndexManifest, list[str]]:
    """Extract the release zip `source` into the empty folder `staging` and verify it: a manifest,
    a usable version name, at least one .voy, every listed checksum and the required files. Returns
    the manifest and the embedders; the caller removes `staging` on failure."""
    if not zipfile.is_zipfile(source):
        raise IndexCorruptError(
            f"{source} is not a zip file (a release is a .zip with manifest.json and the index files)"
        )
    with zipfile.ZipFile(source) as archive:
        members = _members(archive, source)
        if MANIFEST_FILE not in members:
            raise IndexFileMissingError(f"{source} has no manifest.json: it is not a face index release")
        for name, info in members.items():
            with archive.open(info) as stream, (staging / name).open("wb") as out:
                shutil.copyfileobj(stream, out, _CHUNK)
    manifest = read_manifest(staging)
    check_version_name(manifest.version)
    embedders = _embedders(manifest, list(members))
    if not embedders:
        raise IndexFileMissingError(f"{source} holds no face_<embedder>.voy file")
    verify_checksums(staging, manifest, embedders)
    for required in (FACES_FILE, PERFORMERS_JSON_FILE, PERFORMERS_DB_FILE):
        if required not in manifest.checksums:  # verify_checksums checks these too; say it plainly
            raise IndexCorruptError(f"{source}: manifest.json lists no checksum for {required}")
    return manifest, embedders


def import_release(source: Path, root: Path, profile: str, recipe: Mapping[str, Any]) -> str:
    """Import the release zip `source` as a new version of `profile` under `root` (the profile's
    folder); returns the version. Nothing is left in `root` unless the whole import succeeded."""
    source, root = Path(source), Path(root)
    if not zipfile.is_zipfile(source):
        raise IndexCorruptError(
            f"{source} is not a zip file (a release is a .zip with manifest.json and the index files)"
        )
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".import.", suffix=".partial", dir=root))
    try:
        manifest, embedders = unpack_release(source, staging)
        version = manifest.version
        built_for = (manifest.recipe or {}).get("profile")
        if manifest.recipe is None:
            if profile != STASH_SENSE_PROFILE:
                raise IndexIncompatibleError(
                    f"{source} (version {version}) has no recipe block: it is a Stash Sense release, which can "
                    f"only be imported into the {STASH_SENSE_PROFILE} profile, not {profile!r}"
                )
            adopt_stash_sense(staging, manifest, embedders, recipe)
        elif built_for != profile:
            raise IndexIncompatibleError(
                f"{source} holds version {version} of profile {built_for!r}, not of {profile!r}: import it with "
                f"that profile active (STASH_VISION_FACE_PROFILE={built_for})"
            )
        target = root / version
        if target.exists() or target.is_symlink():
            raise VersionConflictError(
                f"version {version} already exists in {root}; delete it first to re-import"
            )
        write_lineage(staging, Lineage(origin="import", imported_from=source.name))
        os.chmod(staging, 0o755)
        os.rename(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    version_folder(root, version)  # sanity: it is now a listed version
    return version
