"""The live face index of the active profile: `<face_indexes_dir>/<profile>/current`, loaded off the
event loop, re-loaded when `current` points somewhere new (a build publishes a version by swapping
that link), and a clear reason whenever there is no usable index.

`activate` switches versions live: the new version is loaded and fully checked (checksums, recipe)
while the old one keeps answering, and only then are the links swapped and the new index object
installed, in one step under the lock. A query holds the FaceIndex object it got from `get`, so an
in-flight query finishes on the version it started with; a failed activation leaves the serving
version untouched."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from stash_vision.server.errors import IndexUnavailable, IndexVersionConflict, IndexVersionNotFound
from stash_vision.server.faces.index.errors import FaceIndexError
from stash_vision.server.faces.index.layout import MANIFEST_FILE
from stash_vision.server.faces.index.store import FaceIndex
from stash_vision.server.faces.index.versions import (
    VersionConflictError,
    VersionNotFoundError,
    apply_retention,
    note_replaced,
    rollback_target,
    set_active,
    version_folder,
)
from stash_vision.server.faces.index.writer import current_index_folder
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.workers import CpuPool

log = logging.getLogger(__name__)


class IndexHolder:
    def __init__(self, root: Path, profile: FaceProfile, pool: CpuPool, *, keep_versions: int = 0) -> None:
        self.folder = root / profile.name
        self.profile = profile
        self.pool = pool
        self.keep_versions = keep_versions
        self._lock = asyncio.Lock()
        self._loaded_from: str | None = None
        self._index: FaceIndex | None = None
        self._problem: str | None = None

    def _target(self) -> str | None:
        folder = current_index_folder(self.folder)
        if folder is None:
            return None
        # The resolved folder + the manifest's mtime: a new version behind the same link name, or
        # a folder rebuilt in place.
        try:
            stamp = os.stat(folder / MANIFEST_FILE).st_mtime_ns
        except OSError:
            stamp = 0
        return f"{folder}@{stamp}"

    async def get(self) -> FaceIndex:
        """The index, or IndexUnavailable saying why there is none and what to do."""
        target = self._target()
        if target is None:
            raise IndexUnavailable(
                f"no face index for profile {self.profile.name!r} (looked in {self.folder / 'current'}); "
                "build one with `stash-vision index build FOLDER` (FOLDER/<performer>/<images>)"
            )
        if target != self._loaded_from:
            async with self._lock:
                if target != self._loaded_from:
                    await self._load(target)
        if self._index is None:
            raise IndexUnavailable(self._problem or "the face index could not be loaded")
        return self._index

    async def _load(self, target: str) -> None:
        folder = Path(target.rsplit("@", 1)[0])
        try:
            index = await self.pool.run(
                FaceIndex.load, folder, self.profile.embedder_names, self.profile.recipe()
            )
        except FaceIndexError as error:
            log.error("face index %s not loaded: %s", folder, error)
            self._index, self._problem = None, f"face index {folder} is not usable: {error}"
        else:
            log.info(
                "face index %s loaded: version %s, %d performers, %d faces",
                folder,
                index.version,
                index.performer_count,
                index.face_count,
            )
            replaced = self._index
            self._index, self._problem = index, None
            if replaced is not None and replaced.folder != index.folder:
                # A build published `current` behind our back: remember what it replaced, so
                # rollback and the version's parent are right.
                await self.pool.run(note_replaced, self.folder, replaced.folder, index.folder)
            await self._retain()
        self._loaded_from = target

    async def _retain(self) -> None:
        """Retention after a new version took over (a build's publish or an activation): never fails
        a switch, a version that cannot be deleted is logged and kept."""
        try:
            deleted = await self.pool.run(apply_retention, self.folder, self.keep_versions)
        except OSError as error:
            log.warning("face index retention in %s failed: %s", self.folder, error)
            return
        if deleted:
            log.info("face index retention (keep %d): deleted %s", self.keep_versions, ", ".join(deleted))

    def _load_checked(self, version: str) -> FaceIndex:
        """Load and verify a version for this profile, in a worker thread; domain errors out."""
        try:
            folder = version_folder(self.folder, version)
        except VersionNotFoundError as error:
            raise IndexVersionNotFound(str(error)) from None
        try:
            return FaceIndex.load(folder, self.profile.embedder_names, self.profile.recipe())
        except FaceIndexError as error:
            raise IndexUnavailable(
                f"version {version} of profile {self.profile.name} cannot be activated: {error} "
                "(the serving version is unchanged)"
            ) from None

    async def activate(self, version: str) -> tuple[FaceIndex, str]:
        """Make `version` the serving index; returns it and the version it replaced ('' if none).

        Loads and checks first (the old version keeps answering meanwhile); the link swap and the
        switch of the in-memory index happen together under the lock, so `get` never returns an
        index other than the one `current` names once it has looked."""
        index = await self.pool.run(self._load_checked, version)
        async with self._lock:
            try:
                replaced = await self.pool.run(set_active, self.folder, version)
            except VersionNotFoundError as error:  # deleted while it was loading
                raise IndexVersionNotFound(str(error)) from None
            self._index, self._problem = index, None
            self._loaded_from = self._target()
        log.info("face index version %s of %s activated (was %s)", version, self.profile.name, replaced)
        await self._retain()
        return index, replaced or ""

    async def rollback(self) -> tuple[FaceIndex, str]:
        """Activate the previously active version (checked like any activation)."""
        try:
            version = await self.pool.run(rollback_target, self.folder)
        except VersionConflictError as error:
            raise IndexVersionConflict(str(error)) from None
        return await self.activate(version)

    async def describe(self) -> tuple[FaceIndex | None, str]:
        try:
            return await self.get(), ""
        except IndexUnavailable as error:
            return None, str(error)
