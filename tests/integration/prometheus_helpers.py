"""A real Prometheus (Debian's `prometheus` binary) scraping a running embedded stack with the
project's own scrape config (deploy/prometheus/prometheus.embedded.yml.in), and its query API."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from string import Template

import pytest

from tests.conftest import REPO
from tests.stack import Stack, free_ports


class QueryRefused(AssertionError):
    """Prometheus answered the query with an error (a PromQL syntax or evaluation error)."""


@dataclass(frozen=True)
class RunningPrometheus:
    base: str
    log_path: Path

    def log_tail(self) -> str:
        return self.log_path.read_text(errors="replace")[-2000:]


def query(base: str, expression: str) -> list[dict[str, object]]:
    """The instant query's result vector; a refused expression raises QueryRefused with Prometheus'
    own error message (a 400 for a parse error, a 422 for an evaluation error)."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expression})}"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as error:
        try:
            body = json.loads(error.read() or b"{}")
        except ValueError:
            # Not Prometheus' JSON error (e.g. a plain-text 503 while it starts): a transient
            # failure, raised as the HTTPError (an OSError) that callers retry on.
            raise error from None
        raise QueryRefused(f"{expression}: {body.get('errorType')}: {body.get('error')}") from None
    if body["status"] != "success":
        raise QueryRefused(f"{expression}: {body}")
    return list(body["data"]["result"])


def wait_for_every_target(base: str, jobs: int = 3, timeout_s: float = 60) -> None:
    """Until Prometheus has scraped each of its `jobs` targets successfully at least once: counters read
    before a workload are the baseline its rate() windows need."""
    deadline = time.monotonic() + timeout_s
    up: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        try:
            up = query(base, "up")
        except OSError:
            up = []
        if len(up) == jobs and all(series["value"][1] == "1" for series in up):  # type: ignore[index]
            return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus did not scrape all {jobs} targets within {timeout_s} s: {up}")


@contextmanager
def running_prometheus(stack: Stack, workdir: Path) -> Iterator[RunningPrometheus]:
    """Prometheus on a free loopback port, scraping the stack's Triton, server and adapter every second."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("the 'prometheus' binary is not installed (scripts/test installs Debian's package)")
    template = Template((REPO / "deploy/prometheus/prometheus.embedded.yml.in").read_text())
    config = workdir / "prometheus.yml"
    config.write_text(
        template.substitute(
            TRITON_METRICS=f"127.0.0.1:{stack.triton_metrics_port}",
            SERVER_METRICS=f"127.0.0.1:{stack.server_metrics_port}",
            ADAPTER=f"127.0.0.1:{stack.http_port}",
        )
    )
    port = free_ports(1)[0]
    log_path = workdir / "prometheus.log"
    with log_path.open("wb") as log:
        prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={workdir / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        yield RunningPrometheus(f"http://127.0.0.1:{port}", log_path)
    finally:
        prometheus.terminate()
        prometheus.wait(30)
