"""Metrics in Prometheus for real: Debian's prometheus scrapes the embedded stack with the project's
own scrape config, and Triton's nv_inference_count for a model that just served shows up in its
query API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.parse
import urllib.request
from pathlib import Path
from string import Template

import pytest

from stash_vision.v1 import inference_pb2_grpc
from tests.conftest import REPO, shared_file
from tests.integration.grpc_helpers import channel, infer
from tests.stack import Stack, free_ports

pytestmark = pytest.mark.integration


def query(base: str, expression: str) -> list[dict[str, object]]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = json.loads(response.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def test_triton_inference_count_reaches_prometheus(stack: Stack, tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the 'prometheus' binary is not installed (scripts/test installs Debian's package)")
    template = Template((REPO / "deploy/prometheus/prometheus.embedded.yml.in").read_text())
    config = tmp_path / "prometheus.yml"
    config.write_text(
        template.substitute(
            TRITON_METRICS=f"127.0.0.1:{stack.triton_metrics_port}",
            SERVER_METRICS=f"127.0.0.1:{stack.server_metrics_port}",
            ADAPTER=f"127.0.0.1:{stack.http_port}",
        )
    )
    port = free_ports(1)[0]
    base = f"http://127.0.0.1:{port}"
    prometheus = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=(tmp_path / "prometheus.log").open("wb"),
    )
    try:
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
        log = (tmp_path / "prometheus.log").read_text(errors="replace")[-2000:]
        assert count >= 5, f"nv_inference_count never reached Prometheus; its log:\n{log}"
        # The service's own metrics are scraped too.
        assert query(base, 'up{job="stash-vision-server"}')[0]["value"][1] == "1"  # type: ignore[index]
        assert query(base, 'up{job="stash-vision-adapter"}')[0]["value"][1] == "1"  # type: ignore[index]
    finally:
        prometheus.terminate()
        prometheus.wait(30)
