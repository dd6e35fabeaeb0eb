"""scripts/gpu-check on this GPU-less machine: it refuses at once, with one line and a non-zero
exit, before installing or starting anything; and the contract comparison it ends with."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from bench.gpu_check import compare_tags
from tests.conftest import REPO

REFUSAL = "gpu-check: no NVIDIA GPU here (nvidia-smi lists none); run it on a host with a GPU and its driver"


def _run(command: list[str], **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        command, cwd=REPO, capture_output=True, text=True, timeout=60, env={**os.environ, **env}
    )
    return done, time.monotonic() - started


def test_the_script_refuses_here_in_one_line_before_touching_the_venv() -> None:
    stamps = sorted(p.name for p in (REPO / ".venv").glob(".installed-*"))
    done, seconds = _run([str(REPO / "scripts" / "gpu-check")])
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.splitlines() == [REFUSAL]
    assert seconds < 10
    assert sorted(p.name for p in (REPO / ".venv").glob(".installed-*")) == stamps  # nothing installed


def test_the_script_refuses_when_nvidia_smi_lists_no_gpu(tmp_path: Path) -> None:
    """A driver without a visible GPU (a container started without --gpus)."""
    fake = tmp_path / "nvidia-smi"
    fake.write_text("#!/bin/sh\necho 'No devices were found'\nexit 6\n")
    fake.chmod(0o755)
    done, _ = _run([str(REPO / "scripts" / "gpu-check")], PATH=f"{tmp_path}:{os.environ['PATH']}")
    assert (done.returncode, done.stdout, done.stderr.splitlines()) == (1, "", [REFUSAL])


def test_the_check_itself_refuses_with_the_probes_reason() -> None:
    """Past nvidia-smi (a GPU listed but no working driver, e.g. in a container without --gpus),
    the Python side asks the driver itself and says why, starting nothing."""
    done, _ = _run([sys.executable, "-m", "bench.gpu_check"], CUDA_VISIBLE_DEVICES="")
    assert done.returncode == 1
    assert done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line in (
        "gpu-check: no usable GPU here: no NVIDIA driver (libcuda.so.1 not found)",  # this machine
        "gpu-check: no usable GPU here: no CUDA device visible (check CUDA_VISIBLE_DEVICES and the "
        "container's --gpus)",  # a GPU host, its GPU hidden
    )


IMAGE = {"nsfw": {"Safe": 0.91}, "bodyparts": {"Face": 0.55, "Feet": 0.31}}


def test_same_answers_within_the_tolerance_pass() -> None:
    near = {"nsfw": {"Safe": 0.905}, "bodyparts": {"Face": 0.551}}  # Feet (0.31) fell under 0.3 on the GPU
    assert compare_tags([IMAGE], [near], threshold=0.3, tolerance=0.02) == []


def test_differences_beyond_the_tolerance_are_named() -> None:
    far = {"nsfw": {"Safe": 0.80}, "bodyparts": {"Feet": 0.31}}  # and Face missing at 0.55
    assert compare_tags([IMAGE], [far], threshold=0.3, tolerance=0.02) == [
        "image 0 Face: 0.5500 on the CPU only",
        "image 0 Safe: 0.9100 on the CPU, 0.8000 on the GPU",
    ]
    assert compare_tags([IMAGE], [], threshold=0.3, tolerance=0.02) == ["1 answers on the CPU, 0 on the GPU"]
