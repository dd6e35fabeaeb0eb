"""Faults under load on the real stack: while the load benchmark's population (bench/toolkit/load.py)
runs, `kill -9` Triton, then the gRPC server, then the adapter, then stop `serve` with SIGTERM and
start it again on the same data directory and ports; then a jobs.db locked by another process and
a jobs.db with garbage bytes.

What must hold: every client gets an answer or a retryable one (bench/toolkit/load.py defines
them: a 503 with a detail, a refused connection, a connection the dying adapter closed), never
another error and never a hang; a job accepted before the faults is still there and completes
with every item exactly once; a finished job's stored results are unchanged; jobs.db passes
`PRAGMA integrity_check`; a locked or corrupt jobs.db is named in a 503 and the file is left as
it was (never a silent reset). The time from each kill to full service is measured and printed."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.bench_load import MODELS, build_face_index
from bench.toolkit.load import ERROR, Library, LoadRun, errors, per_route
from tests.conftest import shared_dir, shared_file
from tests.integration.test_lifecycle import descendants, process_name
from tests.stack import Stack, start_stack, wait_ready

pytestmark = pytest.mark.integration

SERVICE_TIMEOUT_S = 180.0
FAULT_SHOWS_S = 15.0
LOAD_AFTER_RECOVERY_S = 5.0


def full_service(stack: Stack) -> bool:
    """Every layer answers: ready, a tagging call (Triton), an identify call (the face index), the
    job list (jobs.db)."""
    image = str(shared_file("testdata/images/fruits.jpg"))
    face = str(shared_file("testdata/faces/deepface/img5.jpg"))
    try:
        with httpx.Client(base_url=stack.http, timeout=30) as client:
            return (
                client.get("/ready").status_code == 200
                and client.post("/process_images/", json={"paths": [image]}).status_code == 200
                and client.post("/identify", json={"image_path": face}).status_code == 200
                and client.get("/jobs").status_code == 200
            )
    except httpx.HTTPError:
        return False


def seconds_to_full_service(stack: Stack, since: float) -> float:
    """From `since` (the fault) until full service, once the fault has shown: stored answers may
    serve the tagging and identify calls while Triton is down, but /ready follows Triton within
    a second or two."""
    while full_service(stack):
        assert time.monotonic() - since < FAULT_SHOWS_S, f"the fault never showed:\n{stack.log()[-3000:]}"
        time.sleep(0.1)
    while not full_service(stack):
        assert time.monotonic() - since < SERVICE_TIMEOUT_S, f"no full service:\n{stack.log()[-4000:]}"
        time.sleep(0.25)
    return round(time.monotonic() - since, 1)


def child_pid(stack: Stack, marker: str) -> int:
    return next(p for p in descendants(stack.process.pid) if marker in process_name(p))


def in_process_groups(leaders: list[int]) -> list[int]:
    """Live processes whose process group is one of `leaders` (a child's pid is its group's id)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[2]) in leaders:
                found.append(int(entry.name))
    return found


def restart_serve(stack: Stack) -> Stack:
    """`serve` again with the same environment: same data directory, same ports."""
    log = stack.log_path.open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "stash_vision.cli", "serve"],
        env=stack.env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    fields = {k: v for k, v in vars(stack).items() if k != "process"}
    return Stack(process, **fields)


def make_library(root: Path, videos: int) -> Path:
    root.mkdir(parents=True)
    for name in ("baboon.jpg", "fruits.jpg", "messi5.jpg", "building.jpg"):
        shutil.copy(shared_file(f"testdata/images/{name}"), root / name)
    for i, name in enumerate(["Megamind.avi", "vtest.avi", "box.mp4", "cup.mp4"][:videos]):
        shutil.copy(shared_file(f"testdata/video/{name}"), root / f"{i}-{name}")
    return root


def submitted(stack: Stack, kind: str, params: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{stack.http}/jobs", json={"kind": kind, "params": params}, timeout=60)


def submit(stack: Stack, root: Path) -> str:
    """A tag-library job over `root`; its id."""
    response = submitted(stack, "tag-library", {"roots": [str(root)]})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


def wait_job(stack: Stack, job_id: str, timeout_s: float = 600) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = httpx.get(f"{stack.http}/jobs/{job_id}", timeout=30)
        job = response.json() if response.status_code == 200 else {"state": response.status_code}
        if job.get("state") in ("succeeded", "failed", "cancelled", "interrupted"):
            return job
        time.sleep(0.5)
    raise AssertionError(f"job {job_id} did not end: {job}")


def job_results(stack: Stack, job_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{stack.http}/jobs/{job_id}/results", params={"page_size": 500}, timeout=30)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def integrity(db: Path) -> str:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as connection:
        return str(connection.execute("PRAGMA integrity_check").fetchone()[0])


def under_load(stack: Stack, work: Path, fault: Callable[[], Stack]) -> tuple[Stack, float, list[Any]]:
    """Runs `fault` while the population runs; returns the stack after it, the seconds from the
    fault to full service, and every outcome the clients saw (a few seconds after recovery
    included)."""
    load = LoadRun(stack.http, Library(shared_dir(), work / f"load-{time.monotonic_ns()}"), 3600).start()
    time.sleep(3)  # requests in flight when the fault hits
    began = time.monotonic()
    stack = fault()
    recovered = seconds_to_full_service(stack, began)
    time.sleep(LOAD_AFTER_RECOVERY_S)
    load.stop()
    load.join()
    return stack, recovered, load.snapshot()


def test_kills_and_a_restart_under_load_lose_nothing(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, shared_dir() / "models", models=MODELS)
    try:
        build_face_index(stack, tmp_path / "enrol", shared_dir())
        finished = submit(stack, make_library(tmp_path / "small", videos=0))
        assert wait_job(stack, finished)["state"] == "succeeded"
        finished_results = job_results(stack, finished)
        running = submit(stack, make_library(tmp_path / "large", videos=4))

        killed: list[int] = []

        def kill(marker: str) -> Callable[[], Stack]:
            def fault() -> Stack:
                killed.append(child_pid(stack, marker))
                os.kill(killed[-1], signal.SIGKILL)
                return stack

            return fault

        def sigterm_and_serve_again() -> Stack:
            assert stack.stop(signal.SIGTERM) == 0, stack.log()[-3000:]
            return restart_serve(stack)

        recovery: dict[str, float] = {}
        outcomes: list[Any] = []
        for name, fault in (
            ("kill -9 tritonserver", kill("tritonserver")),
            ("kill -9 server", kill("stash_vision.server")),
            ("kill -9 adapter", kill("stash_vision.adapter")),
            ("SIGTERM serve, serve again", sigterm_and_serve_again),
        ):
            stack, recovery[name], seen = under_load(stack, tmp_path, fault)
            outcomes += seen
        print(f"\nseconds to full service: {recovery}")
        print(f"outcomes per route: {per_route(outcomes, sum(recovery.values()))}")
        assert not [o for o in outcomes if o.kind == ERROR], (errors(outcomes), stack.log()[-20000:])
        assert sum(o.kind == "ok" for o in outcomes) > 20

        wait_ready(stack)
        done = wait_job(stack, running)
        assert done["state"] == "succeeded", done
        items = [item["item"] for item in job_results(stack, running)]
        assert len(items) == len(set(items)) == 8, items
        assert job_results(stack, finished) == finished_results
        assert integrity(stack.data_dir / "jobs.db") == "ok"
        # Nothing of a killed child's process group lives on (Triton's Python-backend stubs did).
        assert not [process_name(p) for p in in_process_groups(killed)]
        jobs_db_faults(stack)
    finally:
        stack.stop()


def jobs_db_faults(stack: Stack) -> None:
    """A jobs.db locked by another process, then one with garbage bytes: the restarted server
    names the file in a 503 and leaves it as it was."""
    db = stack.data_dir / "jobs.db"
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    os.kill(child_pid(stack, "stash_vision.server"), signal.SIGKILL)
    answer = jobs_answer_after_restart(stack)
    holder.execute("ROLLBACK")
    holder.close()
    assert answer[0] == 503 and f"{db} is locked by another process" in answer[1], answer

    with db.open("r+b") as file:
        file.write(b"garbage, not SQLite" * 10)
    corrupt = db.read_bytes()
    os.kill(child_pid(stack, "stash_vision.server"), signal.SIGKILL)
    answer = jobs_answer_after_restart(stack)
    assert answer[0] == 503 and f"{db} is not a SQLite database: move it aside" in answer[1], answer
    assert db.read_bytes() == corrupt  # never reset behind the user's back


def jobs_answer_after_restart(stack: Stack) -> tuple[int, str]:
    """The first answer of GET /jobs from the restarted server (503s while it restarts skipped)."""
    time.sleep(1)
    deadline = time.monotonic() + SERVICE_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            response = httpx.get(f"{stack.http}/jobs", timeout=30)
        except httpx.HTTPError:
            time.sleep(0.25)
            continue
        detail = str(response.json().get("detail", ""))
        if response.status_code != 503 or "jobs are unavailable" in detail:
            return response.status_code, detail
        time.sleep(0.25)
    raise AssertionError(f"the server did not come back:\n{stack.log()[-4000:]}")
