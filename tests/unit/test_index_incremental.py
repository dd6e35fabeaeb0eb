"""Incremental stash-box builds (server/faces/enrolment/incremental.py) against the stash-box
stand-in, with the default profile's real models in-process: the first build fetches every page;
the next ones ask only for performers updated since the parent version's watermark (one page, the
changed performers' images only) and carry the rest over with the very same faces; a deleted and a
merged performer drop out; a performer pooled with a folder source keeps both sources' faces; and
`full` fetches everything again. Requests are counted at the stand-in."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from bench.in_process import OrtSession
from stash_vision.server.errors import InvalidInput
from stash_vision.server.faces.enrolment.build import BuildResult, Enroller, build_version
from stash_vision.server.faces.enrolment.embedding_cache import EmbeddingCache
from stash_vision.server.faces.enrolment.incremental import (
    SOURCES_FILE,
    IncrementalPlan,
    plan_build,
    read_source_states,
    write_source_states,
)
from stash_vision.server.faces.index.release import export_release, import_release
from stash_vision.server.faces.index.store import FaceIndex
from stash_vision.server.faces.index.versions import active_version, set_active
from stash_vision.server.faces.sources.base import FaceSource
from stash_vision.server.faces.sources.folder import FolderSource
from stash_vision.server.jobs.kinds.build_face_index import BuildFaceIndex, SourceContext
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.workers import CpuPool
from stash_vision.settings import Settings
from tests.conftest import shared_dir, shared_file
from tests.standins.fixtures import STASHBOX_KEY, stashbox_schema
from tests.standins.stashbox import EPOCH, StashBoxStandIn, default_performers
from tests.unit.test_face_pipeline import RecordingSession, default_files, default_pipeline  # noqa: F401
from tests.unit.test_index_sources import LIMITS, PROFILE, box_source

ALICE, BEA, CORA, DANA, EVE = (f"00000000-0000-4000-8000-{n:012d}" for n in range(5))


@pytest.fixture
def box() -> Iterator[StashBoxStandIn]:
    """A stand-in of its own: these tests change its performers."""
    performers = default_performers(shared_dir() / "testdata")
    with StashBoxStandIn(stashbox_schema(), performers, api_key=STASHBOX_KEY) as server:
        yield server


def faces_by_performer(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    """universal id -> image key -> the fused vectors of that face (all embedders concatenated)."""
    index = FaceIndex.load(folder, PROFILE.embedder_names, PROFILE.recipe())
    vectors = index.vectors(range(index.face_count))
    connection = sqlite3.connect(folder / "performers.db")
    try:
        rows = connection.execute(
            "SELECT p.universal_id, f.row, f.source_endpoint FROM faces f JOIN performers p ON p.id = f.performer_id"
        ).fetchall()
    finally:
        connection.close()
    found: dict[str, dict[str, np.ndarray]] = {}
    for uid, row, key in rows:
        found.setdefault(uid, {})[key] = np.concatenate([vectors[n][row] for n in PROFILE.embedder_names])
    return found


class Builds:
    """Builds like the job kind does: plan against the active version, build, record, activate."""

    def __init__(self, tmp_path: Path, server: StashBoxStandIn, folder: Path, files: dict[str, Path]) -> None:
        self.tmp_path, self.server, self.folder = tmp_path, server, folder
        self.root = tmp_path / "indexes" / PROFILE.name
        self.pool = CpuPool(2)
        self.session = RecordingSession(OrtSession(files, threads=2))
        self.cache = EmbeddingCache(tmp_path / "embedding_cache.db")

    async def build(self, *, full: bool = False) -> tuple[BuildResult, IncrementalPlan, int, int]:
        """The result, the plan, and the /graphql and image requests it made."""
        box = box_source(self.server)
        sources: list[FaceSource] = [box, FolderSource(self.folder)]
        parent = active_version(self.root)
        graphql, images = self.server.traffic.count("/graphql"), self.server.traffic.count("/images")
        try:
            plan = await asyncio.to_thread(
                plan_build, self.root / parent if parent else None, sources, PROFILE, 10, full=full
            )
            enroller = Enroller(
                default_pipeline(self.session, self.pool), PROFILE, self.cache, self.pool, LIMITS
            )
            result = await build_version(
                sources,
                enroller,
                self.tmp_path / "indexes",
                m=16,
                ef_construction=100,
                max_faces_per_performer=10,
                carry_over=plan.carry_over,
            )
        finally:
            for source in sources:
                await source.aclose()
        write_source_states(result.folder, plan.states_after(sources, result))
        set_active(self.root, result.version)
        return (
            result,
            plan,
            self.server.traffic.count("/graphql") - graphql,
            self.server.traffic.count("/images") - images,
        )


def dana_in_folder(tmp_path: Path, server: StashBoxStandIn) -> Path:
    """A folder performer that is the stash-box's Dana (same stash id): the two pool."""
    dana = tmp_path / "enrol" / "Dana"
    dana.mkdir(parents=True)
    (dana / "img17.jpg").symlink_to(shared_file("testdata/faces/deepface/img17.jpg"))
    stash_ids = [{"endpoint": f"{server.url}/graphql", "stash_id": DANA}]
    (dana / "performer.json").write_text(json.dumps({"name": "Dana", "stash_ids": stash_ids}))
    return tmp_path / "enrol"


def test_a_later_build_fetches_only_what_changed(
    tmp_path: Path,
    box: StashBoxStandIn,
    default_files: dict[str, Path],  # noqa: F811
) -> None:
    builds = Builds(tmp_path, box, dana_in_folder(tmp_path, box), default_files)
    name = "stash-box:stashdb"
    domain = box_source(box).connection.domain

    def uid(pid: str) -> str:
        return f"{domain}:{pid}"

    async def scenario() -> None:
        first, plan, graphql, images = await builds.build()
        assert plan.modes[name] == "full (no parent version)"
        assert (graphql, images) == (2, 7), "32 performers in pages of 25; every image once"
        assert first.per_source[name].performers == 5 and first.performers == 5
        before = faces_by_performer(first.folder)
        assert len(before[uid(DANA)]) == 2, "pooled: the stash-box's and the folder's photo"
        newest = EPOCH + timedelta(hours=len(box.performers) - 1)  # performer n: n hours after EPOCH
        assert read_source_states(first.folder)[name].watermark == newest

        calls = len(builds.session.calls)
        second, plan, graphql, images = await builds.build()
        assert plan.modes[name].startswith(f"updated since {newest.isoformat()}")
        assert (graphql, images) == (1, 0), "nothing changed: one page read, no image"
        assert second.per_source[name].carried == 5 and second.per_source[name].performers == 0
        assert len(builds.session.calls) == calls, "no inference"
        after = faces_by_performer(second.folder)
        assert after.keys() == before.keys()
        for performer, faces in before.items():
            assert after[performer].keys() == faces.keys(), performer
            for key, vector in faces.items():
                np.testing.assert_allclose(after[performer][key], vector, atol=1e-6)

        box.touch(BEA, EPOCH + timedelta(hours=100))
        third, plan, graphql, images = await builds.build()
        assert (graphql, images) == (1, 1), "one page, Bea's one image"
        assert (third.per_source[name].performers, third.per_source[name].carried) == (1, 4)
        now = faces_by_performer(third.folder)
        assert now.keys() == before.keys() and now[uid(BEA)].keys() == before[uid(BEA)].keys()
        for performer in (ALICE, CORA, DANA, EVE):
            assert now[uid(performer)].keys() == before[uid(performer)].keys()
        assert read_source_states(third.folder)[name].watermark == EPOCH + timedelta(hours=100)

        box.performers[CORA]["deleted"] = True  # deleted
        box.touch(CORA, EPOCH + timedelta(hours=101))
        box.performers[EVE].update(deleted=True, merged_into_id=ALICE)  # merged into Alice
        box.touch(EVE, EPOCH + timedelta(hours=102))
        box.touch(ALICE, EPOCH + timedelta(hours=102))
        fourth, plan, graphql, images = await builds.build()
        assert (graphql, images) == (1, 2), "one page; Alice's two images (Cora and Eve are gone)"
        gone = faces_by_performer(fourth.folder)
        assert set(gone) == {uid(ALICE), uid(BEA), uid(DANA)}
        assert set(read_source_states(fourth.folder)[name].performers) == set(gone)

        full, plan, graphql, images = await builds.build(full=True)
        assert plan.modes[name] == "full (requested)"
        assert (graphql, images) == (2, 4), "every page and every image again"
        assert full.per_source[name].carried == 0
        again = faces_by_performer(full.folder)
        assert {p: set(f) for p, f in again.items()} == {p: set(f) for p, f in gone.items()}

    asyncio.run(scenario())
    builds.cache.close()


def test_a_release_round_trip_leaves_the_watermark_behind(
    tmp_path: Path,
    box: StashBoxStandIn,
    default_files: dict[str, Path],  # noqa: F811
) -> None:
    """sources.json is not part of a release: export works, and an imported version (no watermark)
    makes the next build fetch in full."""
    builds = Builds(tmp_path, box, dana_in_folder(tmp_path, box), default_files)

    async def scenario() -> None:
        first, *_ = await builds.build()
        assert (first.folder / SOURCES_FILE).is_file()
        release = export_release(first.folder, tmp_path / "release.zip")
        other = tmp_path / "imported" / "indexes" / PROFILE.name
        version = import_release(release, other, PROFILE.name, PROFILE.recipe())
        assert not (other / version / SOURCES_FILE).exists()
        set_active(builds.root, first.version)
        (builds.root / first.version / SOURCES_FILE).unlink()  # as an imported version would be
        _, plan, graphql, _ = await builds.build()
        assert plan.modes["stash-box:stashdb"].startswith("full (version") and graphql == 2

    asyncio.run(scenario())
    builds.cache.close()


def test_the_job_takes_full(tmp_path: Path) -> None:
    """`full` is a boolean param of build-face-index, false unless asked for."""
    context = SourceContext(MediaPaths([tmp_path], {}), Settings(data_dir=tmp_path), LIMITS)
    kind = BuildFaceIndex(None, None, context)  # type: ignore[arg-type]  # parse uses neither
    assert kind.parse({"folder": str(tmp_path)}).full is False
    assert kind.parse({"folder": str(tmp_path), "full": True}).full is True
    with pytest.raises(InvalidInput):
        kind.parse({"folder": str(tmp_path), "full": "yes"})
