"""Starts the real stack the way a user does (`stash-vision models fetch`, `stash-vision serve`) on
free loopback ports, for integration tests and benchmarks."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

STACK_START_TIMEOUT_S = 240


def free_ports(count: int) -> list[int]:
    sockets, ports = [], []
    for _ in range(count):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
        ports.append(s.getsockname()[1])
    for s in sockets:
        s.close()
    return ports


@dataclass
class Stack:
    process: subprocess.Popen[bytes]
    env: dict[str, str]
    data_dir: Path
    log_path: Path
    http_port: int
    grpc_port: int
    server_metrics_port: int
    triton_grpc_port: int
    triton_metrics_port: int
    models: list[str] = field(default_factory=list)

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, sig: int = signal.SIGINT, timeout_s: float = 60) -> int:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


def stack_env(
    data_dir: Path, mirror: Path, ports: list[int], models: list[str] | None = None
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        STASH_VISION_DATA_DIR=str(data_dir),
        STASH_VISION_MODEL_MIRROR=str(mirror),
        STASH_VISION_HOST="127.0.0.1",
        STASH_VISION_HTTP_PORT=str(ports[0]),
        STASH_VISION_GRPC_PORT=str(ports[1]),
        STASH_VISION_SERVER_METRICS_PORT=str(ports[2]),
        STASH_VISION_TRITON_GRPC_PORT=str(ports[3]),
        STASH_VISION_TRITON_METRICS_PORT=str(ports[4]),
        STASH_VISION_MODELS=json.dumps(models or []),
        PYTHONUNBUFFERED="1",
    )
    env.pop("STASH_VISION_TRITON_URL", None)
    return env


def cli(env: dict[str, str], *args: str, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stash_vision.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def start_stack(
    workdir: Path,
    mirror: Path,
    models: list[str] | None = None,
    *,
    extra_env: dict[str, str] | None = None,
    fetch: list[str] | None = None,
) -> Stack:
    """`fetch` names the models to fetch from the mirror (default: every served one); weights a
    test installs itself (synthetic models) are left out of it."""
    data_dir = workdir / "data"
    ports = free_ports(5)
    env = {**stack_env(data_dir, mirror, ports, models), **(extra_env or {})}
    fetched = cli(env, "models", "fetch", "--mirror-only", *(fetch or []))
    if fetched.returncode != 0:
        raise RuntimeError(f"models fetch failed:\n{fetched.stdout}\n{fetched.stderr}")
    log_path = workdir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "stash_vision.cli", "serve"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    stack = Stack(process, env, data_dir, log_path, *ports, models=models or [])
    wait_ready(stack)
    return stack


def http_get(url: str, timeout_s: float = 5) -> tuple[int, dict[str, object]]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"null")


def wait_ready(stack: Stack, timeout_s: float = STACK_START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if stack.process.poll() is not None:
            raise RuntimeError(f"stash-vision serve exited with {stack.process.returncode}:\n{stack.log()}")
        try:
            status, _ = http_get(f"{stack.http}/ready", timeout_s=2)
            if status == 200:
                return
        except (OSError, ValueError):
            pass
        time.sleep(0.5)
    stack.stop()
    raise RuntimeError(f"stack not ready within {timeout_s} s:\n{stack.log()}")
