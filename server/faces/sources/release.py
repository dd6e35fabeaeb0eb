"""A Stash Sense release (ours exported, or a Stash Sense data release) as a face source: its
performers and their already-embedded faces pool into a new version, so a user can extend a
downloaded release with their own Stash or folders instead of starting over.

The faces are vectors, not images: they cannot go through the Enroller (there is nothing to
detect), and are only meaningful to the profile that made them. So the release is accepted only
when its recipe equals the active profile's (a Stash Sense release, which has none, only for the
stash-sense profile, as on import), and its faces reach the build the way an incremental build
carries a parent version's faces over (`IncrementalPlan.carry_over` → `carry_faces` in
server/faces/enrolment/incremental.py): as faces already selected, pooled with what other sources
offer for the same universal id. The walk itself yields no performer; it opens the release.

A zip is unpacked and verified like an import (server/faces/index/release.py) into a temporary
folder removed when the build ends; a folder (a version, or an unpacked release with a recipe) is
read in place. Either way the index is loaded and verified with `FaceIndex.load`."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

from stash_vision.server.errors import InvalidInput
from stash_vision.server.faces.index.manifest import read_manifest
from stash_vision.server.faces.index.recipe import normalise_recipe
from stash_vision.server.faces.index.release import STASH_SENSE_PROFILE, adopt_stash_sense, unpack_release
from stash_vision.server.faces.index.store import FaceIndex
from stash_vision.server.faces.profile import FaceProfile

from .base import SourcePerformer


class ReleaseSource:
    kind = "release"

    def __init__(self, path: Path, profile: FaceProfile) -> None:
        self.path = path
        self.profile = profile
        self.name = f"release:{path}"
        self.index: FaceIndex | None = None  # set by the walk
        self._staging: Path | None = None

    async def performers(self) -> AsyncIterator[SourcePerformer]:
        """Opens and verifies the release; its faces come through the build's carry-over."""
        self.index = await asyncio.to_thread(self._open)
        return
        yield  # an async generator that yields nothing

    async def aclose(self) -> None:
        if self._staging is not None:
            await asyncio.to_thread(shutil.rmtree, self._staging, True)
            self._staging = None

    def _open(self) -> FaceIndex:
        folder = self.path
        if zipfile.is_zipfile(self.path):
            self._staging = folder = Path(tempfile.mkdtemp(prefix=".release-source."))
            manifest, embedders = unpack_release(self.path, folder)
            if manifest.recipe is None and self.profile.name == STASH_SENSE_PROFILE:
                adopt_stash_sense(folder, manifest, embedders, self.profile.recipe())
        check_recipe(folder, self.path, self.profile)
        return FaceIndex.load(
            folder, self.profile.embedder_names, self.profile.recipe(), profile=self.profile.name
        )


def check_recipe(folder: Path, source: Path, profile: FaceProfile) -> None:
    """InvalidInput, naming both, unless the release's recipe is the active profile's."""
    manifest = read_manifest(folder)
    if manifest.recipe is None:
        raise InvalidInput(
            f"release {source} (version {manifest.version}) is a Stash Sense release without a recipe: its "
            f"faces only pool into the {STASH_SENSE_PROFILE} profile (as a .zip), not the active profile "
            f"{profile.name!r}"
        )
    if normalise_recipe(manifest.recipe) != normalise_recipe(profile.recipe()):
        built_for = manifest.recipe.get("profile")
        raise InvalidInput(
            f"release {source} (version {manifest.version}) was built with profile {built_for!r}'s recipe, "
            f"which differs from the active profile {profile.name!r}'s: its faces cannot pool into this "
            f"profile's index (switch to {built_for!r}, or build from images instead)"
        )
