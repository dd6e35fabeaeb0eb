"""Every route of the real adapter app refuses a caller without the API key, except an explicit
allow-list. The routes are enumerated from `create_app(...).routes` (API routes of every router,
the dashboard's pages and static files, FastAPI's docs, WebSocket routes), so a route added later
is covered without editing this file; adding it to the allow-list is a visible decision.

No stash-vision server runs behind the app: the key check is the adapter's own middleware, which
answers before any route calls the server. A refused page redirects to the login form; a refused
API call is 401 (403 for a session cookie without its CSRF token)."""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn
from fastapi.routing import APIRoute, APIWebSocketRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Route, WebSocketRoute
from websockets.sync.client import connect

from stash_vision.adapter.app import create_app
from stash_vision.adapter.ui import auth
from stash_vision.settings import Settings, StashBoxEndpoint
from tests.standins.fixtures import free_port

KEY = "s3cret-key"


def guarded_settings() -> Settings:
    # Nothing listens on port 1: the server, its metrics and Triton's are all unreachable.
    return Settings(api_key=KEY, server_url="127.0.0.1:1", server_metrics_port=1, triton_metrics_port=1)


# What anyone may call, and why (docs/security.md).
ALLOWED = {
    ("GET", "/health"): "probe: Stash's and the successor client's health check, Docker HEALTHCHECK",
    ("GET", "/ready"): "probe: the successor client's readiness check",
    ("GET", "/metrics"): "Prometheus scrape (counts and latencies, no content)",
    ("GET", "/ui/login"): "the login form itself",
    ("POST", "/ui/login"): "the login form checks the key itself",
    ("GET", "/ui/static/{name}"): "the dashboard's CSS/JS/icon (public files of the package)",
    # The plugin cannot send a key on its socket: read-only without the key (no names, titles or
    # results; cancel refused), tested in test_security_ws_readonly and test_ai_overhaul.
    ("WEBSOCKET", "/stash-ai/ws/queue"): "read-only without the key",
}


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(create_app(guarded_settings()), follow_redirects=False) as test:
        yield test


def every_route() -> Iterator[tuple[str, str]]:
    """(method, path template) for each route the app serves, included routers flattened."""
    app = create_app(guarded_settings())
    for context in iter_route_contexts(app.routes):
        route, path = context.original_route, str(context.path)
        if isinstance(route, WebSocketRoute | APIWebSocketRoute):
            yield "WEBSOCKET", path
        elif isinstance(route, APIRoute | Route):
            for method in sorted(context.methods or ()):
                if method != "HEAD":
                    yield method, path
        else:
            raise AssertionError(f"a route of an unknown kind, check it is guarded: {route!r}")


def concrete(template: str) -> str:
    return re.sub(r"\{[^}]+\}", "x1", template)


def is_refused(response_status: int, location: str) -> bool:
    return response_status in (401, 403) or (response_status == 303 and location.startswith("/ui/login"))


def test_the_enumeration_sees_every_kind_of_route() -> None:
    routes = set(every_route())
    assert ("GET", "/jobs/{job_id}/events") in routes  # SSE
    assert ("WEBSOCKET", "/stash-ai/ws/queue") in routes
    assert ("GET", "/ui/") in routes and ("GET", "/openapi.json") in routes
    assert ("GET", "/stash-sense/health") in routes and ("GET", "/stash-ai/api/v1/health") in routes
    assert set(ALLOWED) <= routes, "an allow-listed route no longer exists: remove it from ALLOWED"


def test_every_route_outside_the_allow_list_refuses_without_the_key(client: TestClient) -> None:
    open_routes = []
    for method, template in every_route():
        if (method, template) in ALLOWED or method == "WEBSOCKET":
            assert (method, template) in ALLOWED, f"a WebSocket route not in ALLOWED: {template}"
            continue
        for headers in ({}, {"X-API-Key": "wrong"}, {"Authorization": f"Basic {KEY}"}, {"X-API-Key": ""}):
            response = client.request(method, concrete(template), headers=headers, json={})
            if not is_refused(response.status_code, response.headers.get("location", "")):
                open_routes.append(f"{method} {template} {headers}: {response.status_code}")
    assert open_routes == []


def test_every_stash_sense_route_refuses_a_wrong_key_in_the_path(client: TestClient) -> None:
    stash_sense = [(m, t) for m, t in every_route() if t.startswith("/stash-sense/") and m != "WEBSOCKET"]
    assert len(stash_sense) > 10
    for method, template in stash_sense:
        path = "/stash-sense/key/wrong/" + concrete(template).removeprefix("/stash-sense/")
        assert client.request(method, path, json={}).status_code == 401, path


def test_the_key_opens_every_route(client: TestClient) -> None:
    for method, template in every_route():
        if method == "WEBSOCKET" or (method, template) in ALLOWED:
            continue
        for headers in ({"X-API-Key": KEY}, {"Authorization": f"Bearer {KEY}"}):
            response = client.request(method, concrete(template), headers=headers, json={})
            # (POST /ui/logout answers with the login page on purpose: it only ends a session.)
            assert response.status_code not in (401, 403), (
                f"{method} {template}: {response.status_code} {response.text[:200]}"
            )


def test_a_forged_or_non_ascii_cookie_or_csrf_token_is_refused_not_a_500(client: TestClient) -> None:
    for cookie in ("1.2.3", "é.é.é", "x" * 5000, "1.a." + "0" * 64, "9.n.é" + "0" * 63):
        headers = {"Cookie": f"{auth.COOKIE}={cookie}".encode()}
        assert client.get("/jobs", headers=headers).status_code == 401, cookie
        assert client.get("/ui/jobs", headers=headers).status_code == 303, cookie
    good = auth.new_session(KEY)
    client.cookies.set(auth.COOKIE, good)
    try:
        for token in ("wrong", "é" * 64):
            headers = {auth.CSRF_HEADER: token.encode("utf-8")}
            assert client.post("/jobs", json={}, headers=headers).status_code == 403, token
    finally:
        client.cookies.clear()


def test_a_non_ascii_key_header_is_refused_not_a_500(client: TestClient) -> None:
    for value in ("é", "s3cret-kéy", "\u00ff" * 40):
        headers = {"X-API-Key": value.encode("utf-8")}
        assert client.get("/jobs", headers=headers).status_code == 401


@pytest.fixture(scope="module")
def served_port() -> Iterator[int]:
    """The app under a real uvicorn in a thread: WebSockets over a real socket (Starlette's test
    client races the close of a socket whose server side still sends)."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(guarded_settings()), port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(10)


def test_the_queue_socket_without_the_key_is_read_only(served_port: int) -> None:
    for query in ("", "?api_key=wrong", f"?api_key={KEY.upper()}"):
        with connect(f"ws://127.0.0.1:{served_port}/stash-ai/ws/queue{query}", open_timeout=10) as socket:
            assert json.loads(socket.recv(timeout=10))["type"] == "queue_status"
            socket.send(json.dumps({"type": "cancel_job", "job_id": "any-job"}))
            reply = json.loads(socket.recv(timeout=10))
            assert reply["type"] == "cancel_response" and reply["success"] is False
            assert "API key" in reply["message"]


def test_the_key_is_never_logged_nor_shown_in_a_settings_repr(
    client: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client.get("/jobs", headers={"X-API-Key": KEY})
    client.get(f"/stash-sense/key/{KEY}/health")
    client.get("/stash-sense/key/wrong-key-xyz/health")
    client.post(
        "/ui/login", content=f"key={KEY}", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    client.cookies.clear()
    # What the app logs (httpx's own lines are the test client's, which names the URL it asked).
    logged = "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))
    assert KEY not in logged and "wrong-key-xyz" not in logged
    settings = Settings(
        api_key=KEY,
        stash_api_key="stash-key-xyz",
        stashbox_endpoints=[
            StashBoxEndpoint(name="a", endpoint="https://box/graphql", api_key="box-key-xyz")
        ],
    )
    shown = repr(settings) + str(settings)
    assert KEY not in shown and "stash-key-xyz" not in shown and "box-key-xyz" not in shown
