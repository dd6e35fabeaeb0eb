"""The accuracy guard and the variant cache on a real model (open_nsfw) and real images: a variant
whose quantization destroys its output is refused and fp32 is served with the guard's reason; a
variant that agrees is used; a variant changed on disk is refused, then rebuilt."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.precision.calibration import Feed
from stash_vision.precision.manifest import Target, read_manifest
from stash_vision.precision.selection import Precision, choose
from stash_vision.precision.variants import Fp16ForGpu, Int8Static, derive_variants
from tests.conftest import shared_dir, shared_file

VNNI = frozenset({"avx512f", "avx512_vnni"})


@dataclass
class OutputDestroyingInt8:
    """int8 quantization that, as a broken quantizer could, flattens the model's only output to a
    constant (every class 0.9, whatever the image)."""

    name: str = "int8"
    target: Target = Target.CPU
    needs: list[str] = field(default_factory=list)
    openvino_precision: str = ""

    def build(self, source: Path, out: Path, calibration: Sequence[Feed]) -> None:
        Int8Static().build(source, out, calibration)
        model = onnx.load(str(out))
        output = model.graph.output[0]
        broken = output.name + "_before_damage"
        for node in model.graph.node:
            node.output[:] = [broken if o == output.name else o for o in node.output]
        model.graph.initializer.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
        model.graph.initializer.append(numpy_helper.from_array(np.array(0.9, np.float32), "constant"))
        model.graph.node.append(helper.make_node("Mul", [broken, "zero"], ["flattened"]))
        model.graph.node.append(helper.make_node("Add", ["flattened", "constant"], [output.name]))
        onnx.save(model, str(out))


@pytest.fixture(scope="module")
def open_nsfw(tmp_path_factory: pytest.TempPathFactory) -> tuple[CatalogEntry, Path]:
    models_dir = tmp_path_factory.mktemp("data") / "models"
    entry = Catalog.load().get("open_nsfw")
    weights = entry.weights_path(models_dir)
    weights.parent.mkdir(parents=True)
    shutil.copy(shared_file("models/content/open_nsfw.onnx"), weights)
    return entry, models_dir


def _derive(entry: CatalogEntry, models_dir: Path, *builders: object, force: bool = False) -> None:
    derive_variants(
        entry,
        models_dir,
        shared_dir() / "testdata" / "images",
        {"open_nsfw": entry},
        threads=1,
        builders=builders,  # type: ignore[arg-type]
        force=force,
    )


def test_a_variant_that_destroys_an_output_is_refused_and_fp32_served(
    open_nsfw: tuple[CatalogEntry, Path],
) -> None:
    entry, models_dir = open_nsfw
    _derive(entry, models_dir, OutputDestroyingInt8(), force=True)
    manifest = read_manifest(entry, models_dir)
    assert manifest is not None and manifest.calibration.startswith("7 images")
    (variant,) = manifest.variants
    assert not variant.passed
    assert "same tag decisions on 0.00% of 7 (image, tag) pairs" in variant.reason
    assert variant.agreement["max_delta"] > 0.5
    for precision in (Precision.AUTO, Precision.REDUCED):
        choice = choose(entry, models_dir, precision, flags=VNNI)
        assert choice.variant == "fp32"
        assert choice.path == entry.weights_path(models_dir).resolve()
        assert "int8 refused by the accuracy guard: same tag decisions on 0.00%" in choice.reason


def test_an_agreeing_variant_is_served_and_a_tampered_one_refused_then_rebuilt(
    open_nsfw: tuple[CatalogEntry, Path],
) -> None:
    entry, models_dir = open_nsfw
    # fp16 agrees with fp32 on open_nsfw; judged here as a CPU variant so this machine can serve it.
    fp16 = Fp16ForGpu(name="fp16", target=Target.CPU)
    _derive(entry, models_dir, fp16, force=True)
    manifest = read_manifest(entry, models_dir)
    assert manifest is not None
    (variant,) = manifest.variants
    assert variant.passed, variant.reason
    assert variant.agreement["decision_agreement"] == 1.0
    assert variant.agreement["max_delta"] <= 0.03
    served = choose(entry, models_dir, Precision.REDUCED, flags=frozenset())
    assert served.variant == "fp16"
    assert served.path.name == "fp16.onnx"
    assert choose(entry, models_dir, Precision.FP32).variant == "fp32"

    # Cached: deriving again keeps the same file (same checksum, same mtime).
    mtime = served.path.stat().st_mtime_ns
    _derive(entry, models_dir, fp16)
    assert served.path.stat().st_mtime_ns == mtime

    with served.path.open("r+b") as handle:  # one flipped byte
        handle.seek(100)
        byte = handle.read(1)
        handle.seek(100)
        handle.write(bytes([byte[0] ^ 0xFF]))
    refused = choose(entry, models_dir, Precision.REDUCED, flags=frozenset())
    assert refused.variant == "fp32"
    assert "failed its checksum" in refused.reason

    _derive(entry, models_dir, fp16)  # the tampered file is rebuilt
    assert choose(entry, models_dir, Precision.REDUCED, flags=frozenset()).variant == "fp16"


def test_the_openvino_runner_batches_requests_like_the_onnx_runtime_one(
    open_nsfw: tuple[CatalogEntry, Path],
) -> None:
    from stash_vision.embedded.ort_runner import OnnxRuntimeRunner
    from stash_vision.precision.openvino_runtime import OpenVinoRunner

    entry, models_dir = open_nsfw
    weights = str(entry.weights_path(models_dir))
    rng = np.random.default_rng(0)
    requests = [{"input:0": rng.uniform(-120, 130, (n, 224, 224, 3)).astype(np.float32)} for n in (1, 2)]
    reference = OnnxRuntimeRunner(weights, ["input:0"], ["outputs"], threads=1).run_batched(requests)
    runner = OpenVinoRunner(weights, ["input:0"], ["outputs"], threads=1, precision="f32")
    answers = runner.run_batched(requests)
    assert [a["outputs"].shape for a in answers] == [(1, 2), (2, 2)]
    for ours, theirs in zip(answers, reference, strict=True):
        np.testing.assert_allclose(ours["outputs"], theirs["outputs"], atol=1e-4)
    assert runner.device.providers == ["OpenVINO CPU (f32)"]
