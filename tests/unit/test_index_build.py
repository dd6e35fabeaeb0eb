"""Building a face-index version in the server from a folder source, with the default profile's real
models in-process and real photos: outliers and duplicates are rejected per source, a rebuild with
unchanged inputs runs no inference, a new performer's images are the only ones embedded, and the
version written loads and identifies the held-out photos."""

from __future__ import annotations

import asyncio
import os
import shutil
import time
from pathlib import Path

import pytest

from bench.in_process import OrtSession
from stash_vision.server.faces.enrolment.build import BuildResult, Enroller, build_version
from stash_vision.server.faces.enrolment.embedding_cache import EmbeddingCache
from stash_vision.server.faces.index.store import FaceIndex
from stash_vision.server.faces.profile import load_profile
from stash_vision.server.faces.sources.base import SourceError
from stash_vision.server.faces.sources.folder import FolderSource
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.workers import CpuPool
from tests.conftest import shared_file
from tests.unit.test_face_pipeline import RecordingSession, default_files, default_pipeline  # noqa: F401
from tests.unit.test_face_selection import FACES, groups

PROFILE = load_profile("default")


def enrol_folder(root: Path, performers: dict[str, list[str]]) -> Path:
    for name, files in performers.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for file in files:
            os.symlink(shared_file(f"{FACES}/{file}"), root / name / file)
    return root


async def build(
    tmp_path: Path, folder: Path, session: RecordingSession, cache: EmbeddingCache
) -> tuple[BuildResult, float]:
    pool = CpuPool(2)
    enroller = Enroller(default_pipeline(session, pool), PROFILE, cache, pool, ImageLimits(10**8, 1 << 28))
    started = time.perf_counter()
    result = await build_version(
        [FolderSource(folder)],
        enroller,
        tmp_path / "indexes",
        m=16,
        ef_construction=100,
        max_faces_per_performer=10,
    )
    return result, time.perf_counter() - started


def test_builds_are_incremental_and_reject_intruders(
    tmp_path: Path,
    default_files: dict[str, Path],  # noqa: F811 - the fixture imported above
) -> None:
    sets = groups()
    first_set = {name: files for name, files in sets.items() if name != "group04"}
    # A photo of group01's person planted in group00's folder.
    first_set["group00"] = [*first_set["group00"], sets["group01"][0]]
    folder = enrol_folder(tmp_path / "enrol", first_set)
    cache = EmbeddingCache(tmp_path / "embedding_cache" / "embeddings.db")
    session = RecordingSession(OrtSession(default_files, threads=2))

    async def scenario() -> None:
        first, first_s = await build(tmp_path, folder, session, cache)
        stats = first.per_source[f"folder:{folder}"]
        # The planted photo is group01's own too: its second reading is answered by the cache.
        assert stats.performers == len(first_set) and stats.cached == 1
        assert stats.rejected["outlier"] == 1, stats.rejected
        calls = len(session.calls)

        second, second_s = await build(tmp_path, folder, session, cache)
        assert len(session.calls) == calls, "unchanged inputs: no inference at all"
        assert second.per_source[f"folder:{folder}"].cached == stats.images
        assert (second.performers, second.faces) == (first.performers, first.faces)
        assert second_s * 10 <= first_s, (first_s, second_s)

        enrol_folder(folder, {"group04": sets["group04"]})  # one new performer
        third, _ = await build(tmp_path, folder, session, cache)
        new_images = {str(folder / "group04" / f) for f in sets["group04"]}
        assert third.performers == first.performers + 1
        embedded_now = len(session.calls) - calls
        assert 0 < embedded_now <= 2 * len(new_images), "only the new performer's images reached the models"

        index = FaceIndex.load(third.folder, PROFILE.embedder_names, PROFILE.recipe())
        assert index.performer_count == third.performers

    asyncio.run(scenario())


def test_a_missing_folder_is_a_clear_source_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async for _ in FolderSource(tmp_path / "nowhere").performers():
            pass

    with pytest.raises(SourceError, match="is not a folder"):
        asyncio.run(scenario())
    shutil.rmtree(tmp_path, ignore_errors=True)
