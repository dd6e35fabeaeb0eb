"""Correcting skier233 models imported by an earlier stash-vision, which took a model YAML's
`normalization_config: 0` at its word (ImageNet mean/std). The original server runs such a model
with CLIP mean/std (`normalization_config or 1`, see Skier233Model.applied_normalization), so
those imports tag differently from the original. Their input contract is re-derived in place: the
ONNX weights, tags and CSVs do not depend on the normalisation, so no re-import is needed.

An entry needs the correction when it is a skier233 import (its licence says so), has no
provenance block (written by every import since), and its contract has ImageNet mean/std, which
the earlier importer wrote only for `normalization_config: 0`. Entries whose YAML said 1 or
nothing already have CLIP and are left as they are."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml

from stash_vision.atomic import replace_text
from stash_vision.catalog.importers.skier233 import SKIER233_LICENCE
from stash_vision.catalog.importers.skier233_yaml import NORMALIZATIONS, PROVENANCE_KEY

log = logging.getLogger(__name__)

_IMAGENET, _CLIP = NORMALIZATIONS[0], NORMALIZATIONS[1]


def needs_normalization_upgrade(document: object) -> bool:
    """Whether a catalog.yaml document is a skier233 import with the YAML's 0 applied literally."""
    if not isinstance(document, dict) or document.get("licence") != SKIER233_LICENCE:
        return False
    if PROVENANCE_KEY in document:
        return False
    contract = document.get("input")
    if not isinstance(contract, dict):
        return False
    try:
        mean = tuple(float(v) for v in contract["mean"])
        std = tuple(float(v) for v in contract["std"])
    except (KeyError, TypeError, ValueError):
        return False
    return (mean, std) == _IMAGENET


def upgrade_skier233_imports(user_repository: Path) -> list[str]:
    """Re-derive the input contract of every skier233 import in `user_repository` that needs it
    (one log line per model); returns the corrected model names. A catalog.yaml that cannot be
    read is left to Catalog.load to report; one that cannot be rewritten gets one warning that
    says what to re-run, and keeps its contract."""
    corrected: list[str] = []
    if not user_repository.is_dir():
        return corrected
    for catalog_file in sorted(user_repository.glob("*/catalog.yaml")):
        try:
            document: Any = yaml.safe_load(catalog_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError):
            continue
        if not needs_normalization_upgrade(document):
            continue
        name = catalog_file.parent.name
        display = _display_name(document, name)
        mean, std = _CLIP
        document["input"]["mean"], document["input"]["std"] = list(mean), list(std)
        document[PROVENANCE_KEY] = {
            "normalization_config": 0,
            "normalization_applied": 1,
            "corrected_on_upgrade": True,
        }
        try:
            _replace(catalog_file, yaml.safe_dump(document, sort_keys=False, allow_unicode=True))
        except OSError as error:
            log.warning(
                "imported skier233 model %s runs with ImageNet mean/std, but the original server runs "
                "its normalization_config 0 with CLIP mean/std, and %s cannot be corrected (%s): re-run "
                "`stash-vision models import-skier233 <%s's model YAML>` to tag as the original does",
                name,
                catalog_file,
                error.strerror or error,
                display,
            )
            continue
        log.warning(
            "imported skier233 model %s: input normalisation corrected from ImageNet to CLIP mean/std, "
            "which the original server applies for its YAML's normalization_config 0 (it reads "
            "`normalization_config or 1`); its tags now match the original's, no re-import needed",
            name,
        )
        corrected.append(name)
    return corrected


def _display_name(document: dict[str, Any], fallback: str) -> str:
    tagger = document.get("tagger")
    name = tagger.get("display_name") if isinstance(tagger, dict) else None
    return name if isinstance(name, str) and name else fallback


def _replace(path: Path, text: str) -> None:
    """A reader never sees half a catalog.yaml; the file keeps its permissions."""
    replace_text(path, text, mode=path.stat().st_mode & 0o777)
