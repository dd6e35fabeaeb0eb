"""Supervision of the real stack: a killed Triton comes back, shutdown leaves no process behind,
and start-up problems end with one clear message."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from stash_vision.v1 import inference_pb2_grpc
from tests.conftest import shared_dir, shared_file
from tests.integration.grpc_helpers import channel, infer, tensors
from tests.stack import Stack, free_ports, http_get, stack_env, start_stack

pytestmark = pytest.mark.integration


def descendants(pid: int) -> set[int]:
    """Every process below pid, from /proc (children of children included)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: set[int] = set()
    stack = [pid]
    while stack:
        for child in children.get(stack.pop(), []):
            found.add(child)
            stack.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie has exited already; only its parent's wait() is missing.
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def process_name(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def eventually(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def health_status(target: str) -> int:
    try:
        stub = health_pb2_grpc.HealthStub(channel(target))
        return int(stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2).status)
    except grpc.RpcError:
        return -1


@pytest.fixture
def own_stack(tmp_path: Path) -> Iterator[Stack]:
    """A stack of one model that this test may break."""
    stack = start_stack(tmp_path, shared_dir() / "models", models=["open_nsfw"])
    try:
        yield stack
    finally:
        stack.stop()


def test_a_killed_triton_is_restarted_and_serving_resumes(own_stack: Stack) -> None:
    stub = inference_pb2_grpc.InferenceServiceStub(channel(own_stack.grpc_target))
    data = shared_file("testdata/images/fruits.jpg").read_bytes()
    baseline = tensors(infer(stub, "open_nsfw", data=data))["outputs"]
    triton = next(p for p in descendants(own_stack.process.pid) if "tritonserver" in process_name(p))

    os.kill(triton, signal.SIGKILL)

    # While Triton is down: health NOT_SERVING, /ready 503, inference UNAVAILABLE (never a hang or crash).
    saw_unavailable = False
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not saw_unavailable:
        try:
            infer(stub, "open_nsfw", data=data, timeout=5)
        except grpc.RpcError as error:
            assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
            assert "Triton" in error.details()
            saw_unavailable = True
        if not saw_unavailable:
            time.sleep(0.05)
    assert saw_unavailable
    # The readiness watcher polls Triton every second: within a few seconds health and /ready follow.
    assert eventually(lambda: health_status(own_stack.grpc_target) != health_pb2.HealthCheckResponse.SERVING)
    assert eventually(lambda: http_get(f"{own_stack.http}/ready")[0] == 503)

    # The supervisor restarts it; health turns SERVING only once the model is ready again.
    deadline = time.monotonic() + 90
    while health_status(own_stack.grpc_target) != health_pb2.HealthCheckResponse.SERVING:
        assert time.monotonic() < deadline, f"not serving again:\n{own_stack.log()[-3000:]}"
        time.sleep(0.5)
    again = tensors(infer(stub, "open_nsfw", data=data))["outputs"]
    assert abs(float(again[0, 1]) - float(baseline[0, 1])) < 1e-5
    assert http_get(f"{own_stack.http}/ready")[0] == 200
    new_triton = [p for p in descendants(own_stack.process.pid) if "tritonserver" in process_name(p)]
    assert new_triton and triton not in new_triton
    assert "tritonserver exited" in own_stack.log()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_shutdown_leaves_no_process_and_no_shared_memory(tmp_path: Path, sig: int) -> None:
    stack = start_stack(tmp_path, shared_dir() / "models", models=["yunet"])
    family = descendants(stack.process.pid)
    names = " | ".join(process_name(p) for p in family)
    assert any("tritonserver" in process_name(p) for p in family), names
    assert any("triton_python_backend_stub" in process_name(p) for p in family), names
    assert any("stash_vision.server" in process_name(p) for p in family), names
    assert any("stash_vision.adapter" in process_name(p) for p in family), names
    shm_prefix = f"stash_vision_{stack.process.pid}_"
    assert any(p.name.startswith(shm_prefix) for p in Path("/dev/shm").iterdir())

    assert stack.stop(sig, timeout_s=60) == 0
    deadline = time.monotonic() + 10
    while any(alive(p) for p in family) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert [process_name(p) for p in family if alive(p)] == []
    assert not any(p.name.startswith(shm_prefix) for p in Path("/dev/shm").iterdir())
    for port in (stack.http_port, stack.grpc_port, stack.triton_grpc_port):
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, f"port {port} still open"


def serve_once(env: dict[str, str], timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stash_vision.cli", "serve"],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def test_serving_without_fetched_weights_says_what_to_run(tmp_path: Path) -> None:
    env = stack_env(tmp_path / "empty", shared_dir() / "models", free_ports(5), ["open_nsfw", "yunet"])
    result = serve_once(env)
    assert result.returncode == 1
    assert "weights not fetched for: open_nsfw yunet" in result.stderr
    assert "stash-vision models fetch open_nsfw yunet" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_port_in_use_is_named_with_its_setting(tmp_path: Path) -> None:
    ports = free_ports(5)
    env = stack_env(tmp_path / "data", shared_dir() / "models", ports, ["open_nsfw"])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[0]))
        squatter.listen()
        result = serve_once(env)
    assert result.returncode == 1
    assert f"port {ports[0]} on 127.0.0.1 is already in use (STASH_VISION_HTTP_PORT)" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_triton_that_cannot_run_is_reported_in_one_line(tmp_path: Path) -> None:
    # A Python without the embedded extra stands for a machine where the binary is not available.
    env = stack_env(tmp_path / "data", shared_dir() / "models", free_ports(5), ["open_nsfw"])
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, importlib.util as u; real = u.find_spec; "
            "u.find_spec = lambda n, *a: None if n == 'pytriton' else real(n, *a); "
            "from stash_vision.cli import main; sys.exit(main(['serve']))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "cannot start: the embedded Triton needs the nvidia-pytriton wheel" in result.stderr
    assert "Traceback" not in result.stderr
