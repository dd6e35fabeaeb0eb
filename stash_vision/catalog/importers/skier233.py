"""Importing a free skier233 model package (docs/aitagger-contract.md §3.2-3.4): a model YAML, a
TorchScript `.pt` and a `.tags.txt`. The `.pt` is converted to ONNX once, here. Encrypted Patreon
models cannot be imported."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.catalog.importers.skier233_yaml import (
    NORMALIZATIONS,
    PROVENANCE_KEY,
    Skier233Model,
    provenance,
    read_skier233_yaml,
)
from stash_vision.catalog.importers.staging import (
    SCALE_0_1,
    catalog_document,
    staging,
    triton_config,
    write_categories,
    write_folder,
)
from stash_vision.catalog.importers.torchscript_to_onnx import (
    INPUT_TENSOR,
    OUTPUT_TENSOR,
    convert_torchscript,
)
from stash_vision.catalog.importers.validation import (
    ModelImportError,
    read_tags,
    refuse_packaged_name,
    triton_name,
)

log = logging.getLogger(__name__)

# The licence of every skier233 import's catalog entry (skier233_upgrade recognises them by it).
SKIER233_LICENCE = "user-supplied (skier233 model)"


def import_skier233(
    yaml_path: Path, user_repository: Path, models_dir: Path, categories_dir: Path | None = None
) -> CatalogEntry:
    """Import a free skier233 model (YAML + TorchScript `.pt` + `.tags.txt`), converting it to ONNX.

    Files are looked for beside the YAML, in ./models/, ../models/ and ../../models/ (the original
    server's layout `config/models/<name>.yaml` + `models/<name>.pt`). Category CSVs come from
    `categories_dir`, else <yaml dir>/categories/, else ../post_processing/categories/; without
    any, a default CSV per category (renamed tags `<Tag>_AI`, default durations) is written."""
    yaml_path = Path(yaml_path).expanduser()
    model = read_skier233_yaml(yaml_path)
    search = _package_dirs(yaml_path)
    _refuse_encrypted(model, yaml_path, search)
    weights = _find(search, f"{model.file_name}.pt")
    if weights is None:
        raise ModelImportError(
            f"TorchScript file {model.file_name}.pt not found (looked in {_listing(search)}); "
            "copy it from the original server's models/ folder next to the YAML"
        )
    tags_path = _find(search, f"{model.file_name}.tags.txt")
    if tags_path is None:
        raise ModelImportError(
            f"tags file {model.file_name}.tags.txt not found (looked in {_listing(search)}); it ships "
            "with the model download, one tag per line in output order"
        )
    tags = read_tags(tags_path)
    tag_categories = _tag_categories(str(yaml_path), tags, model.categories, model.category_mappings)

    name = triton_name(model.file_name)
    refuse_packaged_name(name)
    if categories_dir is not None:
        csv_sources = [Path(categories_dir).expanduser()]
        if not csv_sources[0].is_dir():
            raise ModelImportError(f"categories folder {csv_sources[0]} does not exist")
    else:
        csv_sources = [
            yaml_path.parent / "categories",
            yaml_path.parent.parent / "post_processing" / "categories",
        ]

    size = model.image_size
    # Not NORMALIZATIONS[model.normalization]: the original runs a YAML's 0 (ImageNet) as 1 (CLIP),
    # and the model's answers are tuned to that (Skier233Model.applied_normalization).
    mean, std = NORMALIZATIONS[model.applied_normalization]
    if model.applied_normalization != model.normalization:
        log.info(
            "%s says normalization_config %d; importing it with CLIP mean/std (%d), which is what the "
            "original server runs it with (its preprocessors read `normalization_config or 1`)",
            yaml_path.name,
            model.normalization,
            model.applied_normalization,
        )
    tags_file = f"{name}.tags.txt"
    with staging(name, user_repository, models_dir) as stage:
        # The CSVs first: a bad one fails the import in milliseconds, not after the conversion.
        write_categories(stage.folder / "categories", tags, tag_categories, model.categories, csv_sources)
        log.info("converting %s to ONNX and checking it against TorchScript", weights)
        started = time.perf_counter()
        difference = convert_torchscript(weights, stage.weights, size, len(tags))
        log.info(
            "converted %s to ONNX in %.1f s (max |logit difference| vs TorchScript: %.2e)",
            weights,
            time.perf_counter() - started,
            difference,
        )
        info = f" {model.info.strip()}" if model.info.strip() else ""
        catalog = catalog_document(
            name=name,
            description=(
                f"skier233 model {model.file_name} (version {model.version:g}, identifier "
                f"{model.identifier}) imported from {yaml_path.name}; TorchScript converted to ONNX.{info}"
            ),
            licence=SKIER233_LICENCE,
            weights=stage.weights,
            input_contract={
                "tensor": INPUT_TENSOR,
                "layout": "NCHW",
                "color_order": "RGB",
                "width": size,
                "height": size,
                # torchvision Resize((S, S), bicubic, antialias=True): aspect not kept (contract §3.4).
                "resize": "stretch",
                "interpolation": "cubic_antialias",
                "scale": SCALE_0_1,
                "mean": list(mean),
                "std": list(std),
            },
            tagger={
                "kind": "multilabel",
                # AIModelInfo.name is the skier233 file name as the plugin knows it.
                "display_name": model.file_name,
                "identifier": model.identifier,
                "version": model.version,
                "categories": model.categories,
                "threshold": model.threshold,
                "categories_dir": "categories",
                "output": OUTPUT_TENSOR,
                "activation": "sigmoid",
                "tags_file": tags_file,
                "category_mappings": dict(model.category_mappings),
            },
            extra={PROVENANCE_KEY: provenance(model)},
        )
        config = triton_config(
            name,
            input_name=INPUT_TENSOR,
            input_dims=[3, size, size],
            output_name=OUTPUT_TENSOR,
            output_dims=[len(tags)],
            batching=True,
        )
        write_folder(stage.folder, config, catalog, tags_file, tags)
        stage.commit()
    return Catalog.load(extra=[user_repository]).get(name)


def _package_dirs(yaml_path: Path) -> list[Path]:
    """Where a package's files may be: beside the YAML, ./models, ../models, and the original
    server's root models/ folder (<root>/config/models/<name>.yaml -> <root>/models/<name>.pt)."""
    here = yaml_path.parent
    dirs: list[Path] = []
    for folder in (here, here / "models", here.parent / "models", here.parent.parent / "models"):
        if folder.is_dir() and all(not folder.samefile(seen) for seen in dirs):
            dirs.append(folder)
    return dirs


def _listing(dirs: Sequence[Path]) -> str:
    return ", ".join(str(d) for d in dirs) or "nowhere: the YAML's folder does not exist"


def _find(dirs: Sequence[Path], file_name: str) -> Path | None:
    return next((d / file_name for d in dirs if (d / file_name).is_file()), None)


def _refuse_encrypted(model: Skier233Model, yaml_path: Path, search: Sequence[Path]) -> None:
    encrypted = [
        f"{model.file_name}{suffix}"
        for suffix in (".pt.enc", ".pt2.enc")
        if _find(search, f"{model.file_name}{suffix}")
    ]
    plain = _find(search, f"{model.file_name}.pt")
    if model.license_name is None and (plain is not None or not encrypted):
        return
    why = (
        f"model_license_name: {model.license_name}"
        if model.license_name
        else f"only {encrypted[0]} is present"
    )
    raise ModelImportError(
        f"{model.file_name} ({yaml_path}) is an encrypted Patreon model ({why}): only the original "
        "skier233 server's closed-source runtime can decrypt and execute it, so stash-vision cannot "
        "run it. Free models (a plain TorchScript <name>.pt) can be imported."
    )


def _tag_categories(
    where: str, tags: list[str], categories: list[str], mappings: Mapping[int, int]
) -> list[str]:
    """Category of every tag, checking `category_mappings` covers every output exactly."""
    if not mappings:
        return [categories[0]] * len(tags)
    wrong_keys = sorted(set(mappings) ^ set(range(len(tags))))
    if wrong_keys:
        raise ModelImportError(
            f"{where}: category_mappings must map every tag index 0..{len(tags) - 1} (the tags file has "
            f"{len(tags)} tags); missing or extra indexes: {wrong_keys[:10]}"
        )
    bad = {k: v for k, v in mappings.items() if not 0 <= v < len(categories)}
    if bad:
        raise ModelImportError(
            f"{where}: category_mappings values must index model_category (0..{len(categories) - 1}): {bad}"
        )
    return [categories[mappings[index]] for index in range(len(tags))]
