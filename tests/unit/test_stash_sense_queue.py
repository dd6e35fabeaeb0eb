"""The Stash Sense Operations tab's queue routes (adapter/routes/stash_sense/queue.py) against a real
grpc.aio JobServicer over the fake `Jobs` of tests/fake_jobs.py: the shapes of A.3.9, the state
mapping, default parameters, one job per kind, cancel / stop / retry / resume, Clear History kept
across a restart, and R1–R3 on every answer. The same routes run on real jobs in
tests/integration/test_stash_sense_operations.py."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx

from stash_vision.adapter.app import create_app
from stash_vision.adapter.routes.stash_sense.queue_view import FILE_NAME, QueueView
from stash_vision.server.jobs.model import JobState
from stash_vision.settings import Settings
from tests.fake_jobs import FakeJobs, job_server, progress
from tests.standins.fixtures import free_port
from tests.unit.test_stash_sense_performers import check_rules

Scenario = Callable[[httpx.AsyncClient], Awaitable[None]]
NAIVE_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?$")


def run(fake: FakeJobs, data_dir: Path, scenario: Scenario, **settings: Any) -> None:
    async def main() -> None:
        async with job_server(fake) as port:
            app = create_app(Settings(server_url=f"127.0.0.1:{port}", data_dir=data_dir, **settings))
            async with app.router.lifespan_context(app):
                transport = httpx.ASGITransport(app=app)
                async with httpx.AsyncClient(transport=transport, base_url="http://a/stash-sense") as http:
                    await scenario(http)

    asyncio.run(asyncio.wait_for(main(), 30))


async def ok(http: httpx.AsyncClient, method: str, path: str, **kwargs: Any) -> Any:
    response = await http.request(method, path, **kwargs)
    assert response.status_code == 200, response.text
    return check_rules(response)


async def fails(http: httpx.AsyncClient, status: int, method: str, path: str, **kwargs: Any) -> str:
    response = await http.request(method, path, **kwargs)
    assert response.status_code == status, response.text
    detail: str = check_rules(response)["detail"]
    return detail


def test_types_are_the_servers_job_kinds(tmp_path: Path) -> None:
    async def scenario(http: httpx.AsyncClient) -> None:
        types = (await ok(http, "GET", "/queue/types"))["types"]
        assert [t["type_id"] for t in types] == ["build-face-index", "identify-library", "tag-library"]
        tag = types[2]
        assert tag["display_name"] == "Tag Library" and tag["resource"] == "cpu"  # no GPU reported
        assert set(tag) == {
            "type_id",
            "display_name",
            "description",
            "resource",
            "default_priority",
            "supports_incremental",
            "schedulable",
            "default_interval_hours",
            "allowed_intervals",
        }

    run(FakeJobs(), tmp_path, scenario)


def test_submit_list_cancel_retry_round_trip(tmp_path: Path) -> None:
    fake = FakeJobs()

    async def scenario(http: httpx.AsyncClient) -> None:
        submitted = await ok(http, "POST", "/queue", json={"type": "tag-library", "triggered_by": "user"})
        assert submitted == {"job_id": "job-1", "message": "Job queued: tag-library"}
        assert fake.jobs["job-1"].params == {"roots": ["/library"]}  # STASH_VISION_LIBRARY_ROOTS
        detail = await fails(http, 409, "POST", "/queue", json={"type": "tag-library"})
        assert "already queued or running" in detail

        (job,) = (await ok(http, "GET", "/queue"))["jobs"]
        assert job["id"] == "job-1" and job["type"] == "tag-library" and job["status"] == "queued"
        assert job["triggered_by"] == "user" and job["error_message"] is None
        assert NAIVE_ISO.match(job["created_at"]) and job["started_at"] is None
        assert await ok(http, "GET", "/queue/status") == {"queued": 1, "running": 0, "running_jobs": []}

        assert await ok(http, "DELETE", "/queue/job-1") == {"message": "Job cancelled"}
        assert (await ok(http, "GET", "/queue", params={"status": "cancelled"}))["jobs"][0]["id"] == "job-1"
        assert (await ok(http, "GET", "/queue", params={"status": "queued"}))["jobs"] == []
        assert "cannot cancel" in await fails(http, 409, "DELETE", "/queue/job-1")

        retried = await ok(http, "POST", "/queue/job-1/retry")
        assert retried == {"job_id": "job-2", "message": "Job re-queued"}
        assert fake.jobs["job-2"].params == fake.jobs["job-1"].params
        assert "Can only retry failed or cancelled" in await fails(http, 409, "POST", "/queue/job-2/retry")
        assert await ok(http, "POST", "/queue/job-2/stop") == {"message": "Stop requested"}
        assert fake.jobs["job-2"].state is JobState.CANCELLED
        assert "no job" in await fails(http, 404, "DELETE", "/queue/nope")

    run(fake, tmp_path, scenario, library_roots=["/library"])


def test_submit_repeats_the_last_jobs_parameters(tmp_path: Path) -> None:
    fake = FakeJobs()
    fake.add("build-face-index", JobState.SUCCEEDED, params={"sources": [{"kind": "folder", "path": "/p"}]})

    async def scenario(http: httpx.AsyncClient) -> None:
        await ok(http, "POST", "/queue", json={"type": "build-face-index"})
        assert fake.jobs["job-2"].params == {"sources": [{"kind": "folder", "path": "/p"}]}
        assert "Unknown job type: nope" in await fails(http, 400, "POST", "/queue", json={"type": "nope"})
        assert await fails(http, 422, "POST", "/queue", json={})

    run(fake, tmp_path, scenario)


def test_states_map_to_the_plugins_words_and_retry_resumes(tmp_path: Path) -> None:
    fake = FakeJobs()
    running = fake.add("tag-library", JobState.RUNNING, started_at=1_700_000_050.5, progress=progress(3, 10))
    done = fake.add("identify-library", JobState.SUCCEEDED, finished_at=1_700_000_090.0)
    failed = fake.add("identify-library", JobState.FAILED, error="disk full")
    paused = fake.add("build-face-index", JobState.PAUSED)
    interrupted = fake.add("identify-library", JobState.INTERRUPTED)

    async def scenario(http: httpx.AsyncClient) -> None:
        jobs = {j["id"]: j for j in (await ok(http, "GET", "/queue"))["jobs"]}
        assert {i: j["status"] for i, j in jobs.items()} == {
            running.id: "running",
            done.id: "completed",
            failed.id: "failed",
            paused.id: "cancelled",
            interrupted.id: "failed",
        }
        assert jobs[running.id]["items_processed"] == 3 and jobs[running.id]["items_total"] == 10
        assert jobs[running.id]["started_at"] == "2023-11-14T22:14:10.500000"
        assert jobs[done.id]["completed_at"] == "2023-11-14T22:14:50"
        assert jobs[failed.id]["error_message"] == "disk full"
        assert "Retry resumes" in jobs[paused.id]["error_message"] and jobs[paused.id]["state"] == "paused"
        status = await ok(http, "GET", "/queue/status")
        assert status["running"] == 1 and status["running_jobs"][0]["id"] == running.id

        assert (await ok(http, "POST", f"/queue/{paused.id}/retry"))["message"] == "Job resumed"
        assert fake.jobs[paused.id].state is JobState.QUEUED  # the same job, its work kept
        # One identify-library job at a time: the interrupted one cannot resume while another waits.
        await ok(http, "POST", "/queue", json={"type": "identify-library"})
        assert "already queued" in await fails(http, 409, "POST", f"/queue/{interrupted.id}/retry")
        assert "unknown status" in await fails(http, 400, "GET", "/queue", params={"status": "bogus"})

    run(fake, tmp_path, scenario)


def test_clear_history_hides_finished_jobs_and_survives_a_restart(tmp_path: Path) -> None:
    fake = FakeJobs()
    fake.add("tag-library", JobState.SUCCEEDED, finished_at=1_700_000_090.0, updated_at=1_700_000_090.0)
    fake.add("tag-library", JobState.CANCELLED, finished_at=1_700_000_091.0, updated_at=1_700_000_091.0)
    active = fake.add("identify-library", JobState.QUEUED)

    async def clear(http: httpx.AsyncClient) -> None:
        cleared = await ok(http, "DELETE", "/queue/history")
        assert (
            cleared["message"].startswith("Cleared 2 job(s) from history") and "keeps" in cleared["message"]
        )
        assert [j["id"] for j in (await ok(http, "GET", "/queue"))["jobs"]] == [active.id]
        assert len(fake.jobs) == 3  # nothing deleted

    run(fake, tmp_path, clear)
    assert QueueView(tmp_path / FILE_NAME).history_cleared_at > 0

    async def after_restart(http: httpx.AsyncClient) -> None:
        assert [j["id"] for j in (await ok(http, "GET", "/queue"))["jobs"]] == [active.id]

    run(fake, tmp_path, after_restart)


def test_server_down_is_a_clear_503(tmp_path: Path) -> None:
    async def main() -> None:
        app = create_app(Settings(server_url=f"127.0.0.1:{free_port()}", data_dir=tmp_path))
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://a/stash-sense") as http:
                for method, path in (("GET", "/queue"), ("GET", "/queue/status"), ("POST", "/queue/x/retry")):
                    assert await fails(http, 503, method, path)

    asyncio.run(asyncio.wait_for(main(), 60))
