"""Derives a model's reduced-precision variants once (at fetch or import), judges each with the
accuracy guard on the calibration set, and records the outcome in the manifest beside the weights.

Chosen by measurement on an AMD EPYC with AVX-512 VNNI/BF16 (docs/precision.md): ONNX Runtime's
static int8 (QDQ, per-channel weights) is the fastest where it passes; OpenVINO runs the same fp32
weights in bf16 (whole, or with the classifier's head kept in fp32) or in fp32; fp16 on ORT's CPU
EP gains nothing, so fp16 is derived for the GPU (CUDA EP) only. Dynamic int8 is slower than fp32
on convolutions and is not derived."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

import numpy as np

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.catalog.fetcher import sha256_of
from stash_vision.precision import openvino_runtime
from stash_vision.precision.calibration import (
    CalibrationError,
    Feed,
    Outputs,
    Role,
    calibration_images,
    role_for,
    run_all,
)
from stash_vision.precision.classifier_head import classifier_head_input
from stash_vision.precision.cpu_features import BF16_FLAGS, INT8_DOT_PRODUCT_FLAGS
from stash_vision.precision.manifest import (
    PrecisionManifest,
    Target,
    VariantRecord,
    precision_dir,
    read_manifest,
    write_manifest,
)

log = logging.getLogger(__name__)


class VariantBuilder(Protocol):
    name: str
    target: Target
    needs: list[str]
    # Set for a runtime variant of the fp32 weights (OpenVINO at this precision): nothing is built.
    openvino_precision: str
    # A runtime variant that keeps the model's classifier head in fp32 (classifier_head.py).
    fp32_head: bool

    def build(self, source: Path, out: Path, calibration: Sequence[Feed]) -> None: ...


# Per-channel DequantizeLinear (its `axis`) exists from opset 13 on.
PER_CHANNEL_OPSET = 13


def _at_least_opset(source: Path, out: Path, opset: int) -> Path:
    import onnx
    from onnx import version_converter

    model = onnx.load(str(source))
    current = max((o.version for o in model.opset_import if o.domain in {"", "ai.onnx"}), default=opset)
    if current >= opset:
        return source
    onnx.save(version_converter.convert_version(model, opset), str(out))
    return out


@dataclass
class Int8Static:
    """Static int8, QDQ format: the activation ranges come from the calibration inputs."""

    name: str = "int8"
    target: Target = Target.CPU
    needs: list[str] = field(default_factory=lambda: ["|".join(sorted(INT8_DOT_PRODUCT_FLAGS))])
    openvino_precision: str = ""
    fp32_head: bool = False

    def build(self, source: Path, out: Path, calibration: Sequence[Feed]) -> None:
        from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
        from onnxruntime.quantization.shape_inference import quant_pre_process

        class Reader(CalibrationDataReader):  # type: ignore[misc]  # onnxruntime ships no stubs
            def __init__(self) -> None:
                self._feeds: Iterator[Feed] = iter(calibration)

            def get_next(self) -> Feed | None:
                return next(self._feeds, None)

        with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
            upgraded = _at_least_opset(source, Path(scratch) / "opset.onnx", PER_CHANNEL_OPSET)
            prepared = Path(scratch) / "prepared.onnx"
            try:
                # Shape inference and graph fusions first, as ORT recommends for static quantization.
                # Not ORT's symbolic shape inference: it is for transformers, and when it cannot
                # finish it drops a debug model (sym_shape_infer_temp.onnx plus <uuid>.data files)
                # into the current directory — a user's working directory. ONNX's own runs.
                quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
            except Exception as error:  # some exported graphs defeat symbolic shape inference
                log.info("%s: quantization pre-processing skipped (%s)", source, error)
                prepared = upgraded
            quantize_static(
                str(prepared),
                str(out),
                Reader(),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
            )


@dataclass
class Fp16ForGpu:
    """fp16 weights and compute with fp32 inputs and outputs, for the CUDA execution provider."""

    name: str = "fp16"
    target: Target = Target.GPU
    needs: list[str] = field(default_factory=list)
    openvino_precision: str = ""
    fp32_head: bool = False

    def build(self, source: Path, out: Path, calibration: Sequence[Feed]) -> None:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        model = convert_float_to_float16(onnx.load(str(source)), keep_io_types=True)
        onnx.save(model, str(out))


@dataclass
class OpenVino:
    """The fp32 weights run by OpenVINO at `openvino_precision` (openvino_runtime.py)."""

    name: str
    openvino_precision: str
    needs: list[str] = field(default_factory=list)
    target: Target = Target.CPU
    fp32_head: bool = False

    def build(self, source: Path, out: Path, calibration: Sequence[Feed]) -> None:
        raise AssertionError("a runtime variant has nothing to build")


def default_builders() -> list[VariantBuilder]:
    return [
        Int8Static(),
        # bf16 is fast only with the CPU's bf16 dot products; elsewhere OpenVINO emulates it.
        OpenVino("openvino-bf16", "bf16", needs=["|".join(sorted(BF16_FLAGS))]),
        # bf16 with the classifier's head in fp32: what passes the guard where plain bf16 flips
        # decisions (the skier233 stand-in: 98.6 % -> 99.2 % same decisions, at bf16's speed).
        OpenVino("openvino-bf16-fp32-head", "bf16", needs=["|".join(sorted(BF16_FLAGS))], fp32_head=True),
        OpenVino("openvino-fp32", "f32"),
        Fp16ForGpu(),
    ]


def derive_variants(
    entry: CatalogEntry,
    models_dir: Path,
    calibration_dir: Path,
    catalog_entries: dict[str, CatalogEntry],
    threads: int = 2,
    builders: Sequence[VariantBuilder] | None = None,
    force: bool = False,
) -> PrecisionManifest:
    """The model's manifest: the cached one when its variant files still match their checksums,
    else every variant rebuilt and judged again (a tampered or missing file is rebuilt)."""
    import onnxruntime as ort

    builders = list(builders) if builders is not None else default_builders()
    source = entry.weights_path(models_dir)
    folder = precision_dir(entry, models_dir)
    cached = None if force else read_manifest(entry, models_dir)
    if cached is not None and _files_intact(cached, folder, [b.name for b in builders]):
        return cached

    manifest = PrecisionManifest(
        model=entry.name, source_sha256=entry.weights.sha256, ort_version=ort.__version__, calibration=""
    )
    try:
        images = calibration_images(calibration_dir)
        manifest.calibration = f"{len(images)} images under {calibration_dir}"
        role = role_for(entry, images, models_dir, catalog_entries)
    except CalibrationError as error:
        manifest.note = f"no reduced-precision variant: {error}"
        write_manifest(entry, models_dir, manifest)
        return manifest
    log.info("%s: calibrating on %d inputs from %s", entry.name, len(role.feeds), calibration_dir)
    fp32_outputs, fp32_seconds = run_all(source, role.feeds, threads)
    manifest.fp32_images_per_s = len(role.feeds) / fp32_seconds
    folder.mkdir(parents=True, exist_ok=True)
    for builder in builders:
        manifest.variants.append(_judged(builder, source, folder, role, fp32_outputs, threads))
    speeds = measure_speeds(entry, source, folder, manifest, role.feeds, threads)
    manifest.fp32_images_per_s = speeds["fp32"]
    for variant in manifest.variants:
        variant.images_per_s = speeds.get(variant.name, 0.0)
    for variant in manifest.variants:
        log.info("%s: %s", entry.name, variant.summary())
    write_manifest(entry, models_dir, manifest)
    return manifest


def _files_intact(manifest: PrecisionManifest, folder: Path, names: list[str]) -> bool:
    if manifest.note and not manifest.variants:
        return False  # derive again: the calibration set or the detector may be there now
    if sorted(v.name for v in manifest.variants) != sorted(names):
        return False
    for variant in manifest.variants:
        if not variant.sha256 or not variant.file:
            continue  # a build that failed stays failed until forced; a runtime variant has no file
        path = folder / variant.file
        if not path.is_file() or sha256_of(path) != variant.sha256:
            log.warning("%s: variant %s does not match its checksum; rebuilding", manifest.model, path)
            return False
    return True


def _judged(
    builder: VariantBuilder,
    source: Path,
    folder: Path,
    role: Role,
    fp32_outputs: list[Outputs],
    threads: int,
) -> VariantRecord:
    if builder.openvino_precision:
        return _judged_openvino(builder, source, role, fp32_outputs, threads)
    file = f"{builder.name}.onnx"
    record = VariantRecord(
        name=builder.name, file=file, target=builder.target, needs=builder.needs, passed=False
    )
    fd, temp_name = tempfile.mkstemp(prefix=f".{file}.", suffix=".part", dir=folder)
    os.close(fd)
    temp = Path(temp_name)
    try:
        # Every other input calibrates; the guard then judges on all of them, seen and unseen.
        builder.build(source, temp, role.feeds[::2])
        os.replace(temp, folder / file)
    except Exception as error:  # ORT's quantizer and converter raise anything on graphs they cannot handle
        record.reason = f"could not be built: {type(error).__name__}: {error}"
        return record
    finally:
        temp.unlink(missing_ok=True)
    record.sha256 = sha256_of(folder / file)
    return _judge(record, folder / file, role, fp32_outputs, threads)


def _judged_openvino(
    builder: VariantBuilder, source: Path, role: Role, fp32_outputs: list[Outputs], threads: int
) -> VariantRecord:
    record = VariantRecord(
        name=builder.name,
        file="",
        sha256=sha256_of(source),
        target=builder.target,
        needs=builder.needs,
        runtime=openvino_runtime.RUNTIME,
        inference_precision=builder.openvino_precision,
        passed=False,
    )
    if missing := openvino_runtime.available():
        record.reason = missing
        return record
    if builder.fp32_head:
        head = classifier_head_input(source)
        if head is None:
            record.reason = (
                "the model does not end in a classifier head (a final Gemm or MatMul) to keep in fp32"
            )
            return record
        record.fp32_from = head
    return _judge(record, source, role, fp32_outputs, threads, builder.openvino_precision)


def _judge(
    record: VariantRecord,
    path: Path,
    role: Role,
    fp32_outputs: list[Outputs],
    threads: int,
    openvino_precision: str = "",
) -> VariantRecord:
    """The guard's verdict on the variant's answers to the calibration inputs. Its speed is
    measured apart, in alternating rounds (measure_speeds)."""
    try:
        outputs, _ = run_all(path, role.feeds, threads, openvino_precision, record.fp32_from)
        verdict = role.verdict(fp32_outputs, outputs)
    except Exception as error:  # the runtime refuses the graph or lacks a kernel; outputs missing
        runtime = "OpenVINO" if openvino_precision else "ONNX Runtime"
        record.reason = f"{runtime} cannot run it as fp32 does: {type(error).__name__}: {error}"
        return record
    record.passed, record.reason, record.agreement = verdict.passed, verdict.reason, verdict.figures
    return record


# The fastest of 5 rounds: on a shared machine other work only ever slows a round down, so the
# minimum time is the estimate least moved by it (a median of 3 let `auto` pick a variant that was
# in fact slower, on a round another process had slowed).
SPEED_ROUNDS = 5
SPEED_BATCH = 8


def measure_speeds(
    entry: CatalogEntry,
    source: Path,
    folder: Path,
    manifest: PrecisionManifest,
    feeds: list[Feed],
    threads: int,
    rounds: int = SPEED_ROUNDS,
    batch_size: int = SPEED_BATCH,
) -> dict[str, float]:
    """images/s of fp32 and every CPU variant that runs, on one batch as Triton would form it, in
    alternating rounds (outside load on a shared machine then hits all of them alike), fastest
    round kept. `auto` compares these; the guard's one pass per file is too noisy for that."""
    name = next(iter(feeds[0]))
    size = min(batch_size, len(feeds)) if entry.triton_config.max_batch_size >= batch_size else 1
    batch = {name: np.concatenate([f[name] for f in feeds[:size]])}
    runners: dict[str, Callable[[], object]] = {"fp32": _ort_call(source, batch, threads)}
    for variant in manifest.variants:
        if variant.target is not Target.CPU or not variant.sha256 or variant.agreement == {}:
            continue  # not built, or could not run
        if variant.runtime == openvino_runtime.RUNTIME:
            model = openvino_runtime.CompiledVariant(
                source, threads, variant.inference_precision, variant.fp32_from
            )
            runners[variant.name] = partial(model.infer, batch)
        else:
            runners[variant.name] = _ort_call(folder / variant.file, batch, threads)
    seconds: dict[str, list[float]] = {key: [] for key in runners}
    for call in runners.values():
        call()  # first-run allocations out of the timing
    for _ in range(rounds):
        for key, call in runners.items():
            started = time.perf_counter()
            call()
            seconds[key].append(time.perf_counter() - started)
    return {key: size / min(values) for key, values in seconds.items()}


def _ort_call(path: Path, batch: Feed, threads: int) -> Callable[[], object]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return partial(session.run, None, batch)
