"""Metrics in Prometheus for real: Debian's prometheus scrapes the embedded stack with the project's
own scrape config, and Triton's nv_inference_count for a model that just served shows up in its
query API."""

from __future__ import annotations

import time
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
        count = 0.0
        while time.monotonic() < deadline:
            try:
                result = query(base, 'nv_inference_count{model="open_nsfw"}')
                count = max((float(r["value"][1]) for r in result), default=0.0)  # type: ignore[index]
            except OSError:
                count = 0.0
            if count >= 5:
                break
            time.sleep(1)
        log = prometheus.log_tail()
        assert count >= 5, f"nv_inference_count never reached Prometheus; its log:\n{log}"
        # The service's own metrics are scraped too.
        assert query(base, 'up{job="stash-vision-server"}')[0]["value"][1] == "1"  # type: ignore[index]
        assert query(base, 'up{job="stash-vision-adapter"}')[0]["value"][1] == "1"  # type: ignore[index]
