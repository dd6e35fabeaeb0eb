"""A face-index version from three sources at once — a stash-box stand-in and an own-Stash stand-in
on the real GraphQL schemas, and a folder — with the default profile's real models in-process:
every source reports its statistics, the version loads, the stash-box request budget holds, and a stash-box that refuses the key is
a clear error naming the source, with nothing written."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from bench.in_process import OrtSession
from stash_vision.server.connections.errors import SourceAuthFailed
from stash_vision.server.connections.stash import StashConnection
from stash_vision.server.connections.stashbox import StashBoxConnection
from stash_vision.server.faces.enrolment.build import Enroller, build_version
from stash_vision.server.faces.enrolment.embedding_cache import EmbeddingCache
from stash_vision.server.faces.index.store import FaceIndex
from stash_vision.server.faces.profile import load_profile
from stash_vision.server.faces.sources.folder import FolderSource, read_performer
from stash_vision.server.faces.sources.stash import StashSource
from stash_vision.server.faces.sources.stashbox import StashBoxSource
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.workers import CpuPool
from stash_vision.settings import StashBoxEndpoint
from tests.conftest import shared_dir, shared_file
from tests.standins.fixtures import STASH_KEY, STASHBOX_KEY, stash_server, stashbox_server  # noqa: F401
from tests.standins.stash import STASH_PATH, StashStandIn
from tests.standins.stashbox import StashBoxStandIn
from tests.unit.test_face_pipeline import RecordingSession, default_files, default_pipeline  # noqa: F401

PROFILE = load_profile("default")
LIMITS = ImageLimits(10**8, 1 << 28)


def box_source(server: StashBoxStandIn, key: str = STASHBOX_KEY) -> StashBoxSource:
    config = StashBoxEndpoint(
        name="stashdb", endpoint=f"{server.url}/graphql", api_key=key, max_requests_per_minute=60
    )
    return StashBoxSource(StashBoxConnection(config, retries=1), size="600", max_images=5, max_bytes=1 << 24)


def stash_source(server: StashStandIn) -> StashSource:
    zip_path = next(iter(i["_real"] for i in server.fx.images.values() if i["_zip"]))
    mappings = {STASH_PATH: str(shared_dir() / "testdata"), f"{STASH_PATH}/archive.zip": str(zip_path)}
    connection = StashConnection(server.url, STASH_KEY, MediaPaths([], mappings), retries=0)
    return StashSource(connection, LIMITS, solo_images=True, max_images=5)


def test_three_sources_build_one_version(
    tmp_path: Path,
    stash_server: StashStandIn,  # noqa: F811
    stashbox_server: StashBoxStandIn,  # noqa: F811
    default_files: dict[str, Path],  # noqa: F811
) -> None:
    folder = tmp_path / "enrol" / "Zoe"
    folder.mkdir(parents=True)
    os.symlink(shared_file("testdata/faces/deepface/img16.jpg"), folder / "img16.jpg")
    sources = [box_source(stashbox_server), stash_source(stash_server), FolderSource(tmp_path / "enrol")]

    async def scenario() -> None:
        pool = CpuPool(2)
        session = RecordingSession(OrtSession(default_files, threads=2))
        cache = EmbeddingCache(tmp_path / "embedding_cache.db")
        enroller = Enroller(default_pipeline(session, pool), PROFILE, cache, pool, LIMITS)
        try:
            result = await build_version(
                sources, enroller, tmp_path / "indexes", m=16, ef_construction=100, max_faces_per_performer=10
            )
        finally:
            for source in sources:
                await source.aclose()
        names = set(result.per_source)
        assert names == {
            "stash-box:stashdb",
            f"stash:{sources[1].connection.name}",
            f"folder:{tmp_path / 'enrol'}",
        }
        box = result.per_source["stash-box:stashdb"]
        assert box.performers == 5 and box.faces_kept >= 5, box
        stash = result.per_source[f"stash:{sources[1].connection.name}"]
        assert stash.performers >= 3 and stash.images >= 3, stash
        index = FaceIndex.load(result.folder, PROFILE.embedder_names, PROFILE.recipe())
        ids = (
            {index.performer(pid).id for pid in index.performer_ids()}
            if hasattr(index, "performer_ids")
            else set()
        )
        assert result.performers >= 6
        del ids

    asyncio.run(scenario())
    assert stashbox_server.traffic.max_in_window(60.0) <= 60, "the stash-box budget held"


def test_a_refused_key_names_the_source(
    tmp_path: Path,
    stashbox_server: StashBoxStandIn,  # noqa: F811
    default_files: dict[str, Path],  # noqa: F811
) -> None:
    async def scenario() -> None:
        pool = CpuPool(1)
        enroller = Enroller(
            default_pipeline(OrtSession(default_files, threads=1), pool),
            PROFILE,
            EmbeddingCache(tmp_path / "cache.db"),
            pool,
            LIMITS,
        )
        source = box_source(stashbox_server, key="wrong")
        try:
            await build_version(
                [source], enroller, tmp_path / "indexes", m=16, ef_construction=100, max_faces_per_performer=5
            )
        finally:
            await source.aclose()

    with pytest.raises(SourceAuthFailed, match="stashdb"):
        asyncio.run(scenario())
    assert not (tmp_path / "indexes").exists(), "nothing written"


def test_a_folder_performer_pools_with_stash_and_stash_box_whatever_the_endpoint_form(tmp_path: Path) -> None:
    """performer.json may name the endpoint as Stash stores it (the GraphQL URL) or as a domain:
    both give the `<domain>:<uuid>` id that Stash and stash-box sources give the same performer."""
    for name, endpoint in (("url", "https://StashDB.org/graphql"), ("domain", "stashdb.org")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "performer.json").write_text(
            json.dumps({"stash_ids": [{"endpoint": endpoint, "stash_id": "50459d16-0000"}]})
        )
        record = read_performer(tmp_path / name).record
        assert record.id == "stashdb.org:50459d16-0000"
        assert record.stash_ids == ((endpoint, "50459d16-0000"),)
