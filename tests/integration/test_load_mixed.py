"""The load benchmark's population (bench/bench_load.py) for 60 seconds on the real stack, with the
benchmark's own targets: every request answered without an error, and the RSS of every process
flat after the warm-up (bench/toolkit/rss_timeline.py states the criterion)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_load import MODELS, build_face_index, run_load
from tests.conftest import shared_dir
from tests.stack import start_stack

pytestmark = pytest.mark.integration

DURATION_S = 60.0
WARMUP_S = 15.0


def test_a_minute_of_mixed_load_has_no_error_and_flat_memory(tmp_path: Path) -> None:
    stack = start_stack(tmp_path, shared_dir() / "models", models=MODELS)
    try:
        build_face_index(stack, tmp_path / "enrol", shared_dir())
        report = run_load(stack, tmp_path, DURATION_S, WARMUP_S)
    finally:
        stack.stop()
    assert report["errors"] == 0 and report["retryable"] == 0, report["first_errors"]
    routes = report["per_route"]
    # Every kind of client got answers (a client stuck on its first request would show as none).
    expected = {
        "/process_images/",
        "/process_video/",
        "/identify",
        "/identify/scene",
        "POST /jobs",
        "GET /ui/",
    }
    assert expected <= {route for route, row in routes.items() if row["ok"] > 0}, routes
    for role, flat in report["memory_flat"].items():
        assert flat["flat"], f"{role} grew: {flat}; tenths {report['rss_mib_tenths_by_role'][role]}"
    assert {"tritonserver", "grpc_server", "adapter"} <= set(report["memory_flat"])
