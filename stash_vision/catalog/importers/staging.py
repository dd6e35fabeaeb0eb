"""Writing an imported model: the folder's files (config.pbtxt, catalog.yaml, tags file, category
CSVs) and the ONNX weights are staged in hidden folders beside their destinations and moved into
place only when everything succeeded, so a failed import leaves nothing behind and a re-import
replaces the previous one whole. Shared by both importers."""

from __future__ import annotations

import csv
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stash_vision.catalog.entries import Catalog, CatalogError
from stash_vision.catalog.fetcher import sha256_of
from stash_vision.catalog.importers.validation import ModelImportError

log = logging.getLogger(__name__)

# Triton's dynamic batcher forms batches up to this; the embedded runner concatenates them.
MAX_BATCH_SIZE = 16
# Pixel values 0..255 -> 0..1, the scale of both importers' input contracts by default.
SCALE_0_1 = 1.0 / 255.0
CSV_HEADER = ("OriginalTag", "RenamedTag", "MinMarkerDuration", "MaxGap", "RequiredDuration", "TagThreshold")


@dataclass
class Stage:
    """A model being imported: its repository folder and ONNX file, both in hidden staging
    folders beside their destinations (same filesystem, so moving them in is a rename)."""

    name: str
    user_repository: Path
    models_dir: Path
    root: Path
    weights_root: Path

    @property
    def folder(self) -> Path:
        # One level below the staging root: the repository's `*/catalog.yaml` glob never sees it.
        return self.root / self.name

    @property
    def weights(self) -> Path:
        return self.weights_root / "model.onnx"

    def commit(self) -> None:
        """Replace <user_repository>/<name> and <models_dir>/<name>/1/model.onnx. If the second
        rename fails the first is rolled back, so the entry and its weights always match."""
        final = self.user_repository / self.name
        previous = self.root / "previous"
        weights_final = self.models_dir / self.name / "1" / "model.onnx"
        moved_previous = placed = False
        try:
            if final.exists():
                _warn_if_other_model(final, self.name)
                final.rename(previous)
                moved_previous = True
            self.folder.rename(final)
            placed = True
            weights_final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.weights, weights_final)
        except BaseException:
            if placed:
                final.rename(self.folder)
            if moved_previous:
                previous.rename(final)
            raise


@contextmanager
def staging(name: str, user_repository: Path, models_dir: Path) -> Iterator[Stage]:
    user_repository.mkdir(parents=True, exist_ok=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".import-{name}.", dir=user_repository))
    try:
        weights_root = Path(tempfile.mkdtemp(prefix=f".import-{name}.", dir=models_dir))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    stage = Stage(name, user_repository, models_dir, root, weights_root)
    try:
        stage.folder.mkdir()
        yield stage
    finally:
        # Success or failure, the staging folders go: after a commit they hold only the
        # replaced version.
        shutil.rmtree(root, ignore_errors=True)
        shutil.rmtree(weights_root, ignore_errors=True)


def _warn_if_other_model(folder: Path, name: str) -> None:
    try:
        raw = yaml.safe_load((folder / "catalog.yaml").read_text(encoding="utf-8"))
        before = raw["tagger"]["display_name"]
    except (OSError, yaml.YAMLError, KeyError, TypeError):
        before = None
    log.info("replacing the previously imported model %s (%s)", name, before or "unknown origin")


def catalog_document(
    *,
    name: str,
    description: str,
    licence: str,
    weights: Path,
    input_contract: dict[str, Any],
    tagger: dict[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """catalog.yaml of an imported model; `extra` adds top-level blocks the catalog ignores
    (an importer's record of where the entry came from)."""
    return {
        "name": name,
        "version": 1,
        "task": "image-tagging",
        "description": description,
        "licence": licence,
        # No mirror_path and no sources: the weights exist only on this machine (Weights.imported).
        "weights": {"file": "model.onnx", "sha256": sha256_of(weights), "size": weights.stat().st_size},
        "input": input_contract,
        "tagger": tagger,
        **(extra or {}),
    }


def triton_config(
    name: str,
    *,
    input_name: str,
    input_dims: list[int],
    output_name: str,
    output_dims: list[int],
    batching: bool,
) -> str:
    """config.pbtxt for the onnxruntime backend. The embedded runtime derives its Python-backend
    config from the same text (backend and instances swapped), so batching, I/O and warmup hold
    for both."""
    config = model_config_pb2.ModelConfig(name=name, backend="onnxruntime")
    config.max_batch_size = MAX_BATCH_SIZE if batching else 0
    config.input.add(name=input_name, data_type=model_config_pb2.TYPE_FP32, dims=input_dims)
    config.output.add(name=output_name, data_type=model_config_pb2.TYPE_FP32, dims=output_dims)
    if batching:
        config.dynamic_batching.SetInParent()
    config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_GPU, count=1)
    warmup = config.model_warmup.add(name="zeros", batch_size=1)
    warmup_input = warmup.inputs[input_name]
    warmup_input.data_type = model_config_pb2.TYPE_FP32
    warmup_input.dims.extend(input_dims)
    warmup_input.zero_data = True
    header = "# Written by `stash-vision models import-*`: import the model again to change it.\n"
    return header + text_format.MessageToString(config)


def write_folder(folder: Path, config: str, catalog: dict[str, Any], tags_file: str, tags: list[str]) -> None:
    (folder / "config.pbtxt").write_text(config, encoding="utf-8")
    (folder / "catalog.yaml").write_text(
        yaml.safe_dump(catalog, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    # Normalised (stripped, no blank lines) so every reader gets the same index -> tag mapping.
    (folder / tags_file).write_text("".join(f"{tag}\n" for tag in tags), encoding="utf-8")
    # Validate the pair the way the server will load it, before anything is moved into place.
    try:
        Catalog.load(repository=folder.parent)
    except CatalogError as error:
        raise ModelImportError(f"the generated catalog entry does not load: {error}") from error


def write_categories(
    destination: Path,
    tags: list[str],
    tag_categories: list[str],
    categories: list[str],
    sources: Sequence[Path],
) -> None:
    """Copy the model's category CSVs (file stem = category) from the first source folder that
    has them, keeping sub-folders (the server reads the folder recursively, like the original);
    write a default CSV for a category none has."""
    from stash_vision.server.tagging.aitagger_format.categories import load_category_dir

    destination.mkdir()
    missing = set(categories)
    for source in sources:
        if not source.is_dir() or not missing:
            continue
        found: set[str] = set()
        for path in sorted(p for p in source.rglob("*.csv") if p.is_file() and p.stem in missing):
            target = destination / path.relative_to(source)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
            found.add(path.stem)
        if found:
            log.info("copied category CSVs %s from %s", ", ".join(sorted(found)), source)
        missing -= found
    for category in sorted(missing):
        with (destination / f"{category}.csv").open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(CSV_HEADER)
            # Empty cells take the server's csv_defaults (durations, TagThreshold).
            writer.writerows(
                [tag, f"{tag}_AI", "", "", "", ""]
                for tag, owner in zip(tags, tag_categories, strict=True)
                if owner == category
            )
    if missing:
        searched = ", ".join(str(s) for s in sources) or "no folder given"
        log.warning(
            "no category CSV for %s (searched %s): wrote default CSVs (Stash tags named <Tag>_AI, default "
            "durations and thresholds) to %s; edit them there to change how tags become Stash tags",
            ", ".join(sorted(missing)),
            searched,
            destination,
        )
    try:
        loaded = load_category_dir(destination)
    except (OSError, ValueError) as error:
        raise ModelImportError(f"invalid category CSV: {error}") from error
    for category in categories:
        settings = loaded.get(category)
        known = settings.tags if settings is not None else {}
        unlisted = [
            tag
            for tag, owner in zip(tags, tag_categories, strict=True)
            if owner == category and tag not in known
        ]
        if unlisted:
            log.warning(
                "category %s: its CSV has no row for %s; these tags will never become Stash tags",
                category,
                ", ".join(unlisted),
            )
