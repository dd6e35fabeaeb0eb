"""StashBoxConnection against the stash-box stand-in, which executes every query on stash-box's
real schema: performers newest change first across pages, a watermark that fetches only what
changed, images at a size, the per-endpoint budget measured at the server, and clear errors."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest
from PIL import Image

from stash_vision.server.connections import BoxPerformer, SourceAuthFailed, StashBoxConnection
from stash_vision.settings import Settings, StashBoxEndpoint
from tests.standins.fixtures import STASHBOX_KEY, stashbox_server
from tests.standins.stashbox import VERSION, StashBoxStandIn

__all__ = ["stashbox_server"]


def connect(
    server: StashBoxStandIn, key: str = STASHBOX_KEY, per_minute: int = 240, **options: Any
) -> StashBoxConnection:
    config = StashBoxEndpoint(
        name="TestBox", endpoint=f"{server.url}/graphql", api_key=key, max_requests_per_minute=per_minute
    )
    return StashBoxConnection(config, retries=2, **options)


def walk(connection: StashBoxConnection, *args: Any, **kwargs: Any) -> list[BoxPerformer]:
    async def collect(items: AsyncIterator[BoxPerformer]) -> list[BoxPerformer]:
        return [p async for p in items]

    return asyncio.run(collect(connection.performers_updated_since(*args, **kwargs)))


@pytest.fixture(autouse=True)
def clean(stashbox_server: StashBoxStandIn) -> None:
    stashbox_server.faults.clear()


def test_endpoints_come_from_json_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "STASH_VISION_STASHBOX_ENDPOINTS",
        '[{"name": "StashDB", "endpoint": "https://stashdb.org/graphql", "api_key": "k"},'
        ' {"name": "FansDB", "endpoint": "https://fansdb.cc/graphql", "api_key": "f", "max_requests_per_minute": 60}]',
    )
    endpoints = Settings().stashbox_endpoints
    assert [(e.name, e.max_requests_per_minute) for e in endpoints] == [("StashDB", 240), ("FansDB", 60)]
    assert StashBoxConnection(endpoints[0]).domain == "stashdb.org"


def test_status_reports_the_version(stashbox_server: StashBoxStandIn) -> None:
    status = asyncio.run(connect(stashbox_server).status())
    assert status.reachable and status.key_ok and status.version == VERSION


def test_every_performer_newest_change_first_across_pages(stashbox_server: StashBoxStandIn) -> None:
    before = stashbox_server.traffic.count("/graphql")
    performers = walk(connect(stashbox_server), per_page=10)
    assert len(performers) == len(stashbox_server.performers) == 32
    assert stashbox_server.traffic.count("/graphql") - before == 4
    updated = [p.updated for p in performers]
    assert updated == sorted(updated, reverse=True)
    alice = next(p for p in performers if p.name == "Alice")
    assert alice.universal_id == f"127.0.0.1:{alice.id}"
    assert alice.aliases == ["Alice A."] and len(alice.images) == 2 and alice.images[0].width > 0


def test_a_later_build_fetches_only_what_changed(stashbox_server: StashBoxStandIn) -> None:
    connection = connect(stashbox_server)
    watermark = walk(connection, per_page=10)[0].updated
    assert walk(connection, watermark) == []
    bea = next(pid for pid, p in stashbox_server.performers.items() if p["name"] == "Bea")
    stashbox_server.touch(bea, watermark + timedelta(minutes=5))
    before = stashbox_server.traffic.count("/graphql")
    changed = walk(connection, watermark, per_page=10)
    assert [p.name for p in changed] == ["Bea"]
    assert stashbox_server.traffic.count("/graphql") - before == 1


def test_images_are_fetched_at_the_configured_size(stashbox_server: StashBoxStandIn) -> None:
    connection = connect(stashbox_server)
    alice = next(p for p in walk(connection) if p.name == "Alice")
    data = asyncio.run(connection.fetch_image(alice.images[0], "300"))
    with Image.open(io.BytesIO(data)) as image:
        assert max(image.size) <= 300
    assert stashbox_server.image_sizes[-1] == "300"
    with pytest.raises(ValueError, match="image size must be one of 300, 600, 1280, full"):
        connection.image_url(alice.images[0], "64")


def test_a_wrong_key_names_the_endpoint_and_the_setting(stashbox_server: StashBoxStandIn) -> None:
    with pytest.raises(
        SourceAuthFailed, match=r"the API key of TestBox is wrong.*STASH_VISION_STASHBOX_ENDPOINTS"
    ):
        walk(connect(stashbox_server, key="wrong"))


def test_429_during_paging_is_waited_out(stashbox_server: StashBoxStandIn) -> None:
    stashbox_server.fail_next(429, retry_after="0")
    assert len(walk(connect(stashbox_server), per_page=10)) == 32


def test_the_per_endpoint_budget_is_never_exceeded(stashbox_server: StashBoxStandIn) -> None:
    """Two connections to one endpoint share its budget (3 per 1-second window here)."""
    first, second = (connect(stashbox_server, per_minute=3, window_s=1.0) for _ in range(2))
    assert first.client.budget is second.client.budget
    stashbox_server.traffic.arrivals.clear()

    async def both() -> None:
        async def drain(connection: StashBoxConnection) -> None:
            async for _ in connection.performers_updated_since(per_page=10):
                pass

        await asyncio.gather(drain(first), drain(second))

    started = time.monotonic()
    asyncio.run(both())
    assert stashbox_server.traffic.count() == 8
    assert stashbox_server.traffic.max_in_window(1.0) == 3
    assert time.monotonic() - started >= 2.0
