"""scripts/gpu-check's workload proven on this GPU-less machine: its CPU half alone (the hidden
--devices cpu) starts the real stack on the shared taggers, checks what /health and the runners
report, tags the shared photos and video, and writes its result."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, shared_dir

pytestmark = pytest.mark.integration


def test_the_cpu_half_measures_and_checks_the_reported_device() -> None:
    env = {**os.environ, "STASH_VISION_SHARED_DIR": str(shared_dir())}
    done = subprocess.run(
        [sys.executable, "-m", "bench.gpu_check", "--devices", "cpu", "--images", "16", "--concurrency", "1"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert (
        lines[0].startswith("cpu: ")
        and " images/s (16 in " in lines[0]
        and "sampled frames/s (159 in" in lines[0]
    )
    written = REPO / lines[-1].removeprefix("results: ")
    try:
        result = json.loads(written.read_text())
    finally:
        written.unlink()
    run = result["runs"]["cpu"]
    assert run["problems"] == [] and result["contract_problems"] == []
    assert run["health"] == {
        "current_device": "cpu",
        "pipelines": {"open_nsfw": "cpu", "nudenet_320n": "cpu"},
    }
    for report in run["reports"].values():
        assert report == {
            "device": "cpu",
            "providers": ["CPUExecutionProvider"],
            "requested": "cpu",
            "reason": "",
        }
    assert result["images_per_s"]["cpu"] > 0 and result["sampled_frames_per_s"]["cpu"] > 0
