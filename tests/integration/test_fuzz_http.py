"""The adapter under fuzzing and hostile files, on one real stack (issue 17, Fuzzing; docs/fuzzing.md).

Files first (file order), each through the real HTTP routes: a 200-megapixel PNG, a zip gallery
member claiming 10 GB, AVIs claiming 10⁹ frames or 0 fps, a symlink loop under a tag-library job's
root, a video replaced while it is being read. Each is refused or handled within the limits, and no
process of the stack grows its peak resident memory (VmHWM) by more than MEMORY_CAP_MIB.

Then Schemathesis over the adapter's own OpenAPI (every operation but the few that start long
work, tests/integration/http_fuzzing.py): no 5xx, answers that conform to their declared schema, no
request without an answer within its timeout."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.integration.file_bombs import (
    avi_claiming,
    peak_rss_mib,
    png_bomb,
    small_avi,
    symlink_loop,
    zip_bomb,
)
from tests.integration.fuzz_world import fuzz_world
from tests.integration.http_fuzzing import fuzz_adapter, summary
from tests.integration.stash_sense_world import GENERATED_PATH, World

pytestmark = pytest.mark.integration

CI_EXAMPLES_PER_OPERATION = 12
# A 200-megapixel image decoded would be 600 MB (BGR); a limit that works refuses it from its header.
MEMORY_CAP_MIB = 256
JOB_TIMEOUT_S = 120


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with fuzz_world(tmp_path_factory.mktemp("fuzz-http")) as built:
        yield built


@pytest.fixture(scope="module")
def http(world: World) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=world.stack.http, timeout=120) as client:
        yield client


@pytest.fixture(scope="module")
def peaks_before(world: World) -> dict[str, float]:
    return peak_rss_mib(world.stack.process.pid)


def refused(response: httpx.Response, *words: str) -> None:
    assert 400 <= response.status_code < 500, response.text
    for word in words:
        assert word in response.text, (word, response.text)


def test_a_200_megapixel_png_is_refused_from_its_header(
    world: World, http: httpx.Client, peaks_before: dict[str, float]
) -> None:
    bomb = png_bomb(world.generated / "bomb.png")
    tagged = http.post("/process_images/", json={"paths": [str(bomb)]})
    assert tagged.status_code == 200, tagged.text  # the AITagger dialect: a per-image error
    assert "STASH_VISION_MAX_IMAGE_PIXELS" in tagged.text, tagged.text
    refused(http.post("/identify", json={"image_path": str(bomb)}), "200 MP", "STASH_VISION_MAX_IMAGE_PIXELS")


def test_a_zip_member_claiming_10_gb_is_refused(world: World, http: httpx.Client) -> None:
    bomb = zip_bomb(world.generated / "bomb.zip", "big.jpg")
    world.stash.fx.images["900"] = {
        "id": "900",
        "_real": bomb,
        "_path": f"{GENERATED_PATH}/bomb.zip/big.jpg",
        "_zip": (f"{GENERATED_PATH}/bomb.zip", "big.jpg"),
        "_performers": [],
    }
    answer = http.post("/stash-sense/identify/image", json={"image_id": "900"})
    refused(answer, "10240 MiB", "STASH_VISION_MAX_IMAGE_FILE_BYTES")


def test_a_tag_library_job_over_a_zip_bomb_and_a_symlink_loop_finishes(
    world: World, http: httpx.Client
) -> None:
    root = world.generated / "library"
    symlink_loop(root)
    zip_bomb(root / "gallery.zip", "big.jpg")
    shutil.copy(world.generated / "alice.mp4", root / "alice.mp4")
    submitted = http.post("/jobs", json={"kind": "tag-library", "params": {"roots": [str(root)]}})
    assert submitted.status_code == 201, submitted.text
    job = wait_for_job(http, submitted.json()["id"])
    assert job["state"] == "succeeded", job
    results = http.get(f"/jobs/{job['id']}/results", params={"page_size": 100}).json()
    text = str(results)
    assert "gallery.zip" in text and "STASH_VISION_MAX_IMAGE_FILE_BYTES" in text, text


def wait_for_job(http: httpx.Client, job_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while time.monotonic() < deadline:
        job: dict[str, Any] = http.get(f"/jobs/{job_id}").json()
        if job["state"] in {"succeeded", "failed", "cancelled"}:
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} not finished within {JOB_TIMEOUT_S} s")


@pytest.mark.parametrize("lie", ["frames", "fps"])
def test_a_video_lying_about_its_frames_or_rate_is_answered_quickly(
    world: World, http: httpx.Client, lie: str
) -> None:
    source = small_avi(world.generated / f"small-{lie}.avi")
    video = avi_claiming(
        source,
        world.generated / f"lying-{lie}.avi",
        frames=10**9 if lie == "frames" else None,
        zero_fps=lie == "fps",
    )
    started = time.monotonic()
    answer = http.post("/identify/scene", json={"video_path": str(video), "num_frames": 20})
    assert answer.status_code < 500, answer.text
    assert time.monotonic() - started < 60, "a lying header must not make sampling crawl"


def test_a_video_replaced_while_it_is_read_gets_an_answer(world: World, http: httpx.Client) -> None:
    """A second thread swaps the file for a truncated copy and back while the scene is sampled:
    each request is answered (a result or a 4xx naming the file), the server stays up."""
    original = world.generated / "alice.mp4"
    target = world.generated / "swapped.mp4"
    truncated = world.generated / "truncated.mp4"
    truncated.write_bytes(original.read_bytes()[: original.stat().st_size // 3])
    shutil.copy(original, target)
    stop = threading.Event()

    def swap() -> None:
        sources = [truncated, original]
        n = 0
        while not stop.is_set():
            shutil.copy(sources[n % 2], target.with_suffix(".tmp"))
            target.with_suffix(".tmp").replace(target)
            n += 1
            time.sleep(0.05)

    swapper = threading.Thread(target=swap)
    swapper.start()
    try:
        answers = [http.post("/identify/scene", json={"video_path": str(target)}) for _ in range(4)]
    finally:
        stop.set()
        swapper.join()
    for answer in answers:
        assert answer.status_code < 500, answer.text
    assert world.stack.process.poll() is None


def test_no_process_grew_beyond_the_memory_cap(world: World, peaks_before: dict[str, float]) -> None:
    after = peak_rss_mib(world.stack.process.pid)
    growth = {name: after[name] - peaks_before.get(name, 0.0) for name in after if name in peaks_before}
    print("peak RSS growth (MiB) during the hostile files:", {k: round(v) for k, v in growth.items()})
    assert growth and max(growth.values()) < MEMORY_CAP_MIB, growth


def test_a_stash_scene_is_still_identified_after_the_files(world: World, http: httpx.Client) -> None:
    """The stack is unharmed by the files: a scene streamed from Stash is still identified."""
    answer = http.post("/stash-sense/identify/scene", json={"scene_id": "11"})
    assert answer.status_code == 200, answer.text


def test_an_invalid_utf8_body_to_the_ai_overhaul_routes_is_a_422(http: httpx.Client) -> None:
    """Found by the fuzzer: the gateway's own body parsing answered 500 (its 422 body echoed the
    raw bytes, which FastAPI could not encode)."""
    for route in ("identify-image", "identify-scene", "identify-gallery", "compare-faces"):
        answer = http.post(
            f"/stash-ai/api/v1/facial-recognition/{route}",
            content=b"[\x8b\xff",
            headers={"Content-Type": "application/json"},
        )
        assert answer.status_code == 422, (route, answer.text)


def test_schemathesis_finds_no_server_error_no_schema_violation_no_hang(world: World) -> None:
    report = fuzz_adapter(world.stack.http, max_examples=CI_EXAMPLES_PER_OPERATION)
    print(summary(report))
    assert not report.failures, "\n\n".join(report.failures)
    assert len(report.operations) >= 80, [op.label for op in report.operations]
    assert world.stack.process.poll() is None
