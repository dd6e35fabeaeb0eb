"""The dashboard's login, session cookie and CSRF rules in the adapter's real middleware (FastAPI's
test client; no stash-vision server behind it, so a request that passes the gate gets the
adapter's own 503 or a page that says the server is unreachable, never a 500)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from stash_vision.adapter.app import create_app
from stash_vision.adapter.ui import auth
from stash_vision.settings import Settings

KEY = "s3cret-key"
# Nothing listens on port 1: the server, its metrics and Triton's are all unreachable.
UNREACHABLE = {"server_url": "127.0.0.1:1", "server_metrics_port": 1, "triton_metrics_port": 1}


@pytest.fixture
def client() -> Iterator[TestClient]:
    with TestClient(create_app(Settings(api_key=KEY, **UNREACHABLE)), follow_redirects=False) as test:
        yield test


def log_in(client: TestClient) -> str:
    response = client.post(
        "/ui/login",
        content="key=s3cret-key&next=%2Fui%2Fjobs",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert response.status_code == 303 and response.headers["location"] == "/ui/jobs"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    return auth.csrf_token(KEY, client.cookies[auth.COOKIE])


def test_pages_send_to_login_and_the_api_refuses_without_a_key(client: TestClient) -> None:
    for path in ("/", "/ui/", "/ui/jobs", "/ui/settings"):
        response = client.get(path)
        assert response.status_code == 303 and response.headers["location"].startswith("/ui/login"), path
    assert client.get("/jobs").status_code == 401
    assert client.get("/ui/api/connections").status_code == 401
    assert client.get("/ui/login").status_code == 200
    assert client.get("/ui/static/app.css").status_code == 200
    assert client.get("/health").status_code == 200


def test_a_wrong_key_is_refused_at_login(client: TestClient) -> None:
    response = client.post(
        "/ui/login", content="key=nope", headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert response.status_code == 401 and "not the one" in response.text
    assert auth.COOKIE not in client.cookies


def test_the_session_opens_pages_and_state_changes_need_the_csrf_token(client: TestClient) -> None:
    token = log_in(client)
    page = client.get("/ui/jobs")
    assert page.status_code == 200 and f'content="{token}"' in page.text
    assert 'class="problems"' in page.text and "Connection refused" in page.text  # says so; no 500
    refused = client.post("/jobs", json={"kind": "tag-library", "params": {}})
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    wrong = client.post("/jobs/x/cancel", headers={"X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    passed = client.post("/jobs", json={"kind": "tag-library", "params": {}}, headers={"X-CSRF-Token": token})
    assert passed.status_code == 503  # through the gate; the server behind it is down


def test_the_key_header_needs_no_csrf_token(client: TestClient) -> None:
    response = client.post("/jobs/x/cancel", headers={"X-API-Key": KEY})
    assert response.status_code == 503


def test_a_session_is_bound_to_the_key_and_expires() -> None:
    cookie = auth.new_session(KEY, now=1_000_000)
    assert auth.session_body(KEY, cookie, now=1_000_100) is not None
    assert auth.session_body("another key", cookie, now=1_000_100) is None
    assert auth.session_body(KEY, cookie, now=1_000_000 + auth.SESSION_MAX_AGE_S + 1) is None
    assert auth.session_body(KEY, cookie.replace(".", "x", 1), now=1_000_100) is None


def test_login_only_returns_to_dashboard_pages() -> None:
    assert auth.safe_next("/ui/jobs") == "/ui/jobs"
    for target in ("https://evil.example/", "//evil.example/ui/", "/docs", None):
        assert auth.safe_next(target) == "/ui/"


def test_without_a_key_everything_is_open() -> None:
    with TestClient(create_app(Settings(**UNREACHABLE)), follow_redirects=False) as client:
        assert client.get("/ui/login").status_code == 303
        assert client.post("/jobs/x/cancel").status_code == 503
        overview = client.get("/ui/")
        assert overview.status_code == 200 and "Not ready" in overview.text
        assert overview.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in overview.headers["content-security-policy"]
        assert overview.headers["cache-control"] == "no-store"
