"""A release as a build source: an exported version's performers and faces pool into a new version
with a folder's new performer, the same vectors and without inference for the release's faces (they
bypass the Enroller through the incremental carry-over); a release made with another recipe is a
clear InvalidInput naming both profiles, at submit time for a folder and at build time for a zip.
Real default-profile models in-process."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.in_process import OrtSession
from stash_vision.server.errors import InvalidInput
from stash_vision.server.faces.enrolment.build import BuildResult, Enroller, build_version
from stash_vision.server.faces.enrolment.embedding_cache import EmbeddingCache
from stash_vision.server.faces.enrolment.incremental import plan_build
from stash_vision.server.faces.index.release import export_release
from stash_vision.server.faces.sources.base import FaceSource
from stash_vision.server.faces.sources.folder import FolderSource
from stash_vision.server.faces.sources.release import ReleaseSource
from stash_vision.server.jobs.kinds.build_face_index import SOURCE_KINDS, SourceContext
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.workers import CpuPool
from stash_vision.settings import Settings
from tests.conftest import shared_file
from tests.unit.test_face_pipeline import RecordingSession, default_files, default_pipeline  # noqa: F401
from tests.unit.test_index_incremental import faces_by_performer
from tests.unit.test_index_sources import LIMITS, PROFILE


def photos(root: Path, people: dict[str, list[str]]) -> Path:
    for name, images in people.items():
        (root / name).mkdir(parents=True)
        for image in images:
            os.symlink(shared_file(f"testdata/faces/deepface/{image}"), root / name / image)
    return root


def build(
    tmp_path: Path, files: dict[str, Path], make: list[FaceSource], indexes: Path
) -> tuple[BuildResult, RecordingSession]:
    async def run() -> tuple[BuildResult, RecordingSession]:
        pool = CpuPool(2)
        session = RecordingSession(OrtSession(files, threads=2))
        cache = EmbeddingCache(tmp_path / f"cache-{len(list(tmp_path.iterdir()))}.db")  # a cold cache
        try:
            plan = plan_build(None, make, PROFILE, 10, full=False)
            enroller = Enroller(default_pipeline(session, pool), PROFILE, cache, pool, LIMITS)
            result = await build_version(
                make,
                enroller,
                indexes,
                m=16,
                ef_construction=100,
                max_faces_per_performer=10,
                carry_over=plan.carry_over,
            )
        finally:
            cache.close()
            for source in make:
                await source.aclose()
        return result, session

    return asyncio.run(run())


def test_a_release_pools_its_faces_without_inference(
    tmp_path: Path,
    default_files: dict[str, Path],  # noqa: F811
) -> None:
    first = photos(tmp_path / "first", {"Ann": ["img1.jpg", "img2.jpg"], "Bo": ["img13.jpg", "img14.jpg"]})
    old, _ = build(tmp_path, default_files, [FolderSource(first)], tmp_path / "old")
    release = export_release(old.folder, tmp_path / "release.zip")
    second = photos(tmp_path / "second", {"Cy": ["img20.jpg", "img21.jpg"]})

    result, session = build(
        tmp_path, default_files, [ReleaseSource(release, PROFILE), FolderSource(second)], tmp_path / "new"
    )
    stats = result.per_source[f"release:{release}"]
    assert stats.carried == 2 and stats.images == 0 and stats.faces_kept == old.faces, stats
    assert len(session.calls) == 2 * 2, (
        "only Cy's two photos were inferred (a detector and an embedder call each)"
    )
    before, after = faces_by_performer(old.folder), faces_by_performer(result.folder)
    assert set(before) < set(after) and len(after) == len(before) + 1, "the release's two and Cy"
    for uid, faces in before.items():
        assert set(after[uid]) == set(faces)
        for key, vector in faces.items():
            np.testing.assert_allclose(after[uid][key], vector, atol=1e-6)  # the writer normalises again


def test_a_release_of_another_recipe_is_refused_naming_both(
    tmp_path: Path,
    default_files: dict[str, Path],  # noqa: F811
) -> None:
    folder = photos(tmp_path / "photos", {"Ann": ["img1.jpg"]})
    old, _ = build(tmp_path, default_files, [FolderSource(folder)], tmp_path / "old")
    other = tmp_path / "other"
    shutil.copytree(old.folder, other)
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["recipe"]["profile"] = "stash-sense"
    (other / "manifest.json").write_text(json.dumps(manifest))
    context = SourceContext(MediaPaths([], {}), Settings(data_dir=tmp_path), LIMITS, profile=PROFILE)

    with pytest.raises(InvalidInput, match=r"'stash-sense'.*'default'"):
        SOURCE_KINDS["release"]({"kind": "release", "path": str(other)}, context)  # at submit time
    SOURCE_KINDS["release"]({"kind": "release", "path": str(old.folder)}, context)  # the same recipe: fine

    export_release(other, tmp_path / "other.zip")
    with pytest.raises(InvalidInput, match=r"'stash-sense'.*'default'"):
        build(tmp_path, default_files, [ReleaseSource(tmp_path / "other.zip", PROFILE)], tmp_path / "new")
    assert not (tmp_path / "new").exists(), "nothing written"
