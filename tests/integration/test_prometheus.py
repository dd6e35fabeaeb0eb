"""Metrics in Prometheus for real: Debian's prometheus scrapes the embedded stack with the project's
own scrape config, and Triton's nv_inference_count for a model that just served shows up in its
query API."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from stash_vision.v1 import inference_pb2_grpc
from tests.conftest import shared_file
from tests.integration.grpc_helpers import channel, infer
from tests.integration.prometheus_helpers import query, running_prometheus
from tests.stack import Stack

pytestmark = pytest.mark.integration


def test_triton_inference_count_reaches_prometheus(stack: Stack, tmp_path: Path) -> None:
    with running_prometheus(stack, tmp_path) as prometheus:
        base = prometheus.base
        stub = inference_pb2_grpc.InferenceServiceStub(channel(stack.grpc_target))
        data = shared_file("testdata/images/baboon.jpg").read_bytes()
        for _ in range(5):
            infer(stub, "open_nsfw", data=data)

        deadline = time.monotonic() + 60
        count = _polled(base, 'nv_inference_count{model="open_nsfw"}', deadline, lambda v: v >= 5)
        log = prometheus.log_tail()
        assert count >= 5, f"nv_inference_count never reached Prometheus; its log:\n{log}"
        # The service's own metrics are scraped too. Each target is scraped on its own schedule, so
        # Triton's may be in while the adapter's first scrape has not happened yet: wait for each.
        for job in ("stash-vision-server", "stash-vision-adapter"):
            up = _polled(base, f'up{{job="{job}"}}', deadline, lambda v: v == 1)
            assert up == 1, f"{job} never scraped up; Prometheus' log:\n{prometheus.log_tail()}"


def _polled(base: str, promql: str, deadline: float, done: Callable[[float], bool]) -> float:
    """The largest value `promql` returns, polled every second until `done` or the deadline; 0 while
    Prometheus has nothing for it (no scrape yet) or answers an error (still starting)."""
    value = 0.0
    while time.monotonic() < deadline:
        try:
            result = query(base, promql)
            value = max((float(r["value"][1]) for r in result), default=0.0)  # type: ignore[index]
        except OSError:
            value = 0.0
        if done(value):
            break
        time.sleep(1)
    return value
