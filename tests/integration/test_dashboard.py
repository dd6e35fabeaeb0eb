"""The dashboard at /ui/ in a real browser (Debian's chromium driven by Playwright) against the real
stack (NudeNet for tagging, SCRFD + MobileFaceNet for faces, real media from ../shared/testdata,
Stash and stash-box stand-ins on their real GraphQL schemas): a tag-library job started from the
form moves live over SSE and is cancelled; a face index built from the form is activated on the
Indexes page and named by the Overview; Try it draws the two faces of couple.jpg, and a video's
tag spans and people on a timeline; Settings masks every secret and tests the connections. Every
page loads without a console error or a failed request and with no serious or critical axe-core
violation. Each flow runs at a desktop and a phone (390×844) size."""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from PIL import Image
from playwright.sync_api import Browser, ConsoleMessage, Page, Request, Response, expect, sync_playwright

from tests.conftest import shared_dir, shared_file
from tests.stack import Stack, start_stack
from tests.standins.fixtures import STASH_KEY, STASHBOX_KEY, stash_schema, stashbox_schema
from tests.standins.stash import VERSION as STASH_VERSION
from tests.standins.stash import Fixtures, StashStandIn
from tests.standins.stashbox import VERSION as BOX_VERSION
from tests.standins.stashbox import StashBoxStandIn

pytestmark = pytest.mark.integration

MODELS = ["nudenet_320n", "scrfd_500m", "mobilefacenet"]
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
PAGES = ["/ui/", "/ui/jobs", "/ui/indexes", "/ui/models", "/ui/try", "/ui/settings"]
# Performers of the index built from the form: photos of ../shared/testdata/faces/deepface.
PEOPLE = {"alpha": ["img1.jpg", "img2.jpg", "img4.jpg"], "beta": ["img13.jpg", "img14.jpg"]}
COUPLE = "testdata/faces/deepface/couple.jpg"
VIDEO = "testdata/video/Megamind.avi"  # 11 s
JOB_TIMEOUT_MS = 300_000


def chromium() -> str:
    """Debian's chromium. In CI, or wherever the shared test data is configured, a missing browser
    fails the run; only a bare developer checkout skips."""
    path = shutil.which("chromium")
    if path is None:
        message = "the dashboard tests need Debian's chromium on PATH (scripts/test installs it with apt-get)"
        if os.environ.get("CI") == "true" or os.environ.get("STASH_VISION_SHARED_DIR"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Watch:
    """What went wrong in a page while it was watched: console errors, uncaught exceptions,
    failed requests and HTTP errors. Closing an SSE stream (the job stopped, or the page was left)
    aborts its request by design: that is not a failure."""

    problems: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.problems.append(f"uncaught: {error}"))
        page.on("requestfailed", self._failed)
        page.on("response", self._response)

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.problems.append(f"console: {message.text}")

    def _failed(self, request: Request) -> None:
        if request.url.endswith("/events") and request.failure == "net::ERR_ABORTED":
            return
        self.problems.append(f"failed: {request.method} {request.url} {request.failure}")

    def _response(self, response: Response) -> None:
        if response.status >= 400:
            self.problems.append(f"HTTP {response.status}: {response.request.method} {response.url}")


def serious_violations(page: Page) -> list[str]:
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in ("serious", "critical")
    ]


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The stack, connected to a Stash stand-in and two stash-box entries on one stand-in: one with
    its key, one with a wrong key (for Settings' connection test)."""
    with (
        StashStandIn(stash_schema(), Fixtures(), api_key=STASH_KEY) as stash,
        StashBoxStandIn(stashbox_schema(), {}, api_key=STASHBOX_KEY) as box,
    ):
        endpoint = f"{box.url}/graphql"
        boxes = [
            {"name": "testbox", "endpoint": endpoint, "api_key": STASHBOX_KEY},
            {"name": "wrongkey", "endpoint": endpoint, "api_key": "not-the-key"},
        ]
        running = start_stack(
            tmp_path_factory.mktemp("dashboard"),
            shared_dir() / "models",
            models=MODELS,
            extra_env={
                "STASH_VISION_STASH_URL": stash.url,
                "STASH_VISION_STASH_API_KEY": STASH_KEY,
                "STASH_VISION_STASHBOX_ENDPOINTS": json.dumps(boxes),
            },
        )
        try:
            yield running
        finally:
            running.stop()


@pytest.fixture(scope="module")
def performers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("dashboard-performers")
    for person, names in PEOPLE.items():
        (folder / person).mkdir()
        for name in names:
            os.symlink(shared_file(f"testdata/faces/deepface/{name}"), folder / person / name)
    return folder


@pytest.fixture(params=list(VIEWPORTS))
def page(request: pytest.FixtureRequest, browser: Browser, stack: Stack) -> Iterator[tuple[Page, Watch]]:
    context = browser.new_context(viewport=VIEWPORTS[request.param], base_url=stack.http)
    opened = context.new_page()
    watch = Watch()
    watch.attach(opened)
    try:
        yield opened, watch
    finally:
        context.close()


def job_count(text: str) -> int:
    match = re.match(r"(\d+)/", text.strip())
    assert match, f"no progress count in {text!r}"
    return int(match.group(1))


def start_job_from_form(page: Page) -> str:
    """Clicks Start and returns the id of the job row the page adds for it."""
    known = page.evaluate("() => [...document.querySelectorAll('tr[data-job]')].map(r => r.dataset.job)")
    page.get_by_role("button", name="Start").click()
    handle = page.wait_for_function(
        "(known) => [...document.querySelectorAll('tr[data-job]')].map(r => r.dataset.job)"
        ".find(id => !known.includes(id))",
        arg=known,
    )
    job_id: str = handle.json_value()
    return job_id


def test_tag_library_job_moves_live_and_is_cancelled(page: tuple[Page, Watch], stack: Stack) -> None:
    browser_page, watch = page
    browser_page.goto("/ui/jobs")
    browser_page.evaluate("window.notReloaded = true")
    browser_page.get_by_role("radio", name="tag-library").check()
    browser_page.get_by_label("Folder to walk (server-side path)").fill(str(shared_dir() / "testdata"))
    job_id = start_job_from_form(browser_page)
    row = browser_page.locator(f'#active-jobs tr[data-job="{job_id}"]')
    expect(row.locator('[data-field="state"]')).to_have_text("running", timeout=JOB_TIMEOUT_MS)
    counts = row.locator('[data-field="counts"]')
    expect(counts).not_to_have_text(re.compile(r"^0/"), timeout=JOB_TIMEOUT_MS)
    first = job_count(counts.inner_text())
    browser_page.wait_for_function(
        f"() => parseInt(document.querySelector('tr[data-job=\"{job_id}\"] [data-field=counts]')"
        f".textContent) > {first}",
        timeout=JOB_TIMEOUT_MS,
    )
    assert browser_page.evaluate("window.notReloaded === true"), "the page reloaded"
    row.get_by_role("button", name="Cancel").click()
    finished = browser_page.locator(f'#finished-jobs tr[data-job="{job_id}"]')
    expect(finished.locator('[data-field="state"]')).to_have_text("cancelled", timeout=30_000)
    done = job_count(finished.locator('[data-field="counts"]').inner_text())
    assert done > first
    job = httpx.get(f"{stack.http}/jobs/{job_id}", timeout=30).json()
    assert job["state"] == "cancelled" and job["progress"]["done"] == done

    finished.get_by_role("link", name="tag-library").click()
    expect(browser_page.locator('[data-field="state"]')).to_have_text("cancelled")
    expect(browser_page.locator('[data-field="counts"]')).to_contain_text(f"{done}/")
    expect(browser_page.locator("#job-log li").last).to_contain_text("cancel", timeout=10_000)
    assert browser_page.locator("#job-summary").inner_text().strip() not in ("", "{}")
    assert not serious_violations(browser_page)
    assert not watch.problems, watch.problems


def test_index_built_and_activated_shows_on_overview(
    page: tuple[Page, Watch], stack: Stack, performers: Path
) -> None:
    browser_page, watch = page
    browser_page.goto("/ui/jobs")
    browser_page.get_by_role("radio", name="build-face-index").check()
    browser_page.get_by_label("Folder of performers").fill(str(performers))
    browser_page.get_by_label("Activate the new version when built").uncheck()
    job_id = start_job_from_form(browser_page)
    row = browser_page.locator(f'#finished-jobs tr[data-job="{job_id}"]')
    expect(row.locator('[data-field="state"]')).to_have_text("succeeded", timeout=JOB_TIMEOUT_MS)
    result = httpx.get(f"{stack.http}/jobs/{job_id}/results", timeout=30).json()["items"][0]["result"]
    version = result["version"]
    assert result["performers"] == len(PEOPLE) and not result["activated"]

    browser_page.goto("/ui/indexes")
    version_row = browser_page.locator(f'tr[data-version="{version}"]')
    version_row.get_by_role("button", name="Activate").click()
    dialog = browser_page.get_by_role("dialog")
    expect(dialog).to_contain_text(version)
    with browser_page.expect_navigation(timeout=60_000):  # the page reloads once it is done
        dialog.get_by_role("button", name="Activate").click()
    browser_page.wait_for_load_state("networkidle")
    expect(browser_page.locator("#active-version")).to_have_text(version)
    assert not serious_violations(browser_page)

    browser_page.get_by_role("link", name="Overview").click()
    expect(browser_page.locator("#active-index")).to_have_text(version)
    assert not watch.problems, watch.problems


def test_try_it_draws_the_two_faces_of_couple(page: tuple[Page, Watch], stack: Stack) -> None:
    browser_page, watch = page
    browser_page.goto("/ui/try")
    browser_page.get_by_label("Drop an image here, or choose one").set_input_files(shared_file(COUPLE))
    canvas = browser_page.locator("#picture")
    expect(canvas).to_have_attribute("data-faces", "2", timeout=120_000)
    expect(browser_page.locator("#faces-caption")).to_contain_text("2 face(s)")
    # NudeNet's face classes, with their confidences.
    expect(browser_page.locator("#tags")).to_contain_text(re.compile(r"Face_AI \d+%"), timeout=60_000)
    width = canvas.evaluate("c => c.width")
    assert width > 0

    browser_page.get_by_label("Video path on the server").fill(str(shared_file(VIDEO)))
    browser_page.get_by_role("button", name="Tag and identify").click()
    timeline = browser_page.locator("#timeline")
    expect(timeline).to_contain_text("Duration 0:11", timeout=180_000)
    expect(timeline).to_contain_text("People")
    assert not timeline.locator(".bad").count(), timeline.inner_text()
    assert not serious_violations(browser_page)
    assert not watch.problems, watch.problems


def test_every_page_loads_clean_and_accessible(page: tuple[Page, Watch]) -> None:
    browser_page, watch = page
    for path in PAGES:
        response = browser_page.goto(path)
        assert response is not None and response.status == 200, path
        browser_page.wait_for_load_state("networkidle")
        violations = serious_violations(browser_page)
        assert not violations, f"{path}: {violations}"
    browser_page.goto("/ui/models")
    served = browser_page.locator('tr[data-model="nudenet_320n"] td').all_inner_texts()
    assert served[-3:] == ["yes", "yes", "yes"], served  # configured, fetched, loaded
    other = browser_page.locator('tr[data-model="arcface"] td').all_inner_texts()
    assert other[-3:] == ["no", "no", "no"], other  # catalogued, not served by the default profile
    browser_page.goto("/ui/settings")
    for secret in (STASH_KEY, STASHBOX_KEY, "not-the-key"):
        assert secret not in browser_page.content(), "a secret is shown"
    # The row whose header is exactly the key's name (STASH_VISION_STASH_API_KEY_FILE is another row).
    key_header = browser_page.get_by_role("rowheader", name="STASH_VISION_STASH_API_KEY", exact=True)
    key_row = browser_page.locator("#config tr").filter(has=key_header)
    expect(key_row.locator("td")).to_have_text("••••••••")
    browser_page.get_by_role("button", name="Test connections").click()
    connections = browser_page.locator("#connections li")
    expect(connections).to_have_count(3)
    expect(connections.nth(0)).to_contain_text(f"reachable, version {STASH_VERSION}, the key works")
    expect(connections.nth(1)).to_contain_text(
        re.compile(rf"testbox \(.*\): reachable, version {re.escape(BOX_VERSION)}, the key works")
    )
    expect(connections.nth(2)).to_have_class("bad")
    expect(connections.nth(2)).to_contain_text("wrongkey")
    browser_page.goto("/")
    assert browser_page.url.endswith("/ui/")
    assert not watch.problems, watch.problems


def test_screenshots_of_every_page(browser: Browser, stack: Stack, tmp_path: Path) -> None:
    """A PNG of each page after the flows above (so jobs, versions and a tried image show). They
    land in STASH_VISION_SCREENSHOTS_DIR when set (docs/screenshots/ was made this way), else in a
    temporary folder: either way every page renders in a real browser."""
    out = Path(os.environ.get("STASH_VISION_SCREENSHOTS_DIR") or tmp_path)
    out.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": 1200, "height": 780}, base_url=stack.http)
    shot = context.new_page()
    try:
        for path in PAGES:
            shot.goto(path)
            shot.wait_for_load_state("networkidle")
            if path == "/ui/settings":
                shot.get_by_role("button", name="Test connections").click()
                expect(shot.locator("#connections li")).to_have_count(3)
            if path == "/ui/try":
                shot.get_by_label("Drop an image here, or choose one").set_input_files(shared_file(COUPLE))
                expect(shot.locator("#picture")).to_have_attribute("data-faces", "2", timeout=120_000)
            name = path.strip("/").removeprefix("ui").strip("/") or "overview"
            shot.screenshot(path=out / f"{name}.png")
        shot.goto("/ui/jobs")
        shot.locator("#finished-jobs tbody th a").last.click()
        shot.wait_for_load_state("networkidle")
        shot.screenshot(path=out / "job.png")
        shot.set_viewport_size({"width": 390, "height": 844})
        shot.goto("/ui/jobs")
        shot.screenshot(path=out / "jobs-phone.png")
    finally:
        context.close()
    for png in out.glob("*.png"):  # 256 colours: a fraction of the size, fine for UI screenshots
        with Image.open(png) as image:
            small = image.convert("RGB").quantize(256)
        small.save(png, optimize=True)
    assert sorted(p.name for p in out.glob("*.png")) == sorted(
        [
            "overview.png",
            "jobs.png",
            "indexes.png",
            "models.png",
            "try.png",
            "settings.png",
            "job.png",
            "jobs-phone.png",
        ]
    )
