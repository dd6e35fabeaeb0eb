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

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.catalog.fetcher import sha256_of
from stash_vision.precision.cpu_features import cpu_flags, missing_for
from stash_vision.precision.manifest import Target, VariantRecord, precision_dir, read_manifest

log = logging.getLogger(__name__)

FP32 = "fp32"


class Precision(StrEnum):
    AUTO = "auto"
    FP32 = "fp32"
    REDUCED = "reduced"


@dataclass(frozen=True)
class Choice:
    variant: str  # "fp32" or a variant's name
    path: Path
    reason: str  # why this one, in words for logs, `models list` and ListModels


def choose(
    entry: CatalogEntry,
    models_dir: Path,
    precision: Precision,
    target: Target = Target.CPU,
    flags: frozenset[str] | None = None,
) -> Choice:
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
        if variant.target is not target:
            continue
        if not variant.passed:
            reasons.append(f"{variant.name} refused by the accuracy guard: {variant.reason}")
            continue
        lacking = missing_for(variant.needs, flags) if target is Target.CPU else None
        if lacking and precision is Precision.AUTO:
            reasons.append(f"{variant.name} needs a CPU with {lacking.replace('|', ' or ')}")
            continue
        if precision is Precision.AUTO and variant.images_per_s <= manifest.fp32_images_per_s:
            reasons.append(
                f"{variant.name} measured no faster than fp32 "
                f"({variant.images_per_s:.1f} vs {manifest.fp32_images_per_s:.1f} images/s)"
            )
            continue
        usable.append(variant)
    if not usable:
        why = "; ".join(reasons) or f"no {target.value} variant derived"
        return Choice(FP32, fp32, why)
    best = max(usable, key=lambda v: v.images_per_s)
    path = (precision_dir(entry, models_dir) / best.file).resolve()
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
    return Choice(best.name, path, best.summary())


def served_weights(entry: CatalogEntry, models_dir: Path, precision: str, gpu: bool = False) -> Path:
    """The file the derived Triton repository serves for `entry`, with one log line saying why."""
    choice = choose(entry, models_dir, Precision(precision), Target.GPU if gpu else Target.CPU)
    log.info("%s: serving %s (%s)", entry.name, choice.variant, choice.reason)
    return choice.path


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
