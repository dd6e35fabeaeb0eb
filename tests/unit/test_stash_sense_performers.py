"""The Stash Sense performer buttons (adapter/routes/stash_sense/performers.py over
server/connections/stash_performers.py) against the Stash and stash-box stand-ins on the REAL
GraphQL schemas: every query and mutation is validated by them, and the tests check what the
stand-in recorded and the data it holds afterwards (contract A.3.5–A.3.7, A.4, rules R1–R3)."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from stash_vision.adapter.app import create_app
from stash_vision.server.connections.stash_performers import performer_input
from stash_vision.settings import Settings, StashBoxEndpoint
from tests.standins import stash_performer_writes
from tests.standins.fixtures import (  # noqa: F401  (module-scoped stand-ins)
    STASH_KEY,
    STASHBOX_KEY,
    free_port,
    stash_server,
    stashbox_server,
)
from tests.standins.stash import StashStandIn
from tests.standins.stashbox import StashBoxStandIn

DANA = "00000000-0000-4000-8000-000000000003"  # on the stash-box, not in Stash
EVE = "00000000-0000-4000-8000-000000000004"
UNKNOWN = "00000000-0000-4000-8000-999999999999"


def check_rules(response: httpx.Response) -> Any:
    """R1–R3 of the contract: a failure has a non-empty text `detail`; a success has no truthy
    `error` and no `output` key."""
    body = response.json()
    if response.status_code >= 300:
        assert isinstance(body.get("detail"), str | list) and body["detail"], body
    elif isinstance(body, dict):
        assert not body.get("error") and "output" not in body, body
    return body


def call(settings: Settings, path: str, body: dict[str, Any]) -> httpx.Response:
    async def main() -> httpx.Response:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as http:
                return await http.post(f"/stash-sense{path}", json=body)

    return asyncio.run(asyncio.wait_for(main(), 60))


def settings_for(stash: StashStandIn, box: StashBoxStandIn | None = None, **extra: Any) -> Settings:
    boxes = (
        [StashBoxEndpoint(name="TestBox", endpoint=f"{box.url}/graphql", api_key=STASHBOX_KEY)] if box else []
    )
    return Settings(
        stash_url=stash.url,
        stash_api_key=STASH_KEY,
        stashbox_endpoints=boxes,
        server_url="127.0.0.1:1",
        **extra,
    )


@pytest.fixture(scope="module")
def box(stashbox_server: StashBoxStandIn) -> StashBoxStandIn:  # noqa: F811
    """Dana carries every field A.3.6 maps."""
    stashbox_server.performers[DANA].update(
        disambiguation="the second",
        birth_date="1990-02-03",
        death_date=None,
        ethnicity="MIDDLE_EASTERN",
        eye_color="BROWN",
        hair_color="BLACK",
        height=168,
        cup_size="C",
        band_size=34,
        waist_size=25,
        hip_size=35,
        breast_type="FAKE",
        career_start_year=2012,
        career_end_year=None,
        tattoos=[
            {"location": "left wrist", "description": "star"},
            {"location": "back", "description": None},
        ],
        piercings=[{"location": "navel", "description": ""}],
        urls=[{"url": "https://example.org/dana", "type": "HOME"}, {"url": "https://example.org/dana2"}],
    )
    return stashbox_server


def mutations_since(stash: StashStandIn, start: int) -> list[tuple[str, dict[str, Any]]]:
    return stash.fx.mutations[start:]


# ------------------------------------------------------------------------------------------ search


def test_search_answers_a_bare_array_of_matches_sorted_by_name(stash_server: StashStandIn) -> None:  # noqa: F811
    response = call(settings_for(stash_server), "/stash/search-performers", {"query": "al"})
    body = check_rules(response)
    assert response.status_code == 200
    assert body == [
        {
            "id": "1",
            "name": "Alice",
            "disambiguation": None,
            "alias_list": ["Ally"],
            "image_path": f"{stash_server.url}/performer/1/image",
        }
    ]
    many = check_rules(call(settings_for(stash_server), "/stash/search-performers", {"query": "extra"}))
    assert len(many) == 10 and [p["name"] for p in many] == sorted(p["name"] for p in many)
    assert call(settings_for(stash_server), "/stash/search-performers", {"query": "zzz"}).json() == []


# ------------------------------------------------------------------------------------------ create


def test_create_maps_the_stashbox_performer_and_adds_it_to_the_scene(
    stash_server: StashStandIn,  # noqa: F811
    box: StashBoxStandIn,
) -> None:
    start = len(stash_server.fx.mutations)
    body = {"scene_id": "2", "endpoint": "127.0.0.1", "stashdb_id": DANA}
    response = call(settings_for(stash_server, box), "/stash/create-performer", body)
    created = check_rules(response)
    assert response.status_code == 200, created
    assert created["success"] is True and created["name"] == "Dana" and created["created"] is True
    new_id = created["performer_id"]
    endpoint = f"{box.url}/graphql"
    done = mutations_since(stash_server, start)
    assert [name for name, _ in done] == ["performerCreate", "sceneUpdate"]
    assert done[0][1]["input"] == {
        "name": "Dana",
        "disambiguation": "the second",
        "alias_list": ["Dana A."],
        "gender": "FEMALE",
        "birthdate": "1990-02-03",
        "ethnicity": "Middle Eastern",
        "country": "US",
        "eye_color": "Brown",
        "hair_color": "Black",
        "height_cm": 168,
        "measurements": "34C-25-35",
        "fake_tits": "Augmented",
        "career_length": "2012-",
        "tattoos": "left wrist: star; back",
        "piercings": "navel",
        "image": f"{box.url}/images/000000000003-0",
        "urls": ["https://example.org/dana"],
        "stash_ids": [{"endpoint": endpoint, "stash_id": DANA}],
    }
    # The full list, the scene's own performers first (sceneUpdate replaces it).
    assert done[1][1] == {"input": {"id": "2", "performer_ids": ["1", "3", new_id]}}
    assert stash_server.fx.scenes["2"]["_performers"] == ["1", "3", new_id]
    assert stash_server.fx.performers[new_id]["stash_ids"][0]["stash_id"] == DANA

    again = call(settings_for(stash_server, box), "/stash/create-performer", body)
    assert again.status_code == 200
    assert check_rules(again) == {**created, "created": False, "added_to_scene": False}
    assert len(stash_server.fx.mutations) == start + 2  # nothing written the second time


def test_create_through_a_stashbox_configured_in_stash(
    stash_server: StashStandIn,  # noqa: F811
    box: StashBoxStandIn,
) -> None:
    stash_performer_writes.set_stash_boxes(
        stash_server, [{"endpoint": f"{box.url}/graphql", "api_key": STASHBOX_KEY, "name": "InStash"}]
    )
    try:
        start = len(stash_server.fx.mutations)
        body = {"scene_id": "1", "endpoint": f"{box.url}/graphql", "stashdb_id": EVE}
        response = call(settings_for(stash_server), "/stash/create-performer", body)
        assert response.status_code == 200, response.text
        assert check_rules(response)["name"] == "Eve"
        assert [n for n, _ in mutations_since(stash_server, start)] == ["performerCreate", "sceneUpdate"]
    finally:
        stash_performer_writes.set_stash_boxes(stash_server, [])


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (
            {"scene_id": "1", "endpoint": "fansdb.cc", "stashdb_id": DANA},
            400,
            "Unknown or unconfigured endpoint",
        ),
        (
            {"scene_id": "1", "endpoint": "127.0.0.1", "stashdb_id": UNKNOWN},
            404,
            "Performer not found on StashBox",
        ),
        ({"scene_id": "999", "endpoint": "127.0.0.1", "stashdb_id": DANA}, 404, "has no scene 999"),
        ({"scene_id": " ", "endpoint": "127.0.0.1", "stashdb_id": DANA}, 422, ""),
    ],
)
def test_create_refuses_before_writing_anything(
    stash_server: StashStandIn,  # noqa: F811
    box: StashBoxStandIn,
    body: dict[str, Any],
    status: int,
    words: str,
) -> None:
    start = len(stash_server.fx.mutations)
    response = call(settings_for(stash_server, box), "/stash/create-performer", body)
    detail = check_rules(response)["detail"]
    assert response.status_code == status
    assert words in str(detail)
    assert mutations_since(stash_server, start) == []


def test_performer_input_leaves_out_what_the_stashbox_leaves_empty() -> None:
    raw = {"id": "x", "name": "Solo", "aliases": [], "urls": [], "images": [], "gender": "UNKNOWN"}
    assert performer_input(raw, "https://stashdb.org/graphql") == {
        "name": "Solo",
        "stash_ids": [{"endpoint": "https://stashdb.org/graphql", "stash_id": "x"}],
    }
    bust_only = performer_input({**raw, "band_size": 32, "cup_size": "B", "career_start_year": 2001}, "e")
    assert bust_only["measurements"] == "32B" and bust_only["career_length"] == "2001-"


# ------------------------------------------------------------------------------------------ link


def test_link_adds_the_performer_and_merges_stash_ids(stash_server: StashStandIn) -> None:  # noqa: F811
    start = len(stash_server.fx.mutations)
    stash_id = {"endpoint": "https://stashdb.org/graphql", "stash_id": "bea-uuid"}
    body = {"scene_id": "3", "performer_id": "2", "stash_ids": [stash_id], "update_metadata": True}
    response = call(settings_for(stash_server), "/stash/link-performer", body)
    assert response.status_code == 200, response.text
    assert check_rules(response)["success"] is True
    done = mutations_since(stash_server, start)
    assert done == [
        ("sceneUpdate", {"input": {"id": "3", "performer_ids": ["3", "2"]}}),
        ("performerUpdate", {"input": {"id": "2", "stash_ids": [stash_id]}}),
    ]
    assert stash_server.fx.scenes["3"]["_performers"] == ["3", "2"]
    assert [s["stash_id"] for s in stash_server.fx.performers["2"]["stash_ids"]] == ["bea-uuid"]

    # Again, with the same id written another way: nothing changes.
    start = len(stash_server.fx.mutations)
    same = {**body, "stash_ids": [{"endpoint": "https://stashdb.org/graphql/", "stash_id": "bea-uuid"}]}
    assert call(settings_for(stash_server), "/stash/link-performer", same).status_code == 200
    assert mutations_since(stash_server, start) == []


def test_link_keeps_existing_stash_ids_and_skips_them_without_update_metadata(
    stash_server: StashStandIn,  # noqa: F811
) -> None:
    start = len(stash_server.fx.mutations)
    fansdb = {"endpoint": "https://fansdb.cc/graphql", "stash_id": "alice-fans"}
    plain = {"scene_id": "3", "performer_id": "1", "stash_ids": [fansdb]}
    assert call(settings_for(stash_server), "/stash/link-performer", plain).status_code == 200
    assert [n for n, _ in mutations_since(stash_server, start)] == ["sceneUpdate"]
    start = len(stash_server.fx.mutations)
    merge = {**plain, "update_metadata": True}
    assert call(settings_for(stash_server), "/stash/link-performer", merge).status_code == 200
    ((name, args),) = mutations_since(stash_server, start)
    assert name == "performerUpdate"
    assert [(s["endpoint"], s["stash_id"]) for s in args["input"]["stash_ids"]] == [
        ("https://stashdb.org/graphql", "6f6a-alice"),
        ("https://fansdb.cc/graphql", "alice-fans"),
    ]


def test_link_refuses_an_unknown_performer_or_scene_before_writing(stash_server: StashStandIn) -> None:  # noqa: F811
    start = len(stash_server.fx.mutations)
    for body, words in (
        ({"scene_id": "1", "performer_id": "999"}, "has no performer 999"),
        ({"scene_id": "999", "performer_id": "2"}, "has no scene 999"),
    ):
        response = call(settings_for(stash_server), "/stash/link-performer", body)
        assert response.status_code == 404 and words in check_rules(response)["detail"]
    assert mutations_since(stash_server, start) == []


# ------------------------------------------------------------------------------------------ Stash problems


ROUTES = [
    ("/stash/search-performers", {"query": "al"}),
    ("/stash/create-performer", {"scene_id": "1", "endpoint": "127.0.0.1", "stashdb_id": DANA}),
    ("/stash/link-performer", {"scene_id": "1", "performer_id": "2"}),
]


@pytest.mark.parametrize(("path", "body"), ROUTES)
def test_stash_problems_are_clear_errors(
    stash_server: StashStandIn,  # noqa: F811
    box: StashBoxStandIn,
    path: str,
    body: dict[str, Any],
) -> None:
    response = call(Settings(server_url="127.0.0.1:1"), path, body)
    assert response.status_code == 400 and "STASH_VISION_STASH_URL" in check_rules(response)["detail"]

    down = Settings(stash_url=f"http://127.0.0.1:{free_port()}", server_url="127.0.0.1:1")
    response = call(down, path, body)
    assert response.status_code == 503 and "unreachable" in check_rules(response)["detail"]

    wrong_key = settings_for(stash_server, box).model_copy(update={"stash_api_key": "wrong"})
    response = call(wrong_key, path, body)
    detail = check_rules(response)["detail"]
    assert response.status_code == 502 and "STASH_VISION_STASH_API_KEY" in detail
