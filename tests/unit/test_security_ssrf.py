"""No SSRF: a URL in an answer is fetched only when it is on the configured Stash or stash-box
(scheme, host and port; a stash-box's subdomains too, where it serves images), redirects
included. The Stash and stash-box stand-ins run the real GraphQL schemas and answer with URLs on a
canary server (another port of the same host, i.e. another origin) and on the cloud metadata
address; the canary counts what reaches it, which must be nothing."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import pytest

from stash_vision.server.connections import SourceBadContent, StashConnection
from stash_vision.server.connections.graphql import GraphQLClient
from stash_vision.server.connections.stashbox import StashBoxConnection
from stash_vision.server.media.paths import MediaPaths
from stash_vision.settings import StashBoxEndpoint
from tests.conftest import shared_dir
from tests.standins.fixtures import STASH_KEY, STASHBOX_KEY, stash_schema, stashbox_schema
from tests.standins.stash import StashStandIn, default_fixtures, make_zip
from tests.standins.stashbox import StashBoxStandIn, default_performers

T = TypeVar("T")
METADATA = "http://169.254.169.254/latest/meta-data/iam"


class Canary:
    """An HTTP server on another port that records every GET. It answers 200 with a few image
    bytes, or, given `redirect_to`, a 302 there (the configured server itself, redirecting away)."""

    def __init__(self, redirect_to: str | None = None) -> None:
        self.hits: list[str] = []
        canary = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                canary.hits.append(self.path)
                self.send_response(302 if redirect_to else 200)
                if redirect_to:
                    self.send_header("Location", redirect_to)
                else:
                    self.send_header("Content-Type", "image/jpeg")
                self.end_headers()
                if not redirect_to:
                    self.wfile.write(b"\xff\xd8\xff")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class ForeignStash(StashStandIn):
    """Stash (real schema) whose answers point at another server: streams, screenshots, images."""

    foreign = ""

    def _scene_paths(self, obj: dict[str, Any], info: Any) -> dict[str, Any]:
        return {
            "stream": f"{self.foreign}/scene/{obj['id']}/stream",
            "screenshot": METADATA,
            "sprite": None,
            "vtt": None,
        }

    def _performer_image(self, obj: dict[str, Any], info: Any) -> str:
        return f"{self.foreign}/performer/{obj['id']}/image"


class ForeignBox(StashBoxStandIn):
    """stash-box (real schema) whose performers' images live on another server."""

    foreign = ""

    def _images(self, obj: dict[str, Any], info: Any) -> list[dict[str, Any]]:
        return [
            {"id": image_id, "url": f"{self.foreign}/images/{image_id}", "width": 10, "height": 10}
            for image_id, _ in obj["_images"]
        ]


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


@pytest.fixture(scope="module")
def canary() -> Iterator[Canary]:
    server = Canary()
    yield server
    server.close()


@pytest.fixture(scope="module")
def foreign_stash(canary: Canary, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ForeignStash]:
    testdata = shared_dir() / "testdata"
    fixtures = default_fixtures(testdata, make_zip(testdata, tmp_path_factory.mktemp("zip")))
    ForeignStash.foreign = canary.url
    server = ForeignStash(stash_schema(), fixtures, api_key=STASH_KEY)
    with server:
        yield server


@pytest.fixture(scope="module")
def foreign_box(canary: Canary) -> Iterator[ForeignBox]:
    ForeignBox.foreign = canary.url
    server = ForeignBox(stashbox_schema(), default_performers(shared_dir() / "testdata"), STASHBOX_KEY)
    with server:
        yield server


def test_stash_answers_pointing_elsewhere_are_refused_unsent(
    foreign_stash: ForeignStash, canary: Canary
) -> None:
    # Nothing maps Stash's paths here: every scene and image goes through Stash's URLs.
    connection = StashConnection(foreign_stash.url, STASH_KEY, MediaPaths([Path("/nowhere")], {}), retries=0)

    async def main() -> list[str]:
        errors = []
        scene = await connection.find_scene("3")
        for attempt in (
            lambda: asyncio.sleep(0, connection.locate_scene(scene)),
            lambda: connection.fetch_bytes(scene.screenshot_url or ""),
        ):
            with pytest.raises(SourceBadContent) as refused:
                await attempt()
            errors.append(str(refused.value))
        performers = [p async for p in connection.performers()]
        with_image = next(p for p in performers if p.image_url)
        with pytest.raises(SourceBadContent) as refused:
            await connection.fetch_bytes(with_image.image_url or "")
        errors.append(str(refused.value))
        await connection.aclose()
        return errors

    errors = run(main())
    assert canary.hits == []
    assert all("answered a URL on another server" in e and foreign_stash.url in e for e in errors)
    assert "169.254.169.254:80" in errors[1] and "meta-data" not in errors[1]  # origin only, no path


def test_stashbox_image_urls_pointing_elsewhere_are_refused_unsent(
    foreign_box: ForeignBox, canary: Canary
) -> None:
    config = StashBoxEndpoint(name="TestBox", endpoint=f"{foreign_box.url}/graphql", api_key=STASHBOX_KEY)
    connection = StashBoxConnection(config, retries=0)

    async def main() -> str:
        performers = [p async for p in connection.performers_updated_since(per_page=10)]
        performer = next(p for p in performers if p.images)
        with pytest.raises(SourceBadContent) as refused:
            await connection.fetch_image(performer.images[0])
        await connection.aclose()
        return str(refused.value)

    assert "answered a URL on another server" in run(main())
    assert canary.hits == []


def test_a_redirect_off_the_server_is_not_followed(canary: Canary) -> None:
    redirector = Canary(redirect_to=f"{canary.url}/stolen")
    try:
        client = GraphQLClient("Stash at test", f"{redirector.url}/graphql", "key", retries=0)

        async def main() -> None:
            with pytest.raises(SourceBadContent):
                await client.download(f"{redirector.url}/image/1", max_bytes=1000)
            await client.aclose()

        run(main())
        assert redirector.hits == ["/image/1"] and canary.hits == []
    finally:
        redirector.close()


def test_which_urls_belong_to_an_endpoint() -> None:
    stash = GraphQLClient("Stash", "http://stash.lan:9999/graphql")
    box = GraphQLClient("StashDB", "https://stashdb.org/graphql", subdomains=True)
    assert stash.fetchable("http://stash.lan:9999/scene/1/stream?apikey=x")
    assert stash.fetchable("http://STASH.lan:9999/image/1/image")
    assert box.fetchable("https://stashdb.org/images/ab") and box.fetchable(
        "https://cdn.stashdb.org/images/ab"
    )
    assert box.fetchable("https://cdn.stashdb.org:443/images/ab")
    for url in (
        "http://stash.lan/scene/1/stream",  # port 80, not 9999
        "https://stash.lan:9999/x",
        "http://stash.lan.evil.example:9999/x",
        "http://evil@169.254.169.254:9999/x",
        "http://169.254.169.254/latest/meta-data",
        "http://sub.stash.lan:9999/x",  # Stash: no subdomains
        "file:///etc/passwd",
        "gopher://stash.lan:9999/x",
        "http://stash.lan:99999/x",
        "/relative/path",
        "",
    ):
        assert not stash.fetchable(url), url
    for url in (
        "http://cdn.stashdb.org/images/ab",
        "https://evilstashdb.org/x",
        "https://stashdb.org.evil.example/x",
        "https://cdn.stashdb.org:8443/x",
    ):
        assert not box.fetchable(url), url
