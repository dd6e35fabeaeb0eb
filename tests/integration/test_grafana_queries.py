"""Every query of the Grafana dashboard (deploy/grafana/dashboards/stash-vision.json) against a real
Prometheus scraping the real stack after a workload that touches every panel: plugin calls over HTTP
(one refused), RPCs (one failing), Triton inference, a library job over an image and a video. Each
query must parse and return at least one series with a finite value."""

from __future__ import annotations

import json
import math
import re
import shutil
import time
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from stash_vision.v1 import inference_pb2_grpc
from tests.conftest import REPO, shared_file
from tests.integration.grpc_helpers import channel, infer
from tests.integration.prometheus_helpers import (
    QueryRefused,
    query,
    running_prometheus,
    wait_for_every_target,
)
from tests.stack import Stack

pytestmark = pytest.mark.integration

DASHBOARD = REPO / "deploy" / "grafana" / "dashboards" / "stash-vision.json"
JOB_TIMEOUT_S = 300
# Scrapes every second (prometheus.embedded.yml.in): a few seconds after the workload every counter
# it moved has been scraped at least twice.
SETTLE_TIMEOUT_S = 30
GRAFANA_VARIABLE = re.compile(r"\$\{?(__\w+)\}?")


def dashboard_queries() -> list[tuple[str, str]]:
    """(panel title / refId, PromQL) of every target of every panel, rows' nested panels included."""
    dashboard = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    found: list[tuple[str, str]] = []
    for panel in dashboard["panels"]:
        for inner in [panel, *panel.get("panels", [])]:
            for target in inner.get("targets", []):
                found.append((f"{inner['title']} / {target['refId']}", target["expr"]))
    return found


def concrete(expression: str, window_s: int) -> str:
    """The query as Grafana sends it: its built-in variables replaced by a concrete window that spans
    the whole workload, so a ratio of rates never divides by a window without samples."""
    values = {"__rate_interval": f"{window_s}s", "__interval": "15s", "__range": f"{window_s}s"}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in values, f"the dashboard uses a Grafana variable this test does not know: {name}"
        return values[name]

    result = GRAFANA_VARIABLE.sub(replace, expression)
    assert "$" not in result, f"a dashboard variable is left in {result!r}"
    return result


def problem(base: str, expression: str) -> str | None:
    """None when the query parses and returns a series with a finite value; else what is wrong."""
    try:
        result = query(base, expression)
    except QueryRefused as refused:
        return str(refused)
    if not result:
        return "no series"
    values = [float(series["value"][1]) for series in result]  # type: ignore[index]
    if not any(math.isfinite(value) for value in values):
        return f"only non-finite values {values}"
    return None


def run_workload(stack: Stack, library: Path, image: Path) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(channel(stack.grpc_target))
    for _ in range(3):
        infer(stub, "open_nsfw", data=image.read_bytes())
    with pytest.raises(grpc.RpcError) as refused:
        infer(stub, "open_nsfw", data=b"not an image")
    assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT, refused.value

    tagged = httpx.post(
        f"{stack.http}/process_images/", json={"paths": [str(image)], "threshold": 0.5}, timeout=300
    )
    assert tagged.status_code == 200, tagged.text
    wrong = httpx.post(
        f"{stack.http}/process_images/", json={"paths": [str(image)], "threshold": "high"}, timeout=60
    )
    assert wrong.status_code == 422, wrong.text

    library.mkdir()
    shutil.copy(image, library / image.name)
    shutil.copy(shared_file("testdata/video/cup.mp4"), library / "cup.mp4")
    submitted = httpx.post(
        f"{stack.http}/jobs", json={"kind": "tag-library", "params": {"roots": [str(library)]}}, timeout=60
    )
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    deadline = time.monotonic() + JOB_TIMEOUT_S
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        job = httpx.get(f"{stack.http}/jobs/{job_id}", timeout=30).json()
        if job["state"] in ("succeeded", "failed"):
            break
        time.sleep(0.5)
    assert job.get("state") == "succeeded", f"{job}\n{stack.log()[-4000:]}"


def test_every_dashboard_query_returns_data_after_a_workload(stack: Stack, tmp_path: Path) -> None:
    queries = dashboard_queries()
    assert len(queries) >= 20, f"the dashboard has only {len(queries)} queries"
    # A labelled series appears with its first observation; rate() needs a sample from before the
    # workload, so each image stage and RPC is seen once before Prometheus starts scraping.
    image = shared_file("testdata/images/baboon.jpg")
    stub = inference_pb2_grpc.InferenceServiceStub(channel(stack.grpc_target))
    infer(stub, "open_nsfw", data=image.read_bytes())
    with running_prometheus(stack, tmp_path) as prometheus:
        started = time.monotonic()
        wait_for_every_target(prometheus.base)
        run_workload(stack, tmp_path / "library", image)
        problems: dict[str, str] = {}
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            window_s = math.ceil(time.monotonic() - started) + 5
            problems = {}
            for name, expression in queries:
                found = problem(prometheus.base, concrete(expression, window_s))
                if found is not None:
                    problems[name] = f"{concrete(expression, window_s)}\n    -> {found}"
            if not problems or time.monotonic() > deadline:
                break
            time.sleep(1)
        # The check itself can fail: a metric nobody exports, a syntax error, a 0/0 ratio.
        assert problem(prometheus.base, "stash_vision_no_such_metric_total") == "no series"
        assert "bad_data" in str(problem(prometheus.base, "sum by (model) (rate(nv_inference_count[1m])"))
        assert "non-finite" in str(problem(prometheus.base, 'up{job="triton"} * 0 / 0'))
        report = "\n".join(f"{name}: {text}" for name, text in problems.items())
        assert not problems, (
            f"{len(problems)} of {len(queries)} dashboard queries fail:\n{report}\n"
            f"Prometheus log:\n{prometheus.log_tail()}"
        )
