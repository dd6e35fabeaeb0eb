"""The HTTP adapter in front of the real stack: /ready, /health, /metrics."""

from __future__ import annotations

import urllib.request

import pytest

from tests.stack import Stack, http_get

pytestmark = pytest.mark.integration


def test_ready_lists_loaded_models(stack: Stack) -> None:
    status, body = http_get(f"{stack.http}/ready")
    assert status == 200
    assert body["ready"] is True  # type: ignore[index]
    assert set(body["loaded_pipelines"]) == {
        "mobilefacenet",
        "nudenet_320n",
        "open_nsfw",
        "scrfd_500m",
        "yunet",
    }  # type: ignore[index]


def test_health_has_the_successor_clients_keys(stack: Stack) -> None:
    status, body = http_get(f"{stack.http}/health")
    assert status == 200
    assert isinstance(body, dict)
    for key in ("status", "time", "pipelines", "total_ai_models", "outstanding_requests", "cuda_available"):
        assert key in body, key
    assert body["status"] == "ok"
    assert body["total_ai_models"] == 5
    assert body["cuda_available"] is False


def test_metrics_are_prometheus_text(stack: Stack) -> None:
    http_get(f"{stack.http}/ready")
    with urllib.request.urlopen(f"{stack.http}/metrics", timeout=5) as response:
        text = response.read().decode()
        assert response.headers["Content-Type"].startswith("text/plain")
    assert 'http_requests_total{method="GET",route="/ready",status="200"}' in text
    with urllib.request.urlopen(
        f"http://127.0.0.1:{stack.server_metrics_port}/metrics", timeout=5
    ) as response:
        server_text = response.read().decode()
    assert "grpc_server_handled_total" in server_text
