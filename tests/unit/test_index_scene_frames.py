"""Own-Stash face source with scene frames: a performer's solo scenes (`findScenes` with
`performer_count` 1 on the stand-in's real schema) give a few evenly spaced frames each, read from
the file when the path maps here (scene 1) and streamed from Stash with the ApiKey when it does not
(scene 3, under /remote-only); the frames are stable bytes, so a rebuild with the default profile's
real models in-process answers them all from the embedding cache."""

from __future__ import annotations

import asyncio
from pathlib import Path
from urllib.parse import urlsplit

from bench.in_process import OrtSession
from stash_vision.server.connections.stash import Remote, StashConnection, StashScene
from stash_vision.server.faces.enrolment.build import Enroller, build_version
from stash_vision.server.faces.enrolment.embedding_cache import EmbeddingCache
from stash_vision.server.faces.profile import load_profile
from stash_vision.server.faces.sources.base import SourcePerformer
from stash_vision.server.faces.sources.stash import StashSource
from stash_vision.server.faces.sources.stash_scenes import _read_encoded
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.workers import CpuPool
from tests.conftest import shared_dir
from tests.standins.fixtures import STASH_KEY, stash_server  # noqa: F401
from tests.standins.stash import STASH_PATH, StashStandIn
from tests.unit.test_face_pipeline import default_files, default_pipeline  # noqa: F401

PROFILE = load_profile("default")
LIMITS = ImageLimits(10**8, 1 << 28)


def scene_source(server: StashStandIn, frames: int = 3) -> StashSource:
    connection = StashConnection(
        server.url, STASH_KEY, MediaPaths([], {STASH_PATH: str(shared_dir() / "testdata")}), retries=0
    )
    return StashSource(connection, LIMITS, solo_images=False, max_images=5, scene_frames=frames)


async def performers(source: StashSource) -> dict[str, SourcePerformer]:
    return {p.record.name: p async for p in source.performers()}


def test_solo_scenes_give_frames_from_the_file_and_the_stream(stash_server: StashStandIn) -> None:  # noqa: F811
    async def scenario() -> tuple[dict[str, SourcePerformer], dict[str, bytes], dict[str, bytes]]:
        source = scene_source(stash_server)
        try:
            found = await performers(source)
            keys = [i for p in found.values() for i in p.images if "scene" in i.key]
            first = {i.key: await i.read() for i in keys}
            again = await performers(source)  # a fresh walk: frames read again, from scratch
            second = {i.key: await i.read() for p in again.values() for i in p.images if "scene" in i.key}
        finally:
            await source.aclose()
        return found, first, second

    before = stash_server.traffic.count("/scene/3/stream")
    found, first, second = asyncio.run(scenario())
    alice = [i.key for i in found["Alice"].images if "scene" in i.key]
    cora = [i.key for i in found["Cora"].images if "scene" in i.key]
    assert len(alice) == 3 and all(k.startswith("stash scene 1 at ") for k in alice), alice
    assert len(cora) == 3 and all(k.startswith("stash scene 3 at ") for k in cora), cora
    assert not any("scene 2 " in k for k in first), "scene 2 has two performers: not a solo scene"
    assert all(data[:2] == b"\xff\xd8" for data in first.values()), "JPEG-encoded frames"
    assert first == second, "the same frames encode to the same bytes (the embedding cache's key)"
    assert stash_server.traffic.count("/scene/3/stream") > before, "scene 3 was streamed from Stash"
    assert stash_server.traffic.count("/scene/1/stream") == 0, "scene 1 was read from its file"


def test_a_stream_is_read_with_the_key_in_the_header(stash_server: StashStandIn) -> None:  # noqa: F811
    """Without Stash's `apikey` query parameter, only the ApiKey header lets the stream through."""

    async def scene() -> StashScene:
        source = scene_source(stash_server)
        try:
            return await source.connection.find_scene("3")
        finally:
            await source.aclose()

    found = asyncio.run(scene())
    url = urlsplit(f"{stash_server.url}/scene/3/stream")
    bare = f"{url.scheme}://{url.netloc}{url.path}"
    frames = _read_encoded(Remote(bare, {"ApiKey": STASH_KEY}), found, [1.0, 5.0])
    assert sorted(frames) == [0, 1]
    assert not _read_frames_or_none(bare, found), "the stand-in refuses the stream without the key"


def _read_frames_or_none(url: str, scene: StashScene) -> dict[int, bytes] | None:
    try:
        return _read_encoded(Remote(url, {}), scene, [1.0])
    except Exception:
        return None


def test_a_rebuild_answers_every_scene_frame_from_the_cache(
    tmp_path: Path,
    stash_server: StashStandIn,  # noqa: F811
    default_files: dict[str, Path],  # noqa: F811
) -> None:
    async def build() -> tuple[int, int, int]:
        pool = CpuPool(2)
        cache = EmbeddingCache(tmp_path / "cache.db")
        enroller = Enroller(
            default_pipeline(OrtSession(default_files, threads=2), pool), PROFILE, cache, pool, LIMITS
        )
        counts = []
        for _ in range(2):
            source = scene_source(stash_server, frames=2)
            try:
                result = await build_version(
                    [source],
                    enroller,
                    tmp_path / "indexes",
                    m=16,
                    ef_construction=100,
                    max_faces_per_performer=5,
                )
            finally:
                await source.aclose()
            stats = result.per_source[source.name]
            counts.append((stats.images, stats.cached))
        cache.close()
        (images, cached_first), (images_again, cached_again) = counts
        assert images == images_again
        return images, cached_first, cached_again

    images, cached_first, cached_again = asyncio.run(build())
    # Profile images of Alice, Bea and Cora, plus 2 frames of scene 1 (Alice) and of scene 3 (Cora).
    assert images == 3 + 4, images
    assert cached_first == 0 and cached_again == images
