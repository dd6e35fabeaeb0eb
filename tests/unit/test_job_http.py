"""Unit tests of the adapter's /jobs routes (adapter/routes/jobs.py) against a real grpc.aio
server running JobServicer over the fake `Jobs` of tests/fake_jobs.py: status codes, JSON shapes,
body and query validation, Server-Sent Events parsed event by event, and a client that disconnects
stopping the gRPC watch.

Each test runs its own server on a free loopback port and the adapter app (with its lifespan)
inside asyncio.run, called through httpx's ASGI transport, or as a raw ASGI app where the test
must read a stream while it is still open (httpx's transport buffers the whole body)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from stash_vision.adapter.app import create_app
from stash_vision.adapter.routes import jobs as job_routes
from stash_vision.server.errors import JobsUnavailable, StorageUnavailable
from stash_vision.server.jobs.model import ItemRecord, ItemState, JobState
from stash_vision.settings import Settings
from tests.fake_jobs import FakeJobs, Step, full_job, job_server, progress

TEST_TIMEOUT_S = 20.0
HttpScenario = Callable[[httpx.AsyncClient], Awaitable[None]]


@asynccontextmanager
async def adapter(fake: FakeJobs) -> AsyncIterator[FastAPI]:
    async with job_server(fake) as port:
        app = create_app(Settings(server_url=f"127.0.0.1:{port}", api_key=None))
        async with app.router.lifespan_context(app):
            yield app


def run_http(fake: FakeJobs, scenario: HttpScenario) -> None:
    async def main() -> None:
        async with adapter(fake) as app:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as http:
                await scenario(http)

    asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT_S))


def request(fake: FakeJobs, method: str, path: str, **kwargs: Any) -> httpx.Response:
    responses: list[httpx.Response] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        responses.append(await http.request(method, path, **kwargs))

    run_http(fake, scenario)
    return responses[0]


def test_post_jobs_returns_201_and_the_job_json() -> None:
    fake = FakeJobs()
    body = {
        "kind": "tag-library",
        "params": {"roots": ["/media"], "write_sidecars": True, "frame_interval": 2},
    }
    response = request(fake, "POST", "/jobs", json=body)
    assert response.status_code == 201
    assert response.json() == {
        "id": "job-1",
        "kind": "tag-library",
        "params": body["params"],
        "state": "queued",
        "created_at": fake.jobs["job-1"].created_at,
        "started_at": None,
        "finished_at": None,
        "updated_at": 0.0,
        "progress": {
            "done": 0,
            "failed": 0,
            "total": 0,
            "unit": "items",
            "listing_complete": False,
            "rate": 0.0,
            "eta_seconds": None,
        },
        "message": "",
        "error": "",
        "summary": {},
    }
    assert fake.calls == [("submit", ("tag-library", body["params"]))]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"kind": "paint-library", "params": {}}, 400, "unknown job kind 'paint-library'"),
        ({"params": {}}, 422, "kind"),
        ({"kind": "", "params": {}}, 422, "kind"),
        ({"kind": 3}, 422, "kind"),
        ({"kind": "tag-library", "params": ["/media"]}, 422, "params"),
        ({"kind": "tag-library", "root": "/media"}, 422, "root"),
    ],
)
def test_post_jobs_validates_the_body(body: dict[str, Any], status: int, detail: str) -> None:
    response = request(FakeJobs(), "POST", "/jobs", json=body)
    assert response.status_code == status
    assert detail in json.dumps(response.json()["detail"])


@pytest.mark.parametrize(
    ("failure", "status"),
    [(JobsUnavailable("another process holds the job lock"), 503), (StorageUnavailable("disk full"), 503)],
)
def test_unavailable_jobs_are_503(failure: Exception, status: int) -> None:
    fake = FakeJobs()
    fake.fail_with = failure
    response = request(fake, "POST", "/jobs", json={"kind": "tag-library"})
    assert (response.status_code, response.json()) == (status, {"detail": str(failure)})


def test_get_jobs_filters_and_pages() -> None:
    fake = FakeJobs()
    for state in (JobState.RUNNING, JobState.QUEUED, JobState.SUCCEEDED):
        fake.add("tag-library", state)
    bodies: list[Any] = []

    async def scenario(http: httpx.AsyncClient) -> None:
        page = await http.get(
            "/jobs", params={"state": ["running,queued"], "kind": "tag-library", "page_size": 1}
        )
        assert page.status_code == 200
        bodies.append(page.json())
        page = await http.get("/jobs", params={"state": "running", "page_token": "1"})
        bodies.append(page.json())
        bad = await http.get("/jobs", params={"state": "sleeping"})
        assert bad.status_code == 400 and "unknown job state 'sleeping'" in bad.json()["detail"]
        assert (await http.get("/jobs", params={"page_size": 0})).status_code == 422
        kinds = await http.get("/jobs/kinds")
        assert kinds.json() == {"kinds": ["build-face-index", "identify-library", "tag-library"]}

    run_http(fake, scenario)
    assert [j["id"] for j in bodies[0]["jobs"]] == ["job-2"] and bodies[0]["next_page_token"] == "1"
    assert bodies[1] == {"jobs": [], "next_page_token": ""}
    listed = [args for method, args in fake.calls if method == "list"]
    assert listed[0] == ([JobState.RUNNING, JobState.QUEUED], ["tag-library"], 1, "")


def test_get_job_and_its_errors() -> None:
    fake = FakeJobs()
    job_id = full_job(fake)
    found = request(fake, "GET", f"/jobs/{job_id}")
    assert found.status_code == 200
    assert found.json() == json.loads(json.dumps(dataclasses.asdict(fake.jobs[job_id])))
    assert found.json()["params"]["batch"] == 8 and found.json()["progress"]["eta_seconds"] == 0.0
    missing = request(fake, "GET", "/jobs/nope")
    assert (missing.status_code, missing.json()) == (404, {"detail": "no job 'nope'"})


@pytest.mark.parametrize(
    ("action", "state", "status", "after"),
    [
        ("cancel", JobState.RUNNING, 200, "cancelled"),
        ("pause", JobState.RUNNING, 200, "paused"),
        ("resume", JobState.INTERRUPTED, 200, "queued"),
        ("cancel", JobState.SUCCEEDED, 409, None),
        ("pause", JobState.PAUSED, 409, None),
        ("resume", JobState.RUNNING, 409, None),
    ],
)
def test_actions_return_the_job_or_409(action: str, state: JobState, status: int, after: str | None) -> None:
    fake = FakeJobs()
    job_id = fake.add(state=state).id
    response = request(fake, "POST", f"/jobs/{job_id}/{action}")
    assert response.status_code == status
    if after is not None:
        assert response.json()["state"] == after and response.json()["id"] == job_id
    else:
        assert response.json() == {"detail": f"cannot {action} job {job_id}: it is {state}"}
    assert request(fake, "POST", f"/jobs/nope/{action}").status_code == 404
    assert request(fake, "POST", f"/jobs/{job_id}/explode").status_code == 422


def test_results_route_shape() -> None:
    fake = FakeJobs()
    job_id = fake.add().id
    fake.items[job_id] = [
        ItemRecord(job_id, 1, "/a.jpg", ItemState.DONE, result={"n": 1}, result_key="k", finished_at=9.5),
        ItemRecord(job_id, 2, "/b.jpg", ItemState.FAILED, error="gone", error_kind="MediaNotFound"),
    ]
    response = request(fake, "GET", f"/jobs/{job_id}/results", params={"page_size": 1})
    assert response.status_code == 200
    assert response.json() == {
        "items": [
            {
                "job_id": job_id,
                "seq": 1,
                "item": "/a.jpg",
                "state": "done",
                "error": "",
                "error_kind": "",
                "result": {"n": 1},
                "result_key": "k",
                "finished_at": 9.5,
            }
        ],
        "next_page_token": "1",
    }
    assert request(fake, "GET", "/jobs/nope/results").status_code == 404


# ------------------------------------------------------------------------------------------ SSE


def parse_sse(text: str) -> list[tuple[str, Any]]:
    """(event, data) per event; comments (keepalives) are skipped."""
    events = []
    for block in text.split("\n\n"):
        lines = [line for line in block.split("\n") if line and not line.startswith(":")]
        if not lines:
            continue
        fields = dict(line.split(": ", 1) for line in lines)
        assert set(fields) == {"event", "data"}, block
        events.append((fields["event"], json.loads(fields["data"])))
    return events


def test_events_stream_logs_then_job_until_the_job_ends() -> None:
    fake = FakeJobs()
    job_id = fake.add(state=JobState.QUEUED).id
    fake.log(job_id, "queued behind job-0")
    fake.scripts[job_id] = [
        Step({"state": JobState.RUNNING, "progress": progress(1, 2)}, ("started", "a.mp4 done")),
        Step({"state": JobState.SUCCEEDED, "progress": progress(2, 2, listing_complete=True)}),
    ]
    response = request(fake, "GET", f"/jobs/{job_id}/events")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    events = parse_sse(response.text)
    assert [(name, data.get("state") or data["message"]) for name, data in events] == [
        ("log", "queued behind job-0"),
        ("job", "queued"),
        ("log", "started"),
        ("log", "a.mp4 done"),
        ("job", "running"),
        ("job", "succeeded"),
    ]
    assert events[0][1] == {
        "job_id": job_id,
        "seq": 1,
        "at": 1_700_000_100.0,
        "level": "info",
        "message": "queued behind job-0",
    }
    assert events[-1][1]["progress"]["listing_complete"] is True
    assert fake.subscribers[job_id] == []


def test_events_of_an_unknown_job_are_a_plain_404() -> None:
    response = request(FakeJobs(), "GET", "/jobs/nope/events")
    assert (response.status_code, response.json()) == (404, {"detail": "no job 'nope'"})


def test_events_report_a_watch_that_fails_midway() -> None:
    fake = FakeJobs()
    job_id = fake.add(state=JobState.RUNNING).id
    fake.scripts[job_id] = [Step({}, error=StorageUnavailable("job database is locked"))]
    events = parse_sse(request(fake, "GET", f"/jobs/{job_id}/events").text)
    assert events[-1] == ("error", {"status": 503, "detail": "job database is locked"})


async def _open_stream(app: FastAPI, path: str, spec: str, until: Callable[[str], bool]) -> str:
    """Drives the app as an ASGI server would, reads the body until `until(body so far)`, then
    disconnects like a client closing the connection. Returns the body read."""
    body: list[str] = []
    leave = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await leave.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.body":
            body.append(message.get("body", b"").decode())
            if until("".join(body)):
                leave.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": spec},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"adapter")],
        "client": ("127.0.0.1", 40000),
        "server": ("adapter", 80),
    }
    await app(scope, receive, send)
    return "".join(body)


# 2.4: Starlette leaves disconnects to the route; 2.3: Starlette also listens and cancels the body.
@pytest.mark.parametrize("spec", ["2.4", "2.3"])
def test_a_client_that_disconnects_stops_the_watch(monkeypatch: pytest.MonkeyPatch, spec: str) -> None:
    monkeypatch.setattr(job_routes, "KEEPALIVE_S", 0.05)
    fake = FakeJobs()
    job_id = fake.add(state=JobState.RUNNING).id  # never changes: only keepalives follow

    async def main() -> str:
        async with adapter(fake) as app:
            body = await _open_stream(app, f"/jobs/{job_id}/events", spec, lambda text: ": keepalive" in text)
            await asyncio.wait_for(fake.watch_closed.wait(), 5)
            return body

    body = asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT_S))
    assert [name for name, _ in parse_sse(body)] == ["job"]
    assert fake.subscribers[job_id] == []
