"""STASH_VISION_PRECISION's choice per model from a variant manifest and the CPU's features (the
feature probe simulated by a cpuinfo file), the guard's rules on hand-made answers, and the derived
Triton repository serving the chosen file."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.embedded.runtime_repository import RepositoryMode, assemble
from stash_vision.precision.agreement import (
    Detection,
    detection_agreement,
    embedding_agreement,
    tag_agreement,
)
from stash_vision.precision.cpu_features import cpu_flags
from stash_vision.precision.manifest import PrecisionManifest, Target, VariantRecord, write_manifest
from stash_vision.precision.selection import Precision, choose

EPYC_FLAGS = "fpu sse2 avx2 avx512f avx512bw avx512_vnni avx512_bf16"
OLD_XEON_FLAGS = "fpu sse2 avx2 fma"


def _cpuinfo(tmp_path: Path, flags: str) -> Path:
    path = tmp_path / f"cpuinfo-{len(flags)}"
    path.write_text(
        f"processor\t: 0\nmodel name\t: test\nflags\t\t: {flags}\n\nprocessor\t: 1\nflags\t\t: {flags}\n"
    )
    return path


def _write_manifest(entry: CatalogEntry, models_dir: Path, variants: list[VariantRecord]) -> None:
    """A manifest as derive_variants writes it; fp32 measured at 30 images/s."""
    manifest = PrecisionManifest(
        model=entry.name,
        source_sha256=entry.weights.sha256,
        ort_version="test",
        calibration="71 images",
        fp32_images_per_s=30.0,
        variants=variants,
    )
    write_manifest(entry, models_dir, manifest)


@pytest.fixture
def model(tmp_path: Path) -> tuple[CatalogEntry, Path]:
    """open_nsfw with stand-in weight bytes, an int8 variant that passed (3x fp32) and an fp16 one for the GPU."""
    entry = Catalog.load().get("open_nsfw")
    models_dir = tmp_path / "models"
    weights = entry.weights_path(models_dir)
    weights.parent.mkdir(parents=True)
    weights.write_bytes(b"fp32 weights")
    folder = weights.parent / "precision"
    folder.mkdir()
    variants = []
    for name, target, speed in (("int8", Target.CPU, 90.0), ("fp16", Target.GPU, 400.0)):
        (folder / f"{name}.onnx").write_bytes(name.encode())
        variants.append(
            VariantRecord(
                name=name,
                file=f"{name}.onnx",
                sha256=hashlib.sha256(name.encode()).hexdigest(),
                target=target,
                needs=["amx_int8|avx512_vnni|avx_vnni"] if target is Target.CPU else [],
                passed=True,
                agreement={"decision_agreement": 1.0, "max_delta": 0.01},
                images_per_s=speed,
            )
        )
    _write_manifest(entry, models_dir, variants)
    return entry, models_dir


def test_cpu_flags_are_read_from_cpuinfo(tmp_path: Path) -> None:
    assert "avx512_vnni" in cpu_flags(_cpuinfo(tmp_path, EPYC_FLAGS))
    assert cpu_flags(tmp_path / "absent") == frozenset()


def test_auto_serves_int8_on_a_cpu_with_vnni(model: tuple[CatalogEntry, Path], tmp_path: Path) -> None:
    entry, models_dir = model
    choice = choose(entry, models_dir, Precision.AUTO, flags=cpu_flags(_cpuinfo(tmp_path, EPYC_FLAGS)))
    assert choice.variant == "int8"
    assert choice.path.name == "int8.onnx"
    assert "int8 passed" in choice.reason


def test_auto_keeps_fp32_on_a_cpu_without_the_instructions(
    model: tuple[CatalogEntry, Path], tmp_path: Path
) -> None:
    entry, models_dir = model
    choice = choose(entry, models_dir, Precision.AUTO, flags=cpu_flags(_cpuinfo(tmp_path, OLD_XEON_FLAGS)))
    assert choice.variant == "fp32"
    assert choice.path == entry.weights_path(models_dir).resolve()
    assert choice.reason == "int8 needs a CPU with amx_int8 or avx512_vnni or avx_vnni"
    # `reduced` takes a variant that passed the guard even where it is not fast.
    forced = choose(entry, models_dir, Precision.REDUCED, flags=cpu_flags(_cpuinfo(tmp_path, OLD_XEON_FLAGS)))
    assert forced.variant == "int8"


def test_fp32_setting_and_missing_manifest_serve_fp32(model: tuple[CatalogEntry, Path]) -> None:
    entry, models_dir = model
    assert choose(entry, models_dir, Precision.FP32, flags=frozenset({"avx512_vnni"})).variant == "fp32"
    other = Catalog.load().get("yunet")
    choice = choose(other, models_dir, Precision.AUTO, flags=frozenset({"avx512_vnni"}))
    assert choice.variant == "fp32"
    assert "stash-vision models precision yunet" in choice.reason


def test_the_gpu_gets_the_fp16_variant(model: tuple[CatalogEntry, Path]) -> None:
    entry, models_dir = model
    assert choose(entry, models_dir, Precision.AUTO, Target.GPU, frozenset()).variant == "fp16"


def test_the_derived_repository_serves_the_chosen_file(
    model: tuple[CatalogEntry, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, models_dir = model
    monkeypatch.setattr("stash_vision.precision.selection.cpu_flags", lambda: frozenset({"avx512_vnni"}))
    for precision, expected in (("auto", "int8.onnx"), ("fp32", "model.onnx")):
        out = assemble(
            [entry], models_dir, tmp_path / precision, RepositoryMode.EMBEDDED, precision=precision
        )
        config = text_format.Parse(
            (out / "open_nsfw" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        assert Path(config.parameters["onnx_path"].string_value).name == expected
    native = assemble([entry], models_dir, tmp_path / "native", RepositoryMode.NATIVE, precision="auto")
    assert (native / "open_nsfw" / "1" / "model.onnx").read_bytes() == b"int8"


def test_tag_rule_counts_decisions_and_the_largest_confidence_move() -> None:
    fp32 = [{"a": 0.9, "b": 0.1}, {"a": 0.52, "b": 0.2}]
    assert tag_agreement(fp32, [{"a": 0.89, "b": 0.11}, {"a": 0.53, "b": 0.2}], {}).passed
    flipped = tag_agreement(fp32, [{"a": 0.89, "b": 0.11}, {"a": 0.49, "b": 0.2}], {"a": [0.5]})
    assert not flipped.passed and flipped.figures["decision_agreement"] == 0.75
    moved = tag_agreement(fp32, [{"a": 0.85, "b": 0.1}, {"a": 0.52, "b": 0.2}], {})
    assert not moved.passed and "max |delta confidence| 0.050 > 0.03" in moved.reason


def test_detection_rule_pairs_boxes_by_iou() -> None:
    box = np.array([10.0, 10.0, 110.0, 110.0])
    fp32 = [[Detection(box, 0.9)]]
    assert detection_agreement(fp32, [[Detection(box + 1.0, 0.88)]], 0.5).passed
    shifted = detection_agreement(fp32, [[Detection(box + 10.0, 0.9)]], 0.5)
    assert not shifted.passed and "no counterpart with IoU >= 0.9" in shifted.reason
    # A detection within 0.03 of the threshold may move across it.
    assert detection_agreement([[Detection(box, 0.52)]], [[Detection(box, 0.49)]], 0.5).passed


def test_embedding_rule_needs_close_vectors_and_the_same_nearest_face() -> None:
    rng = np.random.default_rng(0)
    faces = rng.normal(size=(6, 128))
    assert embedding_agreement(faces, faces + rng.normal(scale=0.001, size=faces.shape)).passed
    noisy = embedding_agreement(faces, faces + rng.normal(scale=0.2, size=faces.shape))
    assert not noisy.passed and "cosine(fp32, variant)" in noisy.reason


def test_list_models_reports_the_precision_served_and_why(
    model: tuple[CatalogEntry, Path], tmp_path: Path
) -> None:
    from stash_vision.v1 import models_pb2
    from tests.unit.test_grpc_server import FakeSession, make_settings, run, serving

    _, models_dir = model
    # `reduced`: the answer must not depend on the CPU running the test.
    settings = make_settings(tmp_path, data_dir=models_dir.parent, precision="reduced")

    async def scenario() -> None:
        async with serving(settings, FakeSession(ready=True)) as client:
            response = await client.models.ListModels(models_pb2.ListModelsRequest())
        listed = {m.name: m for m in response.models}
        assert listed["open_nsfw"].precision == "int8"
        assert listed["open_nsfw"].precision_reason.startswith(
            "int8 passed (decision_agreement 1, max_delta 0.01"
        )
        assert listed["yunet"].precision == "fp32"
        assert "stash-vision models precision yunet" in listed["yunet"].precision_reason

    run(scenario)


def test_an_openvino_variant_runs_the_fp32_weights_in_the_embedded_repository_only(
    model: tuple[CatalogEntry, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entry, models_dir = model
    _write_manifest(
        entry,
        models_dir,
        [
            VariantRecord(
                name="openvino-bf16",
                file="",
                sha256=hashlib.sha256(b"fp32 weights").hexdigest(),
                target=Target.CPU,
                needs=["amx_bf16|avx512_bf16"],
                runtime="openvino",
                inference_precision="bf16",
                passed=True,
                images_per_s=60.0,
            )
        ],
    )
    monkeypatch.setattr("stash_vision.precision.selection.cpu_flags", lambda: frozenset({"avx512_bf16"}))
    out = assemble([entry], models_dir, tmp_path / "embedded", RepositoryMode.EMBEDDED, precision="auto")
    config = text_format.Parse(
        (out / "open_nsfw" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert Path(config.parameters["onnx_path"].string_value) == entry.weights_path(models_dir).resolve()
    assert config.parameters["runtime"].string_value == "openvino"
    assert config.parameters["inference_precision"].string_value == "bf16"
    # The official image's onnxruntime backend cannot run it: fp32 there.
    native = assemble([entry], models_dir, tmp_path / "native", RepositoryMode.NATIVE, precision="auto")
    assert (native / "open_nsfw" / "1" / "model.onnx").read_bytes() == b"fp32 weights"


def test_auto_keeps_fp32_for_a_gain_within_measurement_noise(model: tuple[CatalogEntry, Path]) -> None:
    entry, models_dir = model
    int8 = VariantRecord(
        name="int8",
        file="int8.onnx",
        sha256=hashlib.sha256(b"int8").hexdigest(),
        target=Target.CPU,
        passed=True,
        images_per_s=33.0,  # 1.1x the 30 images/s of fp32
    )
    _write_manifest(entry, models_dir, [int8])
    choice = choose(entry, models_dir, Precision.AUTO, flags=frozenset({"avx512_vnni"}))
    assert choice.variant == "fp32"
    assert choice.reason == "int8 measured less than 1.15x fp32 (33.0 vs 30.0 images/s)"
    assert choose(entry, models_dir, Precision.REDUCED, flags=frozenset()).variant == "int8"
