"""The dashboard escapes everything it renders, in the real Chromium against the real stack: a face
index whose performers are named `<script>alert(…)</script>` and `"><img src=x onerror=alert(…)>`,
a tag-library job over files with such names (one tagged, one that fails, so it is listed under
Errors), every page (overview, jobs, both job pages, indexes, models, settings) and Try it, which
draws and lists the performer's name. Nothing executes: no dialog opens, no uncaught error, no
element the payloads would create exists, and the payloads show as text."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright

from tests.conftest import shared_dir, shared_file
from tests.integration.test_dashboard import MODELS, chromium
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.integration

SCRIPT_NAME = "<script>alert(1)</script>"
IMG_NAME = '"><img src=x onerror=alert(2)>'
GOOD_FILE = '"><img src=x onerror=alert(3)>.jpg'
BAD_FILE = "<svg onload=alert(4)>bad.jpg"
ALIAS = "<iframe srcdoc=alert(5)>"
JOB_TIMEOUT_S = 300
PAGES = ["/ui/", "/ui/jobs", "/ui/indexes", "/ui/models", "/ui/settings"]
# What a payload that ran would have left in the DOM.
INJECTED = "script:not([src]), img[src='x'], svg[onload], iframe, [onerror], [onload]"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(tmp_path_factory.mktemp("xss"), shared_dir() / "models", models=MODELS)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Performers named with payloads (by performer.json and by folder name), and media files."""
    faces = shared_dir() / "testdata" / "faces" / "deepface"
    performers = tmp_path_factory.mktemp("xss-performers")
    alpha, beta = performers / "alpha", performers / IMG_NAME
    alpha.mkdir()
    beta.mkdir()
    (alpha / "performer.json").write_text(json.dumps({"name": SCRIPT_NAME, "aliases": [ALIAS]}))
    for name in ("img1.jpg", "img2.jpg", "img4.jpg"):
        os.symlink(faces / name, alpha / name)
    for name in ("img13.jpg", "img14.jpg"):
        os.symlink(faces / name, beta / name)
    media = tmp_path_factory.mktemp("xss-media") / IMG_NAME  # the walked folder's name too
    media.mkdir()
    os.symlink(faces / "img1.jpg", media / GOOD_FILE)
    (media / BAD_FILE).write_bytes(b"not an image at all")
    return performers, media


def run_job(stack: Stack, kind: str, params: dict[str, Any]) -> str:
    answer = httpx.post(f"{stack.http}/jobs", json={"kind": kind, "params": params}, timeout=30)
    assert answer.status_code == 201, answer.text
    job_id: str = answer.json()["id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while (job := httpx.get(f"{stack.http}/jobs/{job_id}", timeout=30).json())["state"] in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, f"{kind} did not finish: {job}"
        time.sleep(0.5)
    return job_id


@pytest.fixture(scope="module")
def jobs(stack: Stack, folders: tuple[Path, Path]) -> dict[str, str]:
    performers, media = folders
    build = run_job(
        stack,
        "build-face-index",
        {"sources": [{"kind": "folder", "path": str(performers)}], "activate": True},
    )
    tag = run_job(stack, "tag-library", {"roots": [str(media)]})
    return {"build": build, "tag": tag}


@pytest.fixture(scope="module")
def page(stack: Stack) -> Iterator[tuple[Page, list[str]]]:
    """A page that records every dialog (and dismisses it) and every uncaught error."""
    with sync_playwright() as playwright:
        browser: Browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        context = browser.new_context(base_url=stack.http)
        opened = context.new_page()
        caught: list[str] = []

        def on_dialog(dialog: Dialog) -> None:
            caught.append(f"dialog {dialog.type}: {dialog.message}")
            dialog.dismiss()

        opened.on("dialog", on_dialog)
        opened.on("pageerror", lambda error: caught.append(f"uncaught: {error}"))
        try:
            yield opened, caught
        finally:
            browser.close()


def assert_inert(page: Page, caught: list[str], where: str) -> None:
    page.wait_for_load_state("networkidle")
    injected = page.locator(INJECTED).evaluate_all("nodes => nodes.map(n => n.outerHTML.slice(0, 120))")
    assert injected == [], f"{where}: {injected}"
    assert caught == [], f"{where}: {caught}"


def test_every_page_shows_the_payloads_as_text(page: tuple[Page, list[str]], jobs: dict[str, str]) -> None:
    browser_page, caught = page
    for path in [*PAGES, f"/ui/jobs/{jobs['build']}", f"/ui/jobs/{jobs['tag']}"]:
        response = browser_page.goto(path)
        assert response is not None and response.status == 200, path
        assert_inert(browser_page, caught, path)
    # The tag job's page names the walked folder (By folder) and lists the failed file with its
    # name (Errors by kind, folded: text_content reads it), as text.
    browser_page.goto(f"/ui/jobs/{jobs['tag']}")
    text = browser_page.locator("main").text_content() or ""
    assert IMG_NAME in text and BAD_FILE in text, text
    assert_inert(browser_page, caught, "tag job page")


def test_try_it_draws_a_payload_name_as_text(page: tuple[Page, list[str]], jobs: dict[str, str]) -> None:
    browser_page, caught = page
    browser_page.goto("/ui/try")
    chooser = browser_page.get_by_label("Drop an image here, or choose one")
    chooser.set_input_files(shared_file("testdata/faces/deepface/img2.jpg"))
    expect(browser_page.locator("#picture")).to_have_attribute("data-faces", "1", timeout=120_000)
    expect(browser_page.locator("#faces-caption")).to_contain_text(SCRIPT_NAME)
    chooser.set_input_files(shared_file("testdata/faces/deepface/img13.jpg"))
    expect(browser_page.locator("#faces-caption")).to_contain_text(IMG_NAME, timeout=120_000)
    assert_inert(browser_page, caught, "/ui/try")
