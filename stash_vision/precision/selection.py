"""Which weights file Triton serves for a model: STASH_VISION_PRECISION decides among fp32 and the
variants the accuracy guard passed (manifest.py), on this machine's CPU features or GPU.

- fp32: the fetched weights, as before variants existed.
- auto (default): the fastest variant that passed the guard, runs fast on this machine (its CPU
  flags) and measured faster than fp32 at derive time; fp32 when there is none.
- reduced: the fastest variant that passed the guard, even where it is not measured faster or the
  CPU lacks the instructions that make it fast. Never one the guard refused.

A chosen file is re-verified by sha256 before it is served: a variant changed on disk is refused."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.catalog.fetcher import sha256_of
from stash_vision.precision.cpu_features import cpu_flags, missing_for
from stash_vision.precision.manifest import Target, VariantRecord, precision_dir, read_manifest
from stash_vision.precision.openvino_runtime import (
    FP32_FROM_PARAMETER,
    PRECISION_PARAMETER,
    RUNTIME,
    RUNTIME_PARAMETER,
)

log = logging.getLogger(__name__)

FP32 = "fp32"
# `auto` takes a variant only for a clear gain: on a shared 2-core machine two measurements of the
# same file differ by several per cent, and a change of runtime for noise is no gain.
AUTO_MIN_GAIN = 1.15


class Precision(StrEnum):
    AUTO = "auto"
    FP32 = "fp32"
    REDUCED = "reduced"


@dataclass(frozen=True)
class Choice:
    variant: str  # "fp32" or a variant's name
    path: Path
    reason: str  # why this one, in words for logs, `models list` and ListModels
    # "onnxruntime", or "openvino" running `path` at `inference_precision`.
    runtime: str = "onnxruntime"
    inference_precision: str = ""
    fp32_from: str = ""  # an OpenVINO variant's classifier head in fp32 from this tensor


def choose(
    entry: CatalogEntry,
    models_dir: Path,
    precision: Precision,
    target: Target = Target.CPU,
    flags: frozenset[str] | None = None,
    openvino: bool = True,
) -> Choice:
    """`openvino=False` where only ONNX Runtime can serve (the native repository's onnxruntime
    backend): OpenVINO's variants are passed over."""
    fp32 = entry.weights_path(models_dir).resolve()
    if precision is Precision.FP32:
        return Choice(FP32, fp32, "STASH_VISION_PRECISION=fp32")
    manifest = read_manifest(entry, models_dir)
    if manifest is None:
        return Choice(
            FP32, fp32, f"no precision variants derived (run `stash-vision models precision {entry.name}`)"
        )
    if manifest.note and not manifest.variants:
        return Choice(FP32, fp32, manifest.note)
    flags = cpu_flags() if flags is None else flags
    usable: list[VariantRecord] = []
    reasons: list[str] = []
    for variant in manifest.variants:
        if variant.target is not target or (variant.runtime == RUNTIME and not openvino):
            continue
        if not variant.passed:
            verdict = "refused by the accuracy guard" if variant.refusal == "refused" else variant.refusal
            reasons.append(f"{variant.name} {verdict}: {variant.reason}")
            continue
        lacking = missing_for(variant.needs, flags) if target is Target.CPU else None
        if lacking and precision is Precision.AUTO:
            reasons.append(f"{variant.name} needs a CPU with {lacking.replace('|', ' or ')}")
            continue
        # Speeds are measured on this CPU; a GPU variant is taken as the GPU's faster arithmetic.
        faster = target is Target.GPU or variant.images_per_s >= AUTO_MIN_GAIN * manifest.fp32_images_per_s
        if precision is Precision.AUTO and not faster:
            reasons.append(
                f"{variant.name} measured less than {AUTO_MIN_GAIN:g}x fp32 "
                f"({variant.images_per_s:.1f} vs {manifest.fp32_images_per_s:.1f} images/s)"
            )
            continue
        usable.append(variant)
    if not usable:
        why = "; ".join(reasons) or f"no {target.value} variant derived"
        return Choice(FP32, fp32, why)
    best = max(usable, key=lambda v: v.images_per_s)
    path = (precision_dir(entry, models_dir) / best.file).resolve() if best.file else fp32
    if not path.is_file() or sha256_of(path) != best.sha256:
        log.warning(
            "%s: the %s variant %s is missing or changed since it was derived (sha256 mismatch); "
            "serving fp32. Run `stash-vision models precision %s` to rebuild it",
            entry.name,
            best.name,
            path,
            entry.name,
        )
        return Choice(FP32, fp32, f"{best.name} variant failed its checksum: refused, rebuild it")
    return Choice(best.name, path, best.summary(), best.runtime, best.inference_precision, best.fp32_from)


def served_choice(
    entry: CatalogEntry, models_dir: Path, precision: str, gpu: bool = False, openvino: bool = True
) -> Choice:
    """What the derived Triton repository serves for `entry`, with one log line saying why."""
    choice = choose(
        entry, models_dir, Precision(precision), Target.GPU if gpu else Target.CPU, openvino=openvino
    )
    log.info("%s: serving %s (%s)", entry.name, choice.variant, choice.reason)
    return choice


def add_runtime_parameters(config_path: Path, choice: Choice) -> None:
    """The embedded runner's parameters for an OpenVINO variant (ort_runner.py reads them)."""
    if choice.runtime != RUNTIME:
        return
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    config.parameters[RUNTIME_PARAMETER].string_value = RUNTIME
    config.parameters[PRECISION_PARAMETER].string_value = choice.inference_precision
    if choice.fp32_from:
        config.parameters[FP32_FROM_PARAMETER].string_value = choice.fp32_from
    config_path.write_text(text_format.MessageToString(config))


class ServedPrecision:
    """What the server reports per model (ListModels, /health): the same choice the derived
    repository made from the same settings and manifest, computed once per model and device (the
    readiness watcher asks every second; the checksum need not be read each time)."""

    def __init__(self, models_dir: Path, precision: str) -> None:
        self.models_dir = models_dir
        self.precision = Precision(precision)
        self._known: dict[tuple[str, str], Choice] = {}

    def of(self, entry: CatalogEntry, device: str) -> Choice:
        key = (entry.name, device)
        if key not in self._known:
            target = Target.GPU if device == "gpu" else Target.CPU
            self._known[key] = choose(entry, self.models_dir, self.precision, target)
        return self._known[key]
