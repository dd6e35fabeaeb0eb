"""The dashboard with STASH_VISION_API_KEY set, in a real browser against the real stack: pages
refuse (send to the login form) until the key is given, the session cookie is HttpOnly and
SameSite=Strict, a state-changing request made with the cookie but without the CSRF token is
refused while the same request with the token goes through, callers with the X-API-Key header work
as before, and logging out ends the session."""

from __future__ import annotations

import re
from collections.abc import Iterator

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.conftest import shared_dir
from tests.integration.test_dashboard import Watch, browser, serious_violations
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.integration

__all__ = ["browser"]  # the module-scoped Chromium fixture, shared with test_dashboard
KEY = "dashboard-test-key"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("dashboard-login"),
        shared_dir() / "models",
        models=["open_nsfw"],
        extra_env={"STASH_VISION_API_KEY": KEY},
    )
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 390, "height": 844}, base_url=stack.http)
    try:
        yield context.new_page()
    finally:
        context.close()


def post_without_token(page: Page, url: str) -> int:
    status: int = page.evaluate(
        "async (url) => (await fetch(url, {method: 'POST', credentials: 'same-origin'})).status", url
    )
    return status


def test_pages_refuse_until_login_and_state_changes_need_the_csrf_token(page: Page, stack: Stack) -> None:
    watch = Watch()
    watch.attach(page)
    for path in ("/ui/", "/ui/jobs", "/ui/settings"):
        page.goto(path)
        assert re.search(r"/ui/login\?next=", page.url), f"{path} was served without a login"
        expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert not serious_violations(page)
    assert httpx.get(f"{stack.http}/jobs", timeout=30).status_code == 401

    page.get_by_label("API key").fill("not the key")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("not the one")
    page.get_by_label("API key").fill(KEY)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Settings")).to_be_visible()
    assert page.url.endswith("/ui/settings")
    assert KEY not in page.content(), "the key must never be shown"
    # The wrong key's 401 is the one expected failure.
    watch.problems = [p for p in watch.problems if "401" not in p]
    assert not watch.problems, watch.problems

    (session,) = page.context.cookies()
    assert session["httpOnly"] and session["sameSite"] == "Strict"
    assert page.evaluate("document.cookie") == "", "the session cookie must not be readable by scripts"

    assert post_without_token(page, "/jobs/no-such-job/cancel") == 403
    answer = page.evaluate(
        "async () => { try { await SV.api('POST', '/jobs/no-such-job/cancel'); return 'done'; }"
        " catch (error) { return error.message; } }"
    )
    assert "HTTP 404" in answer, answer  # through the gate with the token: the job is unknown
    assert httpx.get(f"{stack.http}/jobs", headers={"X-API-Key": KEY}, timeout=30).status_code == 200

    page.get_by_role("button", name="Log out").click()
    page.wait_for_url(re.compile(r"/ui/login"))
    page.goto("/ui/jobs")
    assert "/ui/login" in page.url
