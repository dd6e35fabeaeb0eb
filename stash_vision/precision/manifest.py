"""The record kept beside a model's weights of the precision variants derived from them:
<models>/<name>/<version>/precision/manifest.json, each variant's file with its sha256, what the
accuracy guard measured, whether it passed and why not, and how fast it ran."""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from stash_vision.atomic import replace_text
from stash_vision.catalog.entries import CatalogEntry


class Target(StrEnum):
    CPU = "cpu"
    GPU = "gpu"


class VariantRecord(BaseModel):
    name: str  # "int8", "fp16", "openvino-bf16", "openvino-fp32"
    # The variant's ONNX file in precision/, or "" for a runtime variant of the fp32 weights.
    file: str
    sha256: str = Field(default="", pattern=r"^([0-9a-f]{64})?$")  # empty: the build failed
    target: Target
    # Which runtime runs it: ONNX Runtime, or OpenVINO at `inference_precision` (openvino_runtime.py).
    runtime: str = "onnxruntime"
    inference_precision: str = ""
    # An OpenVINO variant whose classifier head, from this tensor on, runs in fp32 (classifier_head.py).
    fp32_from: str = ""
    # CPU flags the variant needs to be fast, each `a|b` meaning one of them (cpu_features.py).
    needs: list[str] = Field(default_factory=list)
    passed: bool
    # Why the guard refused it (empty when it passed).
    reason: str = ""
    # The guard's figures (agreement.py): e.g. decision_agreement, max_delta, min_cosine.
    agreement: dict[str, float] = Field(default_factory=dict)
    # Measured in-process at derive time, batch of the calibration images, same ORT threads.
    images_per_s: float = 0.0

    @property
    def refusal(self) -> str:
        """How a variant that did not pass is described: refused by the guard when the guard
        judged it (it has figures), else not usable (not applicable to the graph, or not built)."""
        return "refused" if self.agreement else "not usable"

    def summary(self) -> str:
        figures = ", ".join(f"{k} {v:.4g}" for k, v in sorted(self.agreement.items()))
        verdict = "passed" if self.passed else f"{self.refusal}: {self.reason}"
        speed = f", {self.images_per_s:.1f} images/s" if self.images_per_s else ""
        return f"{self.name} {verdict}" + (f" ({figures}{speed})" if figures or speed else "")


class PrecisionManifest(BaseModel):
    model: str
    source_sha256: str
    ort_version: str
    calibration: str  # where the calibration images came from, and how many
    fp32_images_per_s: float = 0.0
    variants: list[VariantRecord] = Field(default_factory=list)
    # Set when no variant could be derived at all (no calibration images, an unsupported graph).
    note: str = ""

    def variant(self, name: str) -> VariantRecord | None:
        return next((v for v in self.variants if v.name == name), None)


def precision_dir(entry: CatalogEntry, models_dir: Path) -> Path:
    return entry.weights_path(models_dir).parent / "precision"


def manifest_path(entry: CatalogEntry, models_dir: Path) -> Path:
    return precision_dir(entry, models_dir) / "manifest.json"


def read_manifest(entry: CatalogEntry, models_dir: Path) -> PrecisionManifest | None:
    """The manifest when present, readable and made from these weights; None otherwise (a manifest
    of other weights, e.g. after a re-import, describes nothing that exists)."""
    path = manifest_path(entry, models_dir)
    try:
        manifest = PrecisionManifest.model_validate(json.loads(path.read_text()))
    except (OSError, ValueError, ValidationError):
        return None
    return manifest if manifest.source_sha256 == entry.weights.sha256 else None


def write_manifest(entry: CatalogEntry, models_dir: Path, manifest: PrecisionManifest) -> None:
    path = manifest_path(entry, models_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    replace_text(path, manifest.model_dump_json(indent=2) + "\n")
