"""The device on the real stack: STASH_VISION_DEVICE=auto on this GPU-less machine gives the CPU
with one log line that says why, and what ListModels, /health and the server's metrics report is
the device the runner's ONNX Runtime session really got (its report), not Triton's instance kind."""

from __future__ import annotations

import os
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from stash_vision.embedded.device_report import REPORT_FILE, DeviceReport, read_report, write_report
from stash_vision.v1 import models_pb2, models_pb2_grpc
from tests.conftest import shared_dir
from tests.integration.grpc_helpers import channel
from tests.stack import Stack, free_ports, http_get, stack_env, start_stack

pytestmark = pytest.mark.integration

MODEL = "open_nsfw"


@pytest.fixture(scope="module")
def cpu_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("device"),
        shared_dir() / "models",
        [MODEL],
        fetch=[MODEL],
        extra_env={"STASH_VISION_DEVICE": "auto"},
    )
    try:
        yield running
    finally:
        running.stop()


def _report_path(stack: Stack) -> Path:
    return stack.data_dir / "runtime" / "model_repository" / MODEL / REPORT_FILE


def _listed_device(stack: Stack) -> str:
    with channel(stack.grpc_target) as grpc_channel:
        reply = models_pb2_grpc.ModelServiceStub(grpc_channel).ListModels(
            models_pb2.ListModelsRequest(), timeout=10
        )
    (model,) = [m for m in reply.models if m.name == MODEL]
    assert model.state == models_pb2.MODEL_STATE_READY
    return model.device


def _device_metric(stack: Stack) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{stack.server_metrics_port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    prefix = 'stash_vision_model_device{device="'
    values = {}
    for line in text.splitlines():
        if line.startswith(prefix) and f'model="{MODEL}"' in line:
            device = line[len(prefix) :].split('"', 1)[0]
            values[device] = float(line.rsplit(" ", 1)[1])
    return values


def test_auto_without_a_gpu_runs_on_the_cpu_and_says_why_once(cpu_stack: Stack) -> None:
    lines = [line for line in cpu_stack.log().splitlines() if "device:" in line]
    assert len(lines) == 1, lines
    assert "auto runs the models on the CPU: no NVIDIA driver (libcuda.so.1 not found)" in lines[0]


def test_the_runner_reports_the_providers_its_session_got(cpu_stack: Stack) -> None:
    report = read_report(_report_path(cpu_stack))
    assert report == DeviceReport(device="cpu", providers=["CPUExecutionProvider"], requested="cpu")


def test_list_models_health_and_metrics_say_cpu(cpu_stack: Stack) -> None:
    assert _listed_device(cpu_stack) == "cpu"
    status, health = http_get(f"{cpu_stack.http}/health")
    assert status == 200
    assert health["current_device"] == "cpu" and health["cuda_available"] is False
    assert health["pipelines"][MODEL]["device"] == "cpu"  # type: ignore[index]
    assert _device_metric(cpu_stack) == {"cpu": 1.0}


def test_what_is_reported_is_the_runners_report_not_the_instance_kind(cpu_stack: Stack) -> None:
    """The config still says KIND_CPU; a report saying CUDA (what a GPU runner writes) is what
    every surface shows, and an unreadable one is shown as unknown, never guessed."""
    path = _report_path(cpu_stack)
    original = path.read_text()
    try:
        write_report(path, DeviceReport("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda"))
        assert _listed_device(cpu_stack) == "gpu"
        _, health = http_get(f"{cpu_stack.http}/health")
        assert health["current_device"] == "cuda"
        assert _device_metric(cpu_stack) == {"gpu": 1.0}
        path.write_text("{not json")
        assert _listed_device(cpu_stack) == ""
    finally:
        path.write_text(original)
    assert _listed_device(cpu_stack) == "cpu"


def test_cuda_without_a_gpu_refuses_to_start_with_one_clear_line(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "data", shared_dir() / "models", free_ports(5), [MODEL])
    env["STASH_VISION_DEVICE"] = "cuda"
    done = subprocess.run(
        [sys.executable, "-m", "stash_vision.cli", "serve"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if "cannot start" in line]
    assert len(errors) == 1, done.stderr
    assert (
        "STASH_VISION_DEVICE=cuda, but no NVIDIA driver (libcuda.so.1 not found); "
        "set STASH_VISION_DEVICE=auto or cpu to run on the CPU"
    ) in errors[0]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data" / "runtime" / "model_repository").exists()  # nothing started
