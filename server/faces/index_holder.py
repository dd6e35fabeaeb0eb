"""The live face index of the active profile: `<face_indexes_dir>/<profile>/current`, loaded off the
event loop, re-loaded when `current` points somewhere new (a build publishes a version by swapping
that link), and a clear reason whenever there is no usable index."""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

from stash_vision.server.errors import IndexUnavailable
from stash_vision.server.faces.index.errors import FaceIndexError
from stash_vision.server.faces.index.layout import MANIFEST_FILE
from stash_vision.server.faces.index.store import FaceIndex
from stash_vision.server.faces.index.writer import current_index_folder
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.workers import CpuPool

log = logging.getLogger(__name__)


class IndexHolder:
    def __init__(self, root: Path, profile: FaceProfile, pool: CpuPool) -> None:
        self.folder = root / profile.name
        self.profile = profile
        self.pool = pool
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
            self._index, self._problem = index, None
        self._loaded_from = target

    async def describe(self) -> tuple[FaceIndex | None, str]:
        try:
            return await self.get(), ""
        except IndexUnavailable as error:
            return None, str(error)
