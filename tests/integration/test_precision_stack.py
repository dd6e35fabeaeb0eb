"""Reduced precision on the real stack, with the skier233 stand-in imported as a user would:
`models fetch` derives its variants and judges them on the shared test images, and with the
default STASH_VISION_PRECISION=auto Triton serves the fastest variant that passed the guard and
runs fast on this CPU (on this project's CPUs, with AVX-512 BF16: bf16 with the classifier head
in fp32, int8 and plain bf16 being refused for this model). /health, ListModels and `models list`
say which and why, and the answers still match the original server's golden ones."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from stash_vision.catalog.importers import import_skier233
from stash_vision.precision.cpu_features import BF16_FLAGS, cpu_flags
from tests.conftest import shared_dir, shared_file
from tests.integration import test_skier233_conformance as conformance
from tests.stack import Stack, cli, start_stack

pytestmark = pytest.mark.integration

MODEL = "vivid_galaxy_standin"


@pytest.fixture(scope="module")
def reduced_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("precision")
    data = workdir / "data"
    import_skier233(
        shared_file("models/skier233-standin/vivid_galaxy_standin.yaml"),
        data / "model_repository",
        data / "models",
    )
    stack = start_stack(
        workdir,
        shared_dir() / "models",
        models=[MODEL],
        extra_env={
            "STASH_VISION_PRECISION": "auto",
            "STASH_VISION_PRECISION_CALIBRATION_DIR": str(shared_dir() / "testdata"),
        },
    )
    try:
        yield stack
    finally:
        stack.stop()


def test_the_served_variant_and_the_guards_verdicts_are_reported(reduced_stack: Stack) -> None:
    health = httpx.get(f"{reduced_stack.http}/health", timeout=30).json()
    pipeline = health["pipelines"][MODEL]
    assert pipeline["ready"] is True
    served = pipeline["precision"]
    if cpu_flags() & BF16_FLAGS:
        assert served == "openvino-bf16-fp32-head", pipeline["precision_reason"]
        assert pipeline["precision_reason"].startswith(
            "openvino-bf16-fp32-head passed (decision_agreement 0.99"
        )
    else:  # bf16 is emulated, not fast: auto keeps fp32 unless OpenVINO's fp32 measured clearly faster
        assert served in {"fp32", "openvino-fp32"}, pipeline["precision_reason"]

    listed = cli(reduced_stack.env, "models", "list")
    assert listed.returncode == 0, listed.stderr
    (row,) = [line for line in listed.stdout.splitlines() if line.startswith(MODEL)]
    assert served in row

    derived = cli(reduced_stack.env, "models", "precision", MODEL)  # cached: nothing derived again
    assert derived.returncode == 0, derived.stderr
    assert "int8 refused: same tag decisions on" in derived.stdout
    assert "openvino-bf16 refused: same tag decisions on" in derived.stdout
    assert "openvino-bf16-fp32-head passed" in derived.stdout
    assert "openvino-fp32 passed" in derived.stdout


def test_golden_answers_still_match_under_the_variant(reduced_stack: Stack) -> None:
    conformance.test_process_images_matches_the_original_server(reduced_stack, "process_images_small")
