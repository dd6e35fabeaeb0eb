"""StashConnection against the Stash stand-in, which executes every query on Stash's real schema:
status for /health, ids resolved to local files (path mappings, zip members) or to Stash's URLs
with the key, paging of performers and images, and image downloads checked."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import httpx
import pytest

from stash_vision.server.connections import (
    Remote,
    SourceBadContent,
    SourceNotFound,
    StashConnection,
)
from stash_vision.server.media.paths import MediaLocation, MediaPaths
from stash_vision.settings import Settings
from tests.conftest import shared_dir
from tests.standins.fixtures import STASH_KEY, free_port, stash_server
from tests.standins.stash import STASH_PATH, VERSION, StashStandIn

__all__ = ["stash_server"]
T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def connect(server: StashStandIn, key: str | None = STASH_KEY, **options: Any) -> StashConnection:
    zip_path = next(iter(i["_real"] for i in server.fx.images.values() if i["_zip"]))
    mappings = {STASH_PATH: str(shared_dir() / "testdata"), f"{STASH_PATH}/archive.zip": str(zip_path)}
    return StashConnection(server.url, key, MediaPaths([], mappings), retries=0, **options)


async def collect(items: AsyncIterator[T]) -> list[T]:
    return [item async for item in items]


def test_status_reports_version_and_a_working_key(stash_server: StashStandIn) -> None:
    status = run(connect(stash_server).status())
    assert (status.configured, status.reachable, status.version, status.key_ok, status.error) == (
        True,
        True,
        VERSION,
        True,
        None,
    )


def test_status_with_a_wrong_key_says_which_setting_to_fix(stash_server: StashStandIn) -> None:
    status = run(connect(stash_server, key="wrong").status())
    assert status.reachable and status.key_ok is False and status.version is None
    assert status.error is not None
    assert f"API key of Stash at {stash_server.url}" in status.error
    assert "STASH_VISION_STASH_API_KEY" in status.error


def test_status_of_an_unreachable_stash_names_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    status = run(StashConnection(url, "k", MediaPaths([], {}), retries=1, timeout_s=2).status())
    assert not status.reachable and status.key_ok is None
    assert status.error is not None and f"Stash at {url} is unreachable" in status.error


def test_from_settings_is_none_without_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STASH_VISION_STASH_URL", raising=False)
    assert StashConnection.from_settings(Settings()) is None
    monkeypatch.setenv("STASH_VISION_STASH_URL", "http://stash:9999/")
    monkeypatch.setenv("STASH_VISION_STASH_API_KEY", "abc")
    connection = StashConnection.from_settings(Settings())
    assert connection is not None
    assert connection.client.url == "http://stash:9999/graphql"
    assert connection.client.headers_for("http://stash:9999/scene/1/stream") == {"ApiKey": "abc"}
    # The key never goes to another host, e.g. an image URL on a CDN.
    assert connection.client.headers_for("http://cdn.example/x.jpg") == {}


def test_scene_readable_here_resolves_to_its_file(stash_server: StashStandIn) -> None:
    resolved = run(connect(stash_server).resolve_scene("1"))
    # Paths resolve symlinks (the shared folder may be one): compare real paths.
    assert resolved == (shared_dir() / "testdata" / "video" / "box.mp4").resolve()


def test_scene_not_readable_here_streams_from_stash_with_range(stash_server: StashStandIn) -> None:
    resolved = run(connect(stash_server).resolve_scene("2"))
    assert isinstance(resolved, Remote)
    assert resolved.url.startswith(f"{stash_server.url}/scene/2/stream")
    assert resolved.headers == {"ApiKey": STASH_KEY}
    expected = (shared_dir() / "testdata" / "video" / "cup.mp4").read_bytes()
    response = httpx.get(resolved.url, headers={**resolved.headers, "Range": "bytes=100-199"})
    assert response.status_code == 206 and response.content == expected[100:200]
    bare = resolved.url.split("?")[0]
    assert httpx.get(bare).status_code == 401  # the stand-in checks the key like Stash


def test_scene_details_and_performers(stash_server: StashStandIn) -> None:
    scene = run(connect(stash_server).find_scene("2"))
    assert scene.path == "/remote-only/cup.mp4" and scene.duration is not None and scene.duration > 1
    assert [p.name for p in scene.performers] == ["Alice", "Cora"]
    assert scene.performers[1].universal_ids == ["stashdb.org:6f6a-cora", "fansdb.cc:77aa-cora"]


def test_unknown_scene_is_not_found(stash_server: StashStandIn) -> None:
    with pytest.raises(SourceNotFound, match=f"Stash at {stash_server.url} has no scene 999"):
        run(connect(stash_server).resolve_scene("999"))


def test_images_resolve_to_files_zip_members_or_urls(stash_server: StashStandIn) -> None:
    connection = connect(stash_server)
    faces = (shared_dir() / "testdata" / "faces" / "deepface").resolve()
    assert run(connection.resolve_image("1")) == MediaLocation(faces / "img2.jpg")
    member = run(connection.resolve_image("8"))
    assert isinstance(member, MediaLocation) and member.member == "inner/img21.jpg"
    assert member.path.name == "archive.zip"
    remote = run(connection.resolve_image("7"))
    assert remote == Remote(f"{stash_server.url}/image/7/image", {"ApiKey": STASH_KEY})
    data = run(connection.fetch_bytes(remote.url))
    assert data == (faces / "img6.jpg").read_bytes()


def test_gallery_images_come_in_pages(stash_server: StashStandIn) -> None:
    before = stash_server.traffic.count("/graphql")
    images = run(collect(connect(stash_server, page_size=2).gallery_images("1")))
    assert [i.id for i in images] == ["1", "2", "4", "6"]
    assert stash_server.traffic.count("/graphql") - before == 2
    assert images[1].performer_ids == ["1", "2"]


def test_solo_images_have_only_that_performer(stash_server: StashStandIn) -> None:
    images = run(collect(connect(stash_server).solo_images("1")))
    assert [i.id for i in images] == ["1", "3", "7"]
    assert all(i.performer_ids == ["1"] for i in images)


def test_performers_every_page_with_universal_ids(stash_server: StashStandIn) -> None:
    performers = run(collect(connect(stash_server, page_size=10).performers()))
    assert len(performers) == len(stash_server.fx.performers) == 33
    assert len({p.id for p in performers}) == 33
    alice, bea = performers[0], performers[1]
    assert alice.aliases == ["Ally"] and alice.universal_ids == ["stashdb.org:6f6a-alice"]
    assert bea.universal_ids == ["stash:2"]
    assert bea.image_url == f"{stash_server.url}/performer/2/image"
    assert performers[-1].image_url is None  # Stash's placeholder (?default=true) is no image
    profile = run(connect(stash_server).fetch_bytes(bea.image_url))
    assert profile == (shared_dir() / "testdata" / "faces" / "deepface" / "img13.jpg").read_bytes()


def test_downloads_that_are_not_images_are_refused_clearly(stash_server: StashStandIn) -> None:
    connection = connect(stash_server)
    with pytest.raises(SourceBadContent, match="is not an image"):
        run(connection.fetch_bytes(f"{stash_server.url}/image/90/image"))
    with pytest.raises(SourceNotFound, match="HTTP 404"):
        run(connection.fetch_bytes(f"{stash_server.url}/image/404/image"))
    with pytest.raises(SourceBadContent, match="larger than 1000 bytes"):
        run(connection.fetch_bytes(f"{stash_server.url}/image/1/image", max_bytes=1000))


def test_health_object_is_cached_and_says_when_stash_is_not_configured(
    stash_server: StashStandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    from stash_vision.adapter.stash_health import StashHealth

    monkeypatch.delenv("STASH_VISION_STASH_URL", raising=False)
    assert run(StashHealth(Settings()).status()) == {
        "configured": False,
        "reachable": False,
        "version": None,
        "key_ok": None,
        "error": None,
    }
    health = StashHealth(Settings(stash_url=stash_server.url, stash_api_key=STASH_KEY))

    async def twice() -> list[dict[str, Any]]:
        return [await health.status(), await health.status()]

    before = stash_server.traffic.count("/graphql")
    first, second = run(twice())
    assert first == second and first["version"] == VERSION and first["key_ok"] is True
    assert stash_server.traffic.count("/graphql") - before == 1
