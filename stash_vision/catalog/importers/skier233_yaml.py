"""Reading a skier233 `type: model` YAML (docs/aitagger-contract.md §3.2): the fields that matter
for serving the model, each checked with a message naming the field."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from stash_vision.catalog.importers.validation import ModelImportError, valid_category

log = logging.getLogger(__name__)

# skier233 `normalization_config` index -> (mean, std) (contract §3.4); 1 is the default. What
# the original applies is `normalization_config or 1`: see Skier233Model.applied_normalization.
NORMALIZATIONS: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    0: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet
    1: ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),  # CLIP
}

# Key of the block in an imported model's catalog.yaml that records what was read from its YAML
# and what is applied (Catalog entries ignore it; skier233_upgrade reads it).
PROVENANCE_KEY = "skier233"


@dataclass(frozen=True)
class Skier233Model:
    """The fields of a skier233 `type: model` YAML that matter for serving it (contract §3.2)."""

    file_name: str
    categories: list[str]
    version: float
    identifier: int
    image_size: int = 512
    normalization: int = 1
    threshold: float = 0.5
    category_mappings: dict[int, int] = field(default_factory=dict)
    license_name: str | None = None
    info: str = ""
    # The original's per-model batch cap, checked but not used: Triton's dynamic batcher forms
    # batches up to MAX_BATCH_SIZE from concurrent requests instead.
    max_batch_size: int | None = None

    @property
    def applied_normalization(self) -> int:
        """The normalisation the original server really runs the model with. Its image and video
        preprocessors read `normalization_config or 1`, so a YAML that says 0 (ImageNet) is run
        with 1 (CLIP mean/std). Users' models (the free vivid_galaxy says 0) are tuned to what it
        runs, and its answers are those of CLIP: measured on the stand-in package, CLIP matches the
        original on 89 of 89 images, ImageNet on the tag sets of 38
        (shared/models/skier233-standin/README.md). So the YAML's 0 is not taken at its word."""
        return self.normalization or 1


def provenance(model: Skier233Model) -> dict[str, int]:
    """The catalog.yaml record of the normalisation: as the YAML says, and as applied. Its
    presence also tells skier233_upgrade that the entry needs no correction."""
    return {
        "normalization_config": model.normalization,
        "normalization_applied": model.applied_normalization,
    }


def read_skier233_yaml(path: Path) -> Skier233Model:
    """Parse and check a skier233 model YAML; raises ModelImportError naming the bad field."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ModelImportError(f"cannot read model YAML {path}: {error}") from error
    except yaml.YAMLError as error:
        raise ModelImportError(f"{path} is not valid YAML: {error}") from error
    if not isinstance(raw, dict):
        raise ModelImportError(f"{path}: expected a mapping of model settings, got {type(raw).__name__}")
    where = str(path)
    if raw.get("type") != "model":
        raise ModelImportError(
            f"{where}: type is {raw.get('type')!r}, expected 'model' (only AI model YAMLs can be "
            "imported, not preprocessor or pipeline YAMLs)"
        )
    file_name = raw.get("model_file_name")
    if not isinstance(file_name, str) or not file_name.strip() or "/" in file_name or "\\" in file_name:
        raise ModelImportError(
            f"{where}: model_file_name is required (the .pt file's name without extension)"
        )

    categories_raw = raw.get("model_category")
    if isinstance(categories_raw, str):
        # The original iterates a string per character (the same trap as active_ai.yaml, issue #54).
        log.warning(
            "%s: model_category is the string %r, read as the list [%r]; write it as a YAML list",
            where,
            categories_raw,
            categories_raw,
        )
        categories_raw = [categories_raw]
    if (
        not isinstance(categories_raw, list)
        or not categories_raw
        or not all(isinstance(c, str) and valid_category(c) for c in categories_raw)
    ):
        raise ModelImportError(
            f"{where}: model_category must be a non-empty list of category names (e.g. [actions]), "
            f"got {categories_raw!r}"
        )
    if len(set(categories_raw)) != len(categories_raw):
        raise ModelImportError(f"{where}: model_category lists a category twice: {categories_raw!r}")

    license_name = raw.get("model_license_name")
    mappings_raw = raw.get("category_mappings")
    mappings: dict[int, int] = {}
    if mappings_raw is not None:
        if not isinstance(mappings_raw, dict):
            raise ModelImportError(f"{where}: category_mappings must map tag index -> category index")
        for key, value in mappings_raw.items():
            mappings[_int_field(where, f"category_mappings key {key!r}", key)] = _int_field(
                where, f"category_mappings[{key!r}]", value
            )
    if len(categories_raw) > 1 and not mappings:
        raise ModelImportError(
            f"{where}: the model has {len(categories_raw)} categories {categories_raw} but no "
            "category_mappings (tag index -> category index); the original server requires it too"
        )
    return Skier233Model(
        file_name=file_name.strip(),
        categories=list(categories_raw),
        version=_float_field(where, "model_version", raw.get("model_version"), required=True),
        identifier=_int_field(where, "model_identifier", raw.get("model_identifier")),
        image_size=_positive_int(where, "model_image_size", raw.get("model_image_size", 512)),
        # As written (null counts as absent, as in the original's `or 1`); what is applied is
        # Skier233Model.applied_normalization.
        normalization=_normalization(
            where, 1 if raw.get("normalization_config") is None else raw["normalization_config"]
        ),
        threshold=_threshold(where, raw.get("model_threshold", 0.5)),
        category_mappings=mappings,
        license_name=str(license_name) if license_name not in (None, "") else None,
        info=str(raw.get("model_info") or ""),
        max_batch_size=(
            None
            if raw.get("max_model_batch_size") is None
            else _positive_int(where, "max_model_batch_size", raw.get("max_model_batch_size"))
        ),
    )


def _int_field(where: str, key: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ModelImportError(f"{where}: {key} must be an integer, got {value!r}")
    try:
        return int(value)
    except ValueError:
        raise ModelImportError(f"{where}: {key} must be an integer, got {value!r}") from None


def _positive_int(where: str, key: str, value: object) -> int:
    number = _int_field(where, key, value)
    if number <= 0:
        raise ModelImportError(f"{where}: {key} must be positive, got {value!r}")
    return number


def _float_field(where: str, key: str, value: object, required: bool = False) -> float:
    if value is None and required:
        raise ModelImportError(f"{where}: {key} is required")
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise ModelImportError(f"{where}: {key} must be a number, got {value!r}")
    try:
        number = float(value)
    except ValueError:
        raise ModelImportError(f"{where}: {key} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ModelImportError(f"{where}: {key} must be finite, got {value!r}")
    return number


def _threshold(where: str, value: object) -> float:
    number = _float_field(where, "model_threshold", value)
    if not 0.0 <= number <= 1.0:
        raise ModelImportError(f"{where}: model_threshold must be within [0, 1], got {value!r}")
    return number


def _normalization(where: str, value: object) -> int:
    index = _int_field(where, "normalization_config", value)
    if index not in NORMALIZATIONS:
        raise ModelImportError(
            f"{where}: normalization_config {value!r} is unknown (0 = ImageNet, 1 = CLIP mean/std)"
        )
    return index
