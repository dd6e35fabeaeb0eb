"""The Stash Sense plugin page routes that need no server answer (adapter/routes/stash_sense/
plugin_page.py, settings_page.py): recommendation counts as honest zeros, the 501s of what
stash-vision does not provide, our settings in the A.3.9 shape (read-only: 409 with the variable
to set, 404 for an unknown key), the stash-box endpoints, and a clear 503 for the routes that ask
the server when it is down. The routes that describe the index, models and system run on the real
stack in tests/integration/test_stash_sense_operations.py."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from stash_vision.adapter.app import create_app
from stash_vision.adapter.routes.stash_sense.plugin_page import REC_TYPES
from stash_vision.settings import Settings, StashBoxEndpoint
from tests.standins.fixtures import free_port
from tests.unit.test_stash_sense_performers import check_rules


def requests(settings: Settings, calls: list[tuple[str, str, dict[str, Any] | None]]) -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        app = create_app(settings)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://a/stash-sense") as http:
                return [await http.request(m, p, json=b) for m, p, b in calls]

    return asyncio.run(asyncio.wait_for(main(), 60))


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    monkeypatch.setenv("STASH_VISION_JOBS_RUNNING", "2")
    monkeypatch.setenv("STASH_VISION_STASH_API_KEY", "secret-key")
    box = StashBoxEndpoint(name="StashDB", endpoint="https://stashdb.org/graphql", api_key="box-secret")
    return Settings(
        server_url=f"127.0.0.1:{free_port()}",
        data_dir=tmp_path,
        stashbox_endpoints=[box],
        stash_url="http://s:9999",
    )


def test_recommendation_counts_are_zeros_and_actions_are_501(settings: Settings) -> None:
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/recommendations/counts", None),
        ("GET", "/recommendations?status=pending&limit=100&offset=0", None),
        ("POST", "/recommendations/7/resolve", {"action": "merge"}),
        ("POST", "/recommendations/actions/merge-performers", {}),
        ("POST", "/recommendations/actions/update-performer", {}),
        ("POST", "/recommendations/fingerprints/generate", {"refresh_outdated": True}),
        ("GET", "/recommendations/upstream/field-config/aHR0cHM6Ly9zdGFzaGRiLm9yZy9ncmFwaHFs", None),
        ("POST", "/models/download/facenet", None),
        ("POST", "/database/update", None),
        ("PUT", "/queue/schedules/tag-library", {"enabled": True, "interval_hours": 24}),
        ("GET", "/queue/schedules", None),
        ("GET", "/models/download-progress", None),
    ]
    counts, *refused, schedules, progress = requests(settings, calls)
    assert counts.status_code == 200
    body = check_rules(counts)
    # Every type the dashboard reads (A.3.9), each with the three counts it reads.
    assert body["total_pending"] == 0 and set(body["counts"]) == set(REC_TYPES) and len(REC_TYPES) == 8
    assert all(c == {"pending": 0, "resolved": 0, "dismissed": 0} for c in body["counts"].values())
    for response in refused:
        assert response.status_code == 501, response.request.url
        assert check_rules(response)["detail"].startswith("not provided by stash-vision: ")
    assert (
        "upstream sync" in refused[3].json()["detail"] and "scene fingerprints" in refused[4].json()["detail"]
    )
    assert check_rules(schedules) == {"schedules": []} and check_rules(progress) == {"progress": {}}


def test_settings_describe_this_service_and_are_read_only(settings: Settings) -> None:
    calls: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", "/settings", None),
        ("GET", "/settings/jobs_running", None),
        ("PUT", "/settings/jobs_running", {"value": 3}),
        ("DELETE", "/settings/jobs_running", None),
        ("PUT", "/settings", {"settings": {"face_query_k": 50}}),
        ("PUT", "/settings/num_frames", {"value": 30}),
        ("GET", "/settings/endpoint-priorities", None),
        ("POST", "/settings/endpoint-priorities", {"endpoints": []}),
    ]
    everything, one, put, delete, bulk, unknown, endpoints, reorder = requests(settings, calls)
    body = check_rules(everything)
    assert body["hardware_tier"] == "cpu"  # the server cannot say: no GPU claimed
    categories = body["categories"]
    assert [c["order"] for c in categories.values()] == [1, 2, 3, 4]
    jobs = categories["jobs"]["settings"]
    assert jobs["jobs_running"] == {
        "value": 2,
        "default": 1,
        "is_override": True,  # STASH_VISION_JOBS_RUNNING sets it
        "type": "int",
        "label": "Jobs run at once",
        "description": "Jobs run at once; more wait queued. Set with STASH_VISION_JOBS_RUNNING and restart.",
        "min": 1,
    }
    assert jobs["job_items_in_flight"]["is_override"] is False
    assert jobs["jobs_auto_resume"]["type"] == "bool"
    assert categories["stash"]["settings"]["stash_url"]["value"] == "http://s:9999"
    assert "secret-key" not in everything.text and "box-secret" not in everything.text
    assert check_rules(one)["key"] == "jobs_running"
    for response in (put, delete, bulk):
        assert response.status_code == 409
        assert "and restart" in check_rules(response)["detail"]
    assert "STASH_VISION_JOBS_RUNNING" in put.json()["detail"]
    assert "STASH_VISION_FACE_QUERY_K" in bulk.json()["detail"]
    assert unknown.status_code == 404 and "Unknown setting: num_frames" in check_rules(unknown)["detail"]
    assert check_rules(endpoints) == {
        "endpoints": [
            {
                "endpoint": "https://stashdb.org/graphql",
                "name": "StashDB",
                "domain": "stashdb.org",
                "max_requests_per_minute": 240,
            }
        ],
        "disabled": [],
    }
    assert reorder.status_code == 409 and "STASH_VISION_STASHBOX_ENDPOINTS" in check_rules(reorder)["detail"]


def test_routes_that_ask_the_server_say_it_is_down(settings: Settings) -> None:
    paths = ["/database/info", "/database/check-update", "/models/status", "/capabilities", "/queue/types"]
    for response in requests(settings, [("GET", p, None) for p in paths]):
        assert response.status_code == 503, response.request.url
        assert check_rules(response)["detail"]
    fingerprints, info = requests(
        settings, [("GET", "/recommendations/fingerprints/status", None), ("GET", "/system/info", None)]
    )
    assert check_rules(fingerprints)["current_db_version"] is None  # the page still renders
    hardware = check_rules(info)["hardware"]
    assert (
        hardware["gpu_available"] is False and hardware["cpu_cores"] >= 1 and hardware["memory_total_mb"] > 0
    )
