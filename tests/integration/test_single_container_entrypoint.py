"""The single-container image's entry point (deploy/unraid/entrypoint.sh) with the real CLI, the way
the image runs it on a host without internet access: weights baked at build time (the Dockerfile's
BAKE_MODELS step, `stash-vision models fetch` into a folder), an empty /data, no mirror. It must seed
and verify the weights, become `stash-vision serve`, pass the image's HEALTHCHECK, tag an image, and
stop cleanly on the SIGTERM of `docker stop`. (The image itself cannot be built here: no Docker.)"""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import shared_dir, shared_file
from tests.integration.test_lifecycle import descendants
from tests.stack import Stack, cli, free_ports, stack_env, wait_ready
from tests.unit.test_unraid_template import ENTRYPOINT, _healthcheck

pytestmark = pytest.mark.integration

MODEL = "open_nsfw"


@pytest.fixture(scope="module")
def container(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, Path]]:
    workdir = tmp_path_factory.mktemp("single-container")
    # The build's BAKE_MODELS step: fetch into a throw-away data dir, keep its models/ folder.
    bake_env = stack_env(workdir / "bake", shared_dir() / "models", free_ports(5), [MODEL])
    baked = cli(bake_env, "models", "fetch", "--mirror-only")
    assert baked.returncode == 0, baked.stdout + baked.stderr
    shutil.copytree(workdir / "bake" / "models", workdir / "baked")

    data = workdir / "data"
    ports = free_ports(5)
    env = stack_env(data, shared_dir() / "models", ports, [MODEL])
    del env["STASH_VISION_MODEL_MIRROR"]  # offline: only the baked weights
    env["BAKED_MODELS_DIR"] = str(workdir / "baked")
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    log_path = workdir / "container.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(["sh", str(ENTRYPOINT)], env=env, stdout=log, stderr=subprocess.STDOUT)
    running = Stack(process, env, data, log_path, *ports, models=[MODEL])
    try:
        wait_ready(running)
        yield running, workdir
    finally:
        running.stop(signal.SIGTERM)


def test_serves_from_baked_weights_without_a_mirror(container: tuple[Stack, Path]) -> None:
    stack, workdir = container
    for baked in (workdir / "baked").rglob("*"):
        if baked.is_file():
            copy = stack.data_dir / "models" / baked.relative_to(workdir / "baked")
            assert copy.read_bytes() == baked.read_bytes(), copy
    # `exec`: the entry point's own process became `stash-vision serve`.
    command = Path(f"/proc/{stack.process.pid}/cmdline").read_bytes().split(b"\0")
    assert b"serve" in command and not any(part.endswith(b"entrypoint.sh") for part in command), command
    image = shared_file("testdata/images/baboon.jpg")
    tagged = httpx.post(
        f"{stack.http}/process_images/", json={"paths": [str(image)], "threshold": 0.5}, timeout=120
    )
    assert tagged.status_code == 200, tagged.text
    (answer,) = tagged.json()["result"]
    assert answer and "error" not in answer, answer


def test_the_image_health_check_passes(container: tuple[Stack, Path]) -> None:
    stack, _ = container
    command = json.loads(re.sub(r"^.*?CMD\s+", "", _healthcheck()))
    env = {**stack.env, "STASH_VISION_HTTP_PORT": str(stack.http_port)}
    result = subprocess.run(
        [sys.executable, *command[1:]], env=env, capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stderr


def test_sigterm_stops_everything(container: tuple[Stack, Path]) -> None:
    stack, _ = container
    children = descendants(stack.process.pid)
    assert children, "serve started no processes"
    stack.process.send_signal(signal.SIGTERM)
    code = stack.process.wait(60)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.2)
    left = [pid for pid in children if Path(f"/proc/{pid}").exists()]
    assert code == 0, f"serve exited with {code}:\n{stack.log()[-3000:]}"
    assert not left, f"processes left after SIGTERM: {left}"
