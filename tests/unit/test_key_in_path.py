"""The API key in the Stash Sense URL (adapter/key_in_path.py): the plugin cannot send a header,
so `/stash-sense/key/<key>/<route>` carries it; the one key check then applies as for everyone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from stash_vision.adapter.app import create_app
from stash_vision.settings import Settings
from tests.standins.fixtures import free_port


def statuses(tmp_path: Path, paths: list[str]) -> list[int]:
    settings = Settings(server_url=f"127.0.0.1:{free_port()}", data_dir=tmp_path, api_key="s3cret/key")

    async def main() -> list[int]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://a") as http:
                return [(await http.get(p)).status_code for p in paths]

    return asyncio.run(asyncio.wait_for(main(), 60))


def test_the_key_in_the_path_opens_the_stash_sense_routes_and_only_the_right_key(tmp_path: Path) -> None:
    assert statuses(
        tmp_path,
        [
            "/stash-sense/recommendations/counts",  # no key
            "/stash-sense/key/s3cret%2Fkey/recommendations/counts",  # the key, URL-encoded
            "/stash-sense/key/wrong/recommendations/counts",
            "/stash-sense/key/s3cret%2Fkey/",  # the key alone opens nothing but the mount
        ],
    ) == [401, 200, 401, 404]
