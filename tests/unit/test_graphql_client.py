"""GraphQLClient against a stand-in on Stash's real schema: retries with back-off, 429 with
Retry-After, the request budget measured where it matters (arrivals at the server), and the
messages a person reads for a wrong key, a GraphQL error, an unreachable server and a timeout."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from stash_vision.server.connections import (
    GraphQLClient,
    RateBudget,
    SourceAuthFailed,
    SourceQueryFailed,
    SourceUnreachable,
)
from tests.standins.fixtures import STASH_KEY, free_port, stash_server
from tests.standins.stash import VERSION, StashStandIn

__all__ = ["stash_server"]
VERSION_QUERY = "query { version { version } }"


def client(server: StashStandIn, key: str | None = STASH_KEY, **options: Any) -> GraphQLClient:
    options = {"retries": 3, "backoff_s": 0.05, **options}
    return GraphQLClient(
        "Stash test", f"{server.url}/graphql", key, key_hint="STASH_VISION_STASH_API_KEY", **options
    )


def version(c: GraphQLClient) -> Any:
    return asyncio.run(c.execute(VERSION_QUERY))


@pytest.fixture(autouse=True)
def clean(stash_server: StashStandIn) -> None:
    stash_server.faults.clear()
    stash_server.delay_s = 0.0


def test_a_query_runs_on_the_real_schema(stash_server: StashStandIn) -> None:
    assert version(client(stash_server)) == {"version": {"version": VERSION}}


def test_server_errors_are_retried_with_back_off(stash_server: StashStandIn) -> None:
    stash_server.fail_next(500, count=2)
    before = stash_server.traffic.count()
    started = time.monotonic()
    assert version(client(stash_server, backoff_s=0.1)) == {"version": {"version": VERSION}}
    assert stash_server.traffic.count() - before == 3
    # Back-off doubles: ~0.1 then ~0.2 s (with up to 20 % jitter below).
    assert time.monotonic() - started >= 0.08 + 0.16


def test_429_waits_as_long_as_retry_after_says(stash_server: StashStandIn) -> None:
    stash_server.fail_next(429, retry_after="1")
    started = time.monotonic()
    assert version(client(stash_server, backoff_s=0.01)) == {"version": {"version": VERSION}}
    assert time.monotonic() - started >= 1.0


def test_retry_after_beyond_the_patience_fails_at_once(stash_server: StashStandIn) -> None:
    stash_server.fail_next(429, retry_after="3600")
    with pytest.raises(SourceUnreachable, match=r"Stash test is busy .*asks to wait 3600 s"):
        version(client(stash_server))


def test_retries_give_up_with_a_message_naming_the_server(stash_server: StashStandIn) -> None:
    stash_server.fail_next(503, count=10)
    with pytest.raises(SourceUnreachable, match=r"Stash test is unreachable .*HTTP 503, 3 attempts"):
        version(client(stash_server, retries=2))


def test_wrong_key_is_not_retried_and_says_what_to_set(stash_server: StashStandIn) -> None:
    before = stash_server.traffic.count()
    with pytest.raises(SourceAuthFailed) as caught:
        version(client(stash_server, key="nope"))
    assert "the API key of Stash test is wrong" in str(caught.value)
    assert "STASH_VISION_STASH_API_KEY" in str(caught.value)
    assert stash_server.traffic.count() - before == 1
    with pytest.raises(SourceAuthFailed, match="is required and none is configured"):
        version(client(stash_server, key=None))


def test_graphql_errors_name_the_server_and_the_field(stash_server: StashStandIn) -> None:
    with pytest.raises(
        SourceQueryFailed, match="Stash test answered with a GraphQL error: Cannot query field 'nope'"
    ):
        asyncio.run(client(stash_server).execute("query { version { nope } }"))


def test_a_url_that_is_not_graphql_is_reported(stash_server: StashStandIn) -> None:
    c = GraphQLClient("Stash test", f"{stash_server.url}/scene/1/stream", STASH_KEY, retries=0)
    with pytest.raises(SourceQueryFailed, match="did not answer as a GraphQL server"):
        asyncio.run(c.execute(VERSION_QUERY))


def test_unreachable_server() -> None:
    c = GraphQLClient("StashDB", f"http://127.0.0.1:{free_port()}/graphql", retries=1, backoff_s=0.01)
    with pytest.raises(
        SourceUnreachable,
        match=r"StashDB is unreachable .*ConnectError.*2 attempts.*check that it is running",
    ):
        asyncio.run(c.execute(VERSION_QUERY))


def test_slow_answers_time_out(stash_server: StashStandIn) -> None:
    stash_server.delay_s = 1.0
    with pytest.raises(SourceUnreachable, match=r"no answer within 0.2 s, 2 attempts"):
        version(client(stash_server, timeout_s=0.2, retries=1))


def test_budget_is_never_exceeded_at_the_server(stash_server: StashStandIn) -> None:
    """12 concurrent queries (and a 500 that is retried) through a budget of 5 per second: the
    stand-in sees at most 5 arrivals in any 1-second window."""
    budget = RateBudget(5, window_s=1.0)
    c = client(stash_server, budget=budget)
    stash_server.traffic.arrivals.clear()
    stash_server.fail_next(500)

    async def many() -> None:
        await asyncio.gather(*(c.execute(VERSION_QUERY) for _ in range(12)))

    started = time.monotonic()
    asyncio.run(many())
    assert stash_server.traffic.count() == 13
    assert stash_server.traffic.max_in_window(1.0) == 5
    assert time.monotonic() - started >= 2.0


def test_budget_reserves_exact_slots() -> None:
    now = [100.0]
    budget = RateBudget(2, window_s=10.0, margin_s=0.0, clock=lambda: now[0])
    assert [budget.reserve() for _ in range(5)] == [0.0, 0.0, 10.0, 10.0, 20.0]
    now[0] = 125.0
    assert budget.reserve() == 0.0
