"""Jobs on the real stack (tritonserver, real models, real media, real SQLite): a `tag-library` job
over real images, videos (one partly corrupt), a zip gallery and a broken file; a `kill -9` of the
server process mid-job and a stop and fresh start of `serve` mid-job both end with every item
exactly once and equal to an uninterrupted run; cancel within 2 s; the plugin's calls answered
from the result store without inference after a job, recomputed after the file changes; a 100,000-
file tree listed with flat memory."""

from __future__ import annotations

import os
import shutil
import signal
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import shared_dir, shared_file
from tests.integration.test_lifecycle import descendants, process_name
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.integration

MODELS = ["open_nsfw"]
IMAGES = ["baboon.jpg", "basketball1.png", "fruits.jpg", "messi5.jpg"]
VIDEOS = ["box.mp4", "tree.avi", "Megamind.avi"]  # tree.avi: 444 frames claimed, 68 decodable
JOB_TIMEOUT_S = 600


def make_library(root: Path) -> Path:
    root.mkdir(parents=True)
    (root / "photos").mkdir()
    for name in IMAGES:
        shutil.copy(shared_file(f"testdata/images/{name}"), root / "photos" / name)
    (root / "scenes").mkdir()
    for name in VIDEOS:
        shutil.copy(shared_file(f"testdata/video/{name}"), root / "scenes" / name)
    with zipfile.ZipFile(root / "photos" / "gallery.zip", "w") as bundle:
        for name in IMAGES[:2]:
            bundle.write(shared_file(f"testdata/images/{name}"), f"set/{name}")
    (root / "photos" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg at all")
    (root / "notes.txt").write_text("not media: not listed")
    return root


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("jobs")
    running = start_stack(workdir, shared_dir() / "models", models=MODELS)
    try:
        yield running
    finally:
        running.stop()


def submit(stack: Stack, kind: str, params: dict[str, Any]) -> dict[str, Any]:
    response = httpx.post(f"{stack.http}/jobs", json={"kind": kind, "params": params}, timeout=60)
    assert response.status_code == 201, response.text
    job: dict[str, Any] = response.json()
    return job


def job_of(stack: Stack, job_id: str) -> dict[str, Any]:
    response = httpx.get(f"{stack.http}/jobs/{job_id}", timeout=30)
    assert response.status_code == 200, response.text
    job: dict[str, Any] = response.json()
    return job


def wait_for(stack: Stack, job_id: str, *states: str, timeout_s: float = JOB_TIMEOUT_S) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{stack.http}/jobs/{job_id}", timeout=30)
            # 503 while the supervisor restarts the server process
            job = response.json() if response.status_code == 200 else {"state": response.status_code}
        except httpx.HTTPError as error:
            job = {"state": str(error)}
        if job.get("state") in states:
            return job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not reach {states}; last {job}\n{stack.log()[-4000:]}")


def wait_done_at_least(stack: Stack, job_id: str, count: int) -> None:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while job_of(stack, job_id)["progress"]["done"] < count:
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.1)


def results(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    token = ""
    while True:
        page = httpx.get(
            f"{stack.http}/jobs/{job_id}/results", params={"page_size": 5, "page_token": token}, timeout=30
        ).json()
        items.extend(page["items"])
        token = page["next_page_token"]
        if not token:
            return items


def by_relative_path(items: list[dict[str, Any]], root: Path) -> dict[str, Any]:
    found: dict[str, Any] = {}
    for item in items:
        relative = str(Path(item["item"]).relative_to(root.resolve()))
        assert relative not in found, f"{relative} appears twice in the results"
        found[relative] = item["result"] if item["state"] == "done" else {"error_kind": item["error_kind"]}
    return found


def comparable(result: dict[str, Any]) -> dict[str, Any]:
    """An item's result without what differs between runs of the same work."""
    return {k: v for k, v in result.items() if k not in {"sidecar"}}


def inference_count(stack: Stack) -> float:
    text = httpx.get(f"http://127.0.0.1:{stack.triton_metrics_port}/metrics", timeout=30).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith("nv_inference_count{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def server_pid(stack: Stack) -> int:
    return next(p for p in descendants(stack.process.pid) if "stash_vision.server" in process_name(p))


@pytest.fixture(scope="module")
def reference(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """An uninterrupted tag-library run: the answers the interrupted runs must equal."""
    library = make_library(tmp_path_factory.mktemp("reference") / "library")
    job = submit(stack, "tag-library", {"roots": [str(library)], "write_sidecars": True})
    done = wait_for(stack, job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    return library, by_relative_path(results(stack, job["id"]), library)


def test_a_library_job_tags_every_item_once_and_counts_its_errors(
    stack: Stack, reference: tuple[Path, dict[str, Any]]
) -> None:
    library, answers = reference
    expected = {f"photos/{n}" for n in IMAGES} | {f"scenes/{n}" for n in VIDEOS}
    assert set(answers) == expected | {"photos/gallery.zip", "photos/broken.jpg"}
    assert answers["photos/broken.jpg"] == {"error_kind": "InvalidInput"}
    assert set(answers["photos/gallery.zip"]["images"]) == {f"set/{n}" for n in IMAGES[:2]}
    for name in IMAGES:
        assert "tags" in answers[f"photos/{name}"], answers[f"photos/{name}"]
    tree = answers["scenes/tree.avi"]
    assert tree["partial"] is True and tree["frames"] >= 1
    for name in VIDEOS:
        video = answers[f"scenes/{name}"]
        assert video["ai_json"].startswith('{"schema_version":1'), name
        assert video["sidecar"] == "written"
        assert (library / "scenes" / f"{name}.AI.json").read_text() == video["ai_json"]
    jobs = httpx.get(f"{stack.http}/jobs", params={"kind": "tag-library"}, timeout=30).json()["jobs"]
    summary = next(j for j in jobs if j["state"] == "succeeded")["summary"]
    assert summary["errors_by_kind"] == {"InvalidInput": 1}


def test_the_plugin_is_answered_from_the_store_after_a_job(
    stack: Stack, reference: tuple[Path, dict[str, Any]]
) -> None:
    library, answers = reference
    video = library / "scenes" / "box.mp4"
    body = {
        "path": str(video),
        "frame_interval": 2,
        "threshold": 0.3,
        "return_confidence": True,
        "vr_video": False,
        "existing_json_data": None,
    }
    before = inference_count(stack)
    response = httpx.post(f"{stack.http}/process_video/", json=body, timeout=600)
    assert response.status_code == 200, response.text
    assert response.json()["result"]["json_result"] == answers["scenes/box.mp4"]["ai_json"]
    images = httpx.post(
        f"{stack.http}/process_images/",
        json={"paths": [str(library / "photos" / n) for n in IMAGES], "threshold": 0.5},
        timeout=600,
    )
    assert images.status_code == 200, images.text
    assert inference_count(stack) == before, "answered from the store: Triton did no inference"

    # The file changes (re-encoded, replaced): it is computed again.
    os.utime(video, ns=(time.time_ns(), time.time_ns()))
    again = httpx.post(f"{stack.http}/process_video/", json=body, timeout=600)
    assert again.status_code == 200
    assert inference_count(stack) > before


def test_kill_9_of_the_server_mid_job_loses_nothing(
    stack: Stack, reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    library = make_library(tmp_path / "library")
    job = submit(stack, "tag-library", {"roots": [str(library)]})
    wait_done_at_least(stack, job["id"], 3)
    victim = server_pid(stack)
    os.kill(victim, signal.SIGKILL)
    done = wait_for(stack, job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    assert server_pid(stack) != victim, "the supervisor started a new server process"
    answers = by_relative_path(results(stack, job["id"]), library)
    assert {k: comparable(v) for k, v in answers.items()} == {
        k: comparable(v) for k, v in reference[1].items()
    }


def test_cancel_stops_within_two_seconds(stack: Stack, tmp_path: Path) -> None:
    library = make_library(tmp_path / "library")
    job = submit(stack, "tag-library", {"roots": [str(library)]})
    wait_for(stack, job["id"], "running")
    started = time.monotonic()
    response = httpx.post(f"{stack.http}/jobs/{job['id']}/cancel", timeout=30)
    assert time.monotonic() - started < 2.0
    assert response.status_code == 200 and response.json()["state"] == "cancelled"
    assert httpx.post(f"{stack.http}/jobs/{job['id']}/cancel", timeout=30).status_code == 409


def test_bad_jobs_are_clear_errors(stack: Stack, tmp_path: Path) -> None:
    cases = [
        ({"kind": "tag-everything", "params": {}}, 400, "unknown job kind"),
        ({"kind": "tag-library", "params": {"roots": [str(tmp_path / "missing")]}}, 404, "missing"),
        (
            {"kind": "tag-library", "params": {"roots": [str(shared_file("testdata/README.md"))]}},
            400,
            "is a file",
        ),
        ({"kind": "tag-library", "params": {"roots": "relative/path"}}, 400, "absolute"),
        ({"kind": "tag-library", "params": {"colour": "red"}}, 400, "unknown parameter"),
    ]
    for body, status, words in cases:
        response = httpx.post(f"{stack.http}/jobs", json=body, timeout=30)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["detail"], (body, response.text)
    assert httpx.get(f"{stack.http}/jobs/0123456789abcdef", timeout=30).status_code == 404


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_a_100000_file_tree_is_listed_with_flat_memory(stack: Stack, tmp_path: Path) -> None:
    tree = tmp_path / "huge"
    for folder in range(100):
        target = tree / f"folder-{folder:03d}"
        target.mkdir(parents=True)
        for index in range(1000):
            (target / f"image-{index:04d}.jpg").touch()
    pid = server_pid(stack)
    before = rss_kib(pid)
    job = submit(stack, "tag-library", {"roots": [str(tree)]})
    peak = before
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        peak = max(peak, rss_kib(pid))
        progress = job_of(stack, job["id"])["progress"]
        if progress["listing_complete"]:
            break
        assert time.monotonic() < deadline, progress
        time.sleep(0.2)
    assert progress["total"] == 100_000
    httpx.post(f"{stack.http}/jobs/{job['id']}/cancel", timeout=30)
    growth_mib = (peak - before) / 1024
    assert growth_mib < 50, f"server RSS grew {growth_mib:.1f} MiB while listing 100,000 files"


def test_sigterm_and_a_fresh_serve_resume_the_job(
    stack: Stack, reference: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    """Runs last: it stops the module's stack and starts a new one on the same data directory."""
    library = make_library(tmp_path / "library")
    job = submit(stack, "tag-library", {"roots": [str(library)]})
    wait_done_at_least(stack, job["id"], 3)
    assert stack.stop(signal.SIGTERM) == 0
    fresh = start_stack(stack.data_dir.parent, shared_dir() / "models", models=MODELS)
    try:
        done = wait_for(fresh, job["id"], "succeeded", "failed")
        assert done["state"] == "succeeded", done
        answers = by_relative_path(results(fresh, job["id"]), library)
        assert {k: comparable(v) for k, v in answers.items()} == {
            k: comparable(v) for k, v in reference[1].items()
        }
    finally:
        fresh.stop()
