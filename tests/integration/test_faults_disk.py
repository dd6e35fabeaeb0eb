"""A full data disk on the real stack, for real: `serve` runs in a user and mount namespace
(`unshare -rm`, no privilege needed) whose data directory is a tmpfs of its own; the test fills
that file system through /proc/<pid>/root while a face index build and a tag-library job run.

What must hold: the build and the job stop with an error that names the full disk; the index that
was serving still serves (same version, same performers); jobs.db passes `PRAGMA integrity_check`
and keeps every finished item; once space is freed, the job resumes and completes and a new build
succeeds, without a restart."""

from __future__ import annotations

import contextlib
import errno
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bench.bench_load import MODELS, write_enrolment
from tests.conftest import shared_dir, shared_file
from tests.integration.test_faults_kills import job_results, submit, submitted, wait_job
from tests.stack import Stack, free_ports, stack_env, wait_ready

pytestmark = pytest.mark.integration

TMPFS_SIZE = "400m"  # the models, the runtime repository, jobs.db and the indexes fit with room to spare
FILLER = "filler.bin"


def start_on_tmpfs(workdir: Path) -> Stack:
    data_dir = workdir / "data"
    data_dir.mkdir(parents=True)
    ports = free_ports(5)
    env = stack_env(data_dir, shared_dir() / "models", ports, MODELS)
    python = shlex.quote(sys.executable)
    script = (
        f"mount -t tmpfs -o size={TMPFS_SIZE} tmpfs {shlex.quote(str(data_dir))} && "
        f"{python} -m stash_vision.cli models fetch --mirror-only && "
        f"exec {python} -m stash_vision.cli serve"
    )
    log_path = workdir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["unshare", "-rm", "sh", "-c", script], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    http, grpc_port, server_metrics, triton_grpc, triton_metrics = ports
    stack = Stack(
        process, env, data_dir, log_path, http, grpc_port, server_metrics, triton_grpc, triton_metrics, MODELS
    )
    wait_ready(stack)
    return stack


def inside(stack: Stack) -> Path:
    """The data directory as `serve` sees it: its tmpfs, reached through its mount namespace."""
    return Path(f"/proc/{stack.process.pid}/root") / stack.data_dir.relative_to("/")


def integrity_inside(stack: Stack) -> str:
    """PRAGMA integrity_check of the live jobs.db, run inside `serve`'s namespaces: SQLite resolves
    the /proc/<pid>/root link to a path of ours, where the file does not exist."""
    check = (
        "import sqlite3, sys; "
        "db = sqlite3.connect(f'file:{sys.argv[1]}?mode=ro', uri=True); "
        "print(db.execute('PRAGMA integrity_check').fetchone()[0])"
    )
    done = subprocess.run(
        [
            "nsenter",
            "-t",
            str(stack.process.pid),
            "-U",
            "-m",
            "--preserve-credentials",
            sys.executable,
            "-c",
            check,
            str(stack.data_dir / "jobs.db"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


@contextlib.contextmanager
def full_disk(stack: Stack) -> Iterator[None]:
    """Fills the stack's tmpfs to the last byte for the block's duration."""
    filler = inside(stack) / FILLER
    with filler.open("wb", buffering=0) as out:
        with contextlib.suppress(OSError):
            free = os.statvfs(inside(stack)).f_bavail * os.statvfs(inside(stack)).f_frsize
            os.posix_fallocate(out.fileno(), 0, max(free, 1))
        try:
            while True:  # whatever fallocate left, block by block (unbuffered: nothing left to flush)
                out.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    try:
        yield
    finally:
        filler.unlink()


def wait_progress(stack: Stack, job_id: str, done: int) -> None:
    deadline = time.monotonic() + 300
    while httpx.get(f"{stack.http}/jobs/{job_id}", timeout=30).json()["progress"]["done"] < done:
        assert time.monotonic() < deadline, f"job {job_id} made no progress:\n{stack.log()[-3000:]}"
        time.sleep(0.1)


def index_info(stack: Stack) -> dict[str, Any]:
    info: dict[str, Any] = httpx.get(f"{stack.http}/faces/index", timeout=30).json()
    return info


def identify(stack: Stack) -> str:
    face = str(shared_file("testdata/faces/deepface/img5.jpg"))
    response = httpx.post(f"{stack.http}/identify", json={"image_path": face}, timeout=60)
    assert response.status_code == 200, response.text
    best: str = response.json()["faces"][0]["matches"][0]["performer_id"]
    return best


def library(root: Path) -> Path:
    root.mkdir(parents=True)
    for i in range(12):
        shutil.copy(shared_file("testdata/video/vtest.avi"), root / f"{i:02d}.avi")
    return root


def whole_set(folder: Path) -> Path:
    """Every shared deepface photo, five to a performer: a build that embeds for a while."""
    photos = sorted((shared_dir() / "testdata" / "faces" / "deepface").glob("*.jpg"))
    for i, photo in enumerate(photos):
        (folder / f"p{i // 5:02d}").mkdir(parents=True, exist_ok=True)
        os.symlink(photo, folder / f"p{i // 5:02d}" / photo.name)
    return folder


def wait_state(stack: Stack, job_id: str, state: str) -> None:
    deadline = time.monotonic() + 60
    while (job := httpx.get(f"{stack.http}/jobs/{job_id}", timeout=30).json())["state"] != state:
        assert job["state"] in ("queued", state), f"the build ended before the disk filled: {job}"
        assert time.monotonic() < deadline, job
        time.sleep(0.05)


def build_index(stack: Stack, folder: Path) -> httpx.Response:
    """A build-face-index job over `folder` (the server builds, inside its namespace)."""
    return submitted(stack, "build-face-index", {"folder": str(folder)})


def job_error(stack: Stack, job_id: str) -> str:
    """The job's error, else its first failed item's."""
    job = wait_job(stack, job_id, timeout_s=120)
    failed = [item["error"] for item in job_results(stack, job_id) if item["state"] == "failed"]
    return str(job.get("error") or "") + " | ".join(failed)


def test_a_full_data_disk_stops_builds_and_jobs_with_a_clear_error_and_loses_nothing(tmp_path: Path) -> None:
    stack = start_on_tmpfs(tmp_path)
    enrol = write_enrolment(tmp_path / "enrol", shared_dir())
    try:
        first = build_index(stack, enrol)
        assert first.status_code == 201 and wait_job(stack, first.json()["id"])["state"] == "succeeded"
        serving = index_info(stack)
        assert identify(stack) == "local:alpha"

        job_id = submit(stack, library(tmp_path / "library"))
        wait_progress(stack, job_id, 2)
        with full_disk(stack):
            said = job_error(stack, job_id)
            print(f"\nthe tag-library job: {said}")
            assert "disk is full" in said and "jobs.db" in said, said
            refused = build_index(stack, enrol)  # recording a new job needs the disk too
            assert refused.status_code == 503 and "disk is full" in refused.json()["detail"], refused.text
        assert integrity_inside(stack) == "ok"

        building = build_index(stack, whole_set(tmp_path / "whole-set"))
        assert building.status_code == 201, building.text
        wait_state(stack, building.json()["id"], "running")
        with full_disk(stack):  # while it embeds
            said = job_error(stack, building.json()["id"])
            print(f"the index build: {said}")
            assert "No space left on device" in said or "disk is full" in said, said
            assert index_info(stack) == serving
            assert identify(stack) == "local:alpha"
        assert integrity_inside(stack) == "ok"
        assert len([item for item in job_results(stack, job_id) if item["state"] == "done"]) >= 2

        resumed = httpx.post(f"{stack.http}/jobs/{job_id}/resume", timeout=30)
        assert resumed.status_code == 200, resumed.text
        assert wait_job(stack, job_id)["state"] == "succeeded"
        items = [item["item"] for item in job_results(stack, job_id)]
        assert len(items) == len(set(items)) == 12
        again = build_index(stack, enrol)
        assert again.status_code == 201 and wait_job(stack, again.json()["id"])["state"] == "succeeded"
        assert integrity_inside(stack) == "ok"
    finally:
        stack.stop()
