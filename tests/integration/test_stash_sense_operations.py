"""The Stash Sense plugin page, Operations queue and performer buttons on the real stack (adapter ->
gRPC server -> Triton) with the Stash and stash-box stand-ins on the real GraphQL schemas, called as
the plugin's backend calls them (`{sidecar_url}{route}` with sidecar_url = <stack>/stash-sense).

* The identification database is our face index: a version built by a real build-face-index job
  is what /database/info describes; a newer version that is not active makes /database/check-update
  say an update is available.
* The queue is our jobs: a tag-library job submitted from the tab runs on the library folders,
  a second submit is refused (409), cancel, retry with the same parameters, stop, Clear History.
* Create and link performer write to the Stash stand-in, which records the mutations.
Every answer is checked against R1–R3."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import shared_dir, shared_file
from tests.integration.test_jobs import wait_for
from tests.stack import Stack, start_stack
from tests.standins.fixtures import (  # noqa: F401  (module-scoped stand-ins)
    STASH_KEY,
    STASHBOX_KEY,
    stash_server,
    stashbox_server,
)
from tests.standins.stash import StashStandIn
from tests.standins.stashbox import StashBoxStandIn
from tests.unit.test_stash_sense_performers import check_rules

pytestmark = pytest.mark.integration

MODELS = ["open_nsfw", "scrfd_500m", "mobilefacenet"]
PEOPLE = {"alpha": ["img1.jpg", "img2.jpg"], "beta": ["img13.jpg", "img14.jpg"], "gamma": ["img20.jpg"]}
VIDEOS = ["box.mp4", "cup.mp4", "tree.avi", "vtest.avi", "Megamind.avi"]
DANA = "00000000-0000-4000-8000-000000000003"


@dataclass
class Page:
    stack: Stack
    http: httpx.Client  # base URL: the plugin's "Stash Sense API URL"
    stash: StashStandIn
    box: StashBoxStandIn
    library: Path
    faces: Path

    def call(self, method: str, route: str, body: dict[str, Any] | None = None, status: int = 200) -> Any:
        response = self.http.request(method, route, json=body)
        assert response.status_code == status, f"{method} {route}: {response.status_code} {response.text}"
        return check_rules(response)

    def build_index(self, **params: Any) -> dict[str, Any]:
        job = httpx.post(
            f"{self.stack.http}/jobs",
            json={"kind": "build-face-index", "params": {"folder": str(self.faces), **params}},
            timeout=60,
        )
        assert job.status_code == 201, job.text
        return wait_for(self.stack, job.json()["id"], "succeeded", "failed")


@pytest.fixture(scope="module")
def page(
    tmp_path_factory: pytest.TempPathFactory,
    stash_server: StashStandIn,  # noqa: F811
    stashbox_server: StashBoxStandIn,  # noqa: F811
) -> Iterator[Page]:
    work = tmp_path_factory.mktemp("stash-sense-page")
    library = work / "library"
    library.mkdir()
    for name in VIDEOS:
        shutil.copy(shared_file(f"testdata/video/{name}"), library / name)
    faces = work / "faces"
    for person, names in PEOPLE.items():
        (faces / person).mkdir(parents=True)
        for name in names:
            os.symlink(shared_file(f"testdata/faces/deepface/{name}"), faces / person / name)
    boxes = [{"name": "TestBox", "endpoint": f"{stashbox_server.url}/graphql", "api_key": STASHBOX_KEY}]
    stack = start_stack(
        work,
        shared_dir() / "models",
        models=MODELS,
        extra_env={
            "STASH_VISION_STASH_URL": stash_server.url,
            "STASH_VISION_STASH_API_KEY": STASH_KEY,
            "STASH_VISION_STASHBOX_ENDPOINTS": json.dumps(boxes),
            "STASH_VISION_LIBRARY_ROOTS": json.dumps([str(library), str(faces), str(shared_dir())]),
        },
    )
    try:
        with httpx.Client(base_url=f"{stack.http}/stash-sense", timeout=120) as http:
            yield Page(stack, http, stash_server, stashbox_server, library, faces)
    finally:
        stack.stop()


def test_database_routes_describe_our_face_index(page: Page) -> None:
    before = page.call("GET", "/database/info")
    assert before["index_loaded"] is False and before["version"] == "unknown" and before["index_problem"]
    assert page.call("GET", "/database/check-update")["update_available"] is False

    first = page.build_index()
    assert first["state"] == "succeeded", first
    info = page.call("GET", "/database/info")
    assert info["index_loaded"] is True and info["performer_count"] == len(PEOPLE)
    assert info["face_count"] >= 5 and info["profile"] == "default" and info["created_at"]
    version = info["version"]
    check = page.call("GET", "/database/check-update")
    assert check == {
        **check,
        "current_version": version,
        "latest_version": version,
        "update_available": False,
    }
    assert check["error"] is None
    assert page.call("GET", "/recommendations/fingerprints/status")["current_db_version"] == version
    assert page.call("GET", "/capabilities")["capabilities"]["identification"] is True

    newer = page.build_index(activate=False, full=True)
    assert newer["state"] == "succeeded", newer
    check = page.call("GET", "/database/check-update")
    assert check["update_available"] is True and check["current_version"] == version
    assert check["latest_version"] != version and check["error"] is None
    assert page.call("GET", "/database/info")["version"] == version  # still the active one


def test_models_system_and_settings_are_this_services(page: Page) -> None:
    models = page.call("GET", "/models/status")["models"]
    assert set(MODELS) <= set(models)
    assert all(m["status"] == "installed" for m in models.values())
    info = page.call("GET", "/system/info")
    assert info["version"] and info["uptime_seconds"] >= 0
    assert info["hardware"]["tier"] in ("cpu", "gpu") and info["hardware"]["cpu_cores"] >= 1
    settings = page.call("GET", "/settings")
    roots = settings["categories"]["stash"]["settings"]["library_roots"]
    assert roots["is_override"] is True and str(page.library) in roots["value"]
    assert page.call("PUT", "/settings/face_query_k", {"value": 10}, status=409)["detail"]
    endpoints = page.call("GET", "/settings/endpoint-priorities")["endpoints"]
    assert [e["name"] for e in endpoints] == ["TestBox"]
    assert page.call("GET", "/recommendations/counts")["total_pending"] == 0
    assert (
        "not provided by stash-vision"
        in page.call("POST", "/recommendations/actions/merge-performers", {}, 501)["detail"]
    )


def test_queue_round_trip_on_real_jobs(page: Page) -> None:
    kinds = {t["type_id"] for t in page.call("GET", "/queue/types")["types"]}
    assert {"tag-library", "identify-library", "build-face-index"} <= kinds

    first = page.call("POST", "/queue", {"type": "tag-library", "triggered_by": "user"})["job_id"]
    job = httpx.get(f"{page.stack.http}/jobs/{first}", timeout=30).json()
    assert job["kind"] == "tag-library" and job["params"]["roots"][0] == str(page.library)
    assert (
        "already queued or running"
        in page.call("POST", "/queue", {"type": "tag-library"}, status=409)["detail"]
    )
    listed = {j["id"]: j for j in page.call("GET", "/queue")["jobs"]}
    assert listed[first]["status"] in ("queued", "running") and listed[first]["triggered_by"] == "user"
    status = page.call("GET", "/queue/status")
    assert status["queued"] + status["running"] >= 1

    assert page.call("DELETE", f"/queue/{first}") == {"message": "Job cancelled"}
    wait_for(page.stack, first, "cancelled")
    cancelled = page.call("GET", "/queue?status=cancelled")["jobs"]
    assert (
        cancelled[0]["id"] == first
        and cancelled[0]["completed_at"]
        and "Z" not in cancelled[0]["completed_at"]
    )

    second = page.call("POST", f"/queue/{first}/retry")["job_id"]
    assert second != first
    again = httpx.get(f"{page.stack.http}/jobs/{second}", timeout=30).json()
    assert again["params"] == job["params"]
    assert page.call("POST", f"/queue/{second}/stop") == {"message": "Stop requested"}
    wait_for(page.stack, second, "cancelled")

    cleared = page.call("DELETE", "/queue/history")["message"]
    assert cleared.startswith("Cleared") and "keeps" in cleared
    assert {first, second}.isdisjoint(j["id"] for j in page.call("GET", "/queue")["jobs"])
    assert httpx.get(f"{page.stack.http}/jobs/{first}", timeout=30).status_code == 200  # kept


def test_performer_buttons_write_to_stash(page: Page) -> None:
    assert [p["name"] for p in page.call("POST", "/stash/search-performers", {"query": "cor"})] == ["Cora"]
    start = len(page.stash.fx.mutations)
    created = page.call(
        "POST", "/stash/create-performer", {"scene_id": "1", "endpoint": "127.0.0.1", "stashdb_id": DANA}
    )
    assert created["name"] == "Dana" and created["success"] is True
    new_id = created["performer_id"]
    page.call("POST", "/stash/link-performer", {"scene_id": "3", "performer_id": new_id})
    done = page.stash.fx.mutations[start:]
    assert [name for name, _ in done] == ["performerCreate", "sceneUpdate", "sceneUpdate"]
    assert done[0][1]["input"]["stash_ids"] == [{"endpoint": f"{page.box.url}/graphql", "stash_id": DANA}]
    assert page.stash.fx.scenes["1"]["_performers"] == ["1", new_id]
    assert page.stash.fx.scenes["3"]["_performers"][-1] == new_id
    missing = page.call(
        "POST",
        "/stash/create-performer",
        {"scene_id": "1", "endpoint": "nowhere.example", "stashdb_id": DANA},
        status=400,
    )
    assert "Unknown or unconfigured endpoint" in missing["detail"]
