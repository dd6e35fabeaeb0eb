"""Imports user models into the user repository (data_dir/model_repository), so the server serves
them like catalogued ones: config.pbtxt + catalog.yaml + tags file + category CSVs in
<user_repository>/<name>/, the ONNX weights at <models_dir>/<name>/1/model.onnx.

Two kinds:

- skier233 packages (docs/aitagger-contract.md §3.2-3.4): a model YAML, a TorchScript `.pt` and a
  `.tags.txt`. Triton has no TorchScript runtime in the embedded build and skier233 models need
  none of it, so the `.pt` is converted to ONNX once, here, and the conversion is verified against
  TorchScript before anything is written. Encrypted Patreon models cannot be imported.
- any ONNX multi-label classifier with a labels file and an input contract the user declares.

An import is staged in hidden folders beside its destinations and moved into place only when
everything succeeded, so a failed import leaves nothing behind and a re-import replaces the
previous one whole."""

from __future__ import annotations

import csv
import logging
import math
import os
import re
import shutil
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stash_vision.catalog.entries import Catalog, CatalogEntry, CatalogError, InputContract
from stash_vision.catalog.fetcher import sha256_of

log = logging.getLogger(__name__)

INPUT_TENSOR = "INPUT__0"
OUTPUT_TENSOR = "OUTPUT__0"
# Triton's dynamic batcher forms batches up to this; the embedded runner concatenates them.
MAX_BATCH_SIZE = 16
# Old enough for the ONNX Runtime in every Triton release we target, new enough for ResNet/ViT ops.
ONNX_OPSET = 17
# Max |logit difference| between TorchScript and ONNX Runtime (fp32 both): real conversion bugs
# are orders of magnitude larger; reordered float sums stay around 1e-5.
MAX_LOGIT_DIFFERENCE = 1e-3
SCALE_0_1 = 1.0 / 255.0
# skier233 `normalization_config` index -> (mean, std) (contract §3.4); 1 is the default.
NORMALIZATIONS: dict[int, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    0: ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet
    1: ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)),  # CLIP
}
CSV_HEADER = ("OriginalTag", "RenamedTag", "MinMarkerDuration", "MaxGap", "RequiredDuration", "TagThreshold")
SKIER233_EXTRA_HINT = "pip install 'stash-vision[skier233]'"

Vector3 = tuple[float, float, float]


class ModelImportError(ValueError):
    """A model cannot be imported; the message says which file, what is wrong and what to do."""


def triton_name(text: str) -> str:
    """The Triton/catalog model name for a user's model name: lowercase, [a-z0-9_] only."""
    name = re.sub(r"[^a-z0-9_]", "_", text.lower())
    if not name.strip("_"):
        raise ModelImportError(
            f"cannot derive a model name from {text!r}: give a name with letters or digits"
        )
    return name


# ------------------------------------------------------------------------------------ skier233 YAML


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
        or not all(isinstance(c, str) and _valid_category(c) for c in categories_raw)
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
        normalization=_normalization(where, raw.get("normalization_config", 1)),
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


def _valid_category(name: str) -> bool:
    # The category is a CSV file stem on disk and a key of the AITagger JSON.
    return bool(name.strip()) and name not in (".", "..") and not re.search(r"[/\\\x00]", name)


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


# ---------------------------------------------------------------------------------- skier233 import


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
    tags = _read_tags(tags_path)
    tag_categories = _tag_categories(str(yaml_path), tags, model.categories, model.category_mappings)

    name = triton_name(model.file_name)
    _refuse_packaged_name(name)
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
    mean, std = NORMALIZATIONS[model.normalization]
    tags_file = f"{name}.tags.txt"
    with _staging(name, user_repository, models_dir) as stage:
        # The CSVs first: a bad one fails the import in milliseconds, not after the conversion.
        _write_categories(stage.folder / "categories", tags, tag_categories, model.categories, csv_sources)
        log.info("converting %s to ONNX and checking it against TorchScript", weights)
        started = time.perf_counter()
        difference = _convert_torchscript(weights, stage.weights, size, len(tags))
        log.info(
            "converted %s to ONNX in %.1f s (max |logit difference| vs TorchScript: %.2e)",
            weights,
            time.perf_counter() - started,
            difference,
        )
        info = f" {model.info.strip()}" if model.info.strip() else ""
        catalog = _catalog_document(
            name=name,
            description=(
                f"skier233 model {model.file_name} (version {model.version:g}, identifier "
                f"{model.identifier}) imported from {yaml_path.name}; TorchScript converted to ONNX.{info}"
            ),
            licence="user-supplied (skier233 model)",
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
        )
        config = _triton_config(
            name,
            input_name=INPUT_TENSOR,
            input_dims=[3, size, size],
            output_name=OUTPUT_TENSOR,
            output_dims=[len(tags)],
            batching=True,
        )
        _write_folder(stage.folder, config, catalog, tags_file, tags)
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


def _read_tags(path: Path) -> list[str]:
    """One tag per line, line index = output index. Blank lines inside would shift every later
    index in readers that skip them, so they are refused rather than guessed at."""
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    except (OSError, UnicodeDecodeError) as error:
        raise ModelImportError(f"cannot read tags file {path}: {error}") from error
    while lines and not lines[-1]:
        lines.pop()
    if not lines:
        raise ModelImportError(f"tags file {path} is empty")
    blank = [number for number, line in enumerate(lines, 1) if not line]
    if blank:
        raise ModelImportError(
            f"tags file {path}: line {blank[0]} is empty (one tag per line, in output order)"
        )
    duplicates = sorted({tag for tag in lines if lines.count(tag) > 1})
    if duplicates:
        raise ModelImportError(f"tags file {path}: tags listed twice: {', '.join(duplicates)}")
    return lines


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


def _refuse_packaged_name(name: str) -> None:
    try:
        packaged = Catalog.load().names()
    except CatalogError:  # a broken package is reported by whatever loads it next, not here
        return
    if name in packaged:
        raise ModelImportError(
            f"{name!r} is the name of a model that ships with stash-vision; give the import another name"
        )


# ------------------------------------------------------------------------------- TorchScript -> ONNX


def _import_torch() -> Any:
    try:
        import torch
    except ImportError as error:
        raise ModelImportError(
            f"converting skier233 TorchScript models needs PyTorch: {SKIER233_EXTRA_HINT} ({error})"
        ) from error
    return torch


def _convert_torchscript(pt_path: Path, onnx_path: Path, size: int, num_tags: int) -> float:
    """Export the TorchScript model to ONNX (dynamic batch, INPUT__0 -> OUTPUT__0, float32) and
    check it against TorchScript; returns the max |logit difference|."""
    torch = _import_torch()
    try:
        with _quiet_torch():
            module = torch.jit.load(str(pt_path), map_location="cpu")
    except Exception as error:  # torch raises RuntimeError/ValueError/pickle errors alike
        raise ModelImportError(
            f"{pt_path} is not a TorchScript model torch.jit.load can read ({type(error).__name__}: {error})"
        ) from error
    # The original runs fp16 under autocast; the converted model is fp32 end to end, what Triton
    # gets from the server's float32 preprocessing.
    module = module.float().eval()
    example = torch.zeros(1, 3, size, size, dtype=torch.float32)
    try:
        with _quiet_torch(), torch.no_grad():
            # A ScriptModule can only go through the TorchScript-based exporter: the default
            # dynamo exporter traces Python code with torch.export, which a ScriptModule has none of.
            torch.onnx.export(
                module,
                (example,),
                str(onnx_path),
                dynamo=False,
                input_names=[INPUT_TENSOR],
                output_names=[OUTPUT_TENSOR],
                dynamic_axes={INPUT_TENSOR: {0: "batch"}, OUTPUT_TENSOR: {0: "batch"}},
                opset_version=ONNX_OPSET,
                do_constant_folding=True,
            )
    except Exception as error:
        raise ModelImportError(
            f"cannot convert {pt_path} to ONNX with torch {torch.__version__}'s TorchScript exporter "
            f"({type(error).__name__}: {error})"
        ) from error
    return _verify_conversion(torch, module, pt_path, onnx_path, size, num_tags)


def _verify_conversion(
    torch: Any, module: Any, pt_path: Path, onnx_path: Path, size: int, num_tags: int
) -> float:
    import numpy as np

    session = _onnx_session(onnx_path)
    # Two random images in one batch: also proves the exported batch axis is really dynamic
    # (the export example had batch 1).
    generator = torch.Generator().manual_seed(233)
    batch = torch.rand(2, 3, size, size, generator=generator, dtype=torch.float32)
    try:
        with torch.no_grad():
            expected = module(batch)
    except Exception as error:
        raise ModelImportError(
            f"{pt_path} does not run on a [2, 3, {size}, {size}] input (model_image_size {size}): "
            f"{type(error).__name__}: {error}"
        ) from error
    if not isinstance(expected, torch.Tensor):
        raise ModelImportError(
            f"{pt_path} returns {type(expected).__name__}, expected one tensor of [batch, {num_tags}] logits"
        )
    reference = expected.detach().float().numpy()
    if reference.shape != (2, num_tags):
        raise ModelImportError(
            f"{pt_path} outputs shape {list(reference.shape)} for 2 images, but its tags file has "
            f"{num_tags} tags (expected [2, {num_tags}])"
        )
    try:
        (converted,) = session.run([OUTPUT_TENSOR], {INPUT_TENSOR: batch.numpy()})
    except Exception as error:
        raise ModelImportError(
            f"the ONNX conversion of {pt_path} does not run in ONNX Runtime: {error}"
        ) from error
    if converted.shape != reference.shape:
        raise ModelImportError(
            f"the ONNX conversion of {pt_path} outputs shape {list(converted.shape)}, TorchScript "
            f"{list(reference.shape)}"
        )
    difference = float(np.max(np.abs(converted.astype(np.float64) - reference)))
    if not difference < MAX_LOGIT_DIFFERENCE:  # also catches NaN
        raise ModelImportError(
            f"the ONNX conversion of {pt_path} disagrees with TorchScript: max |logit difference| "
            f"{difference:.3g} >= {MAX_LOGIT_DIFFERENCE:g}; not importing a model that would tag differently"
        )
    return difference


def _onnx_session(onnx_path: Path) -> Any:
    try:
        import onnxruntime as ort
    except ImportError as error:
        raise ModelImportError(
            f"verifying the ONNX conversion needs ONNX Runtime: {SKIER233_EXTRA_HINT} ({error})"
        ) from error
    try:
        return ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    except Exception as error:
        raise ModelImportError(f"ONNX Runtime cannot load the converted model: {error}") from error


@contextmanager
def _quiet_torch() -> Iterator[None]:
    # torch.jit and the TorchScript-based exporter announce their deprecation on every call;
    # the importer pins the torch version it was verified with, so these say nothing to the user.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        warnings.filterwarnings("ignore", message="no signature found", category=UserWarning)
        yield


# -------------------------------------------------------------------------------- ONNX classifiers


def import_onnx_classifier(
    onnx_path: Path,
    labels_path: Path,
    category: str,
    user_repository: Path,
    models_dir: Path,
    *,
    name: str | None = None,
    size: int,
    layout: str = "NCHW",
    color_order: str = "RGB",
    scale: float = SCALE_0_1,
    mean: Vector3 = (0.0, 0.0, 0.0),
    std: Vector3 = (1.0, 1.0, 1.0),
    resize: str = "stretch",
    interpolation: str = "auto",
    activation: str = "sigmoid",
    identifier: int = 0,
    version: float = 1.0,
    threshold: float = 0.5,
) -> CatalogEntry:
    """Import an ONNX multi-label classifier: one float image input of the declared contract, one
    output whose last dimension has a value per line of `labels_path`."""
    onnx_path = Path(onnx_path).expanduser()
    labels_path = Path(labels_path).expanduser()
    display_name = name or onnx_path.stem
    model_name = triton_name(display_name)
    _refuse_packaged_name(model_name)
    if not _valid_category(category):
        raise ModelImportError(f"category {category!r} is not a valid category name")
    if not 0.0 <= threshold <= 1.0:
        raise ModelImportError(f"threshold must be within [0, 1], got {threshold}")
    contract = {
        "tensor": "",  # filled in from the ONNX graph below
        "layout": layout,
        "color_order": color_order,
        "width": size,
        "height": size,
        "resize": resize,
        "interpolation": interpolation,
        "scale": scale,
        "mean": list(mean),
        "std": list(std),
    }
    # Checked before reading the model: a typo in the contract is the likeliest mistake.
    try:
        InputContract.model_validate(contract)
    except ValueError as error:
        raise ModelImportError(f"invalid input contract: {error}") from error
    if activation not in ("sigmoid", "none"):
        raise ModelImportError(f"activation must be 'sigmoid' or 'none', got {activation!r}")
    if not onnx_path.is_file():
        raise ModelImportError(f"ONNX file {onnx_path} not found")
    if not labels_path.is_file():
        raise ModelImportError(f"labels file {labels_path} not found")
    labels = _read_tags(labels_path)
    graph = _inspect_onnx(onnx_path, layout, size, len(labels))

    batch_dims: list[int] = [] if graph.dynamic_batch else [1]
    spatial = [3, size, size] if layout == "NCHW" else [size, size, 3]
    tags_file = f"{model_name}.tags.txt"
    contract["tensor"] = graph.input_name
    with _staging(model_name, user_repository, models_dir) as stage:
        shutil.copyfile(onnx_path, stage.weights)
        document = _catalog_document(
            name=model_name,
            description=f"ONNX classifier {onnx_path.name} with {len(labels)} labels, imported by the user.",
            licence="user-supplied (ONNX classifier)",
            weights=stage.weights,
            input_contract=contract,
            tagger={
                "kind": "multilabel",
                "display_name": display_name,
                "identifier": identifier,
                "version": version,
                "categories": [category],
                "threshold": threshold,
                "categories_dir": "categories",
                "output": graph.output_name,
                "activation": activation,
                "tags_file": tags_file,
            },
        )
        config = _triton_config(
            model_name,
            input_name=graph.input_name,
            input_dims=batch_dims + spatial,
            output_name=graph.output_name,
            output_dims=batch_dims + graph.output_dims,
            batching=graph.dynamic_batch,
        )
        _write_folder(stage.folder, config, document, tags_file, labels)
        _write_categories(stage.folder / "categories", labels, [category] * len(labels), [category], [])
        stage.commit()
    return Catalog.load(extra=[user_repository]).get(model_name)


@dataclass(frozen=True)
class _OnnxGraph:
    input_name: str
    output_name: str
    dynamic_batch: bool
    # Output dims without the batch dimension; -1 where the model leaves one open.
    output_dims: list[int]


def _inspect_onnx(path: Path, layout: str, size: int, num_labels: int) -> _OnnxGraph:
    try:
        import onnx
    except ImportError as error:
        raise ModelImportError(
            f"reading ONNX models needs the onnx package: {SKIER233_EXTRA_HINT} ({error})"
        ) from error
    try:
        model = onnx.load(str(path), load_external_data=False)
        model = onnx.shape_inference.infer_shapes(model)
    except Exception as error:
        raise ModelImportError(f"{path} is not a readable ONNX model: {error}") from error
    graph = model.graph
    # Weights in side files would be left behind by the single-file copy of the import.
    if any(init.data_location == onnx.TensorProto.EXTERNAL for init in graph.initializer):
        raise ModelImportError(
            f"{path} keeps its weights in external data files; save it as one file "
            "(onnx.save_model(model, path, save_as_external_data=False))"
        )
    initializers = {init.name for init in graph.initializer}
    inputs = [value for value in graph.input if value.name not in initializers]
    if len(inputs) != 1:
        raise ModelImportError(
            f"{path} has {len(inputs)} inputs ({[i.name for i in inputs]}); a classifier has one image input"
        )
    image = inputs[0]
    if image.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelImportError(
            f"{path}: input {image.name!r} must be float32 (the server sends float32 tensors)"
        )
    shape = _dims(image)
    if len(shape) != 4:
        raise ModelImportError(f"{path}: input {image.name!r} has rank {len(shape)}, expected 4 ({layout})")
    expected = [3, size, size] if layout == "NCHW" else [size, size, 3]
    for axis, (actual, wanted) in enumerate(zip(shape[1:], expected, strict=True), start=1):
        if actual is not None and actual != wanted:
            raise ModelImportError(
                f"{path}: input {image.name!r} has shape {_shape_text(shape)}, but {layout} at size {size} "
                f"needs {wanted} on axis {axis}"
            )
    batch = shape[0]
    if batch is not None and batch != 1:
        raise ModelImportError(
            f"{path}: input batch dimension is fixed at {batch}; it must be dynamic or 1 to serve single images"
        )
    candidates = [value for value in graph.output if _dims(value) and _dims(value)[-1] == num_labels]
    if len(graph.output) == 1 and not candidates:
        dims = _dims(graph.output[0])
        raise ModelImportError(
            f"{path}: output {graph.output[0].name!r} has shape {_shape_text(dims)}; its last dimension "
            f"must equal the {num_labels} labels of the labels file"
        )
    if len(candidates) != 1:
        raise ModelImportError(
            f"{path}: expected exactly one output whose last dimension is {num_labels} (the number of "
            f"labels), found {[value.name for value in candidates] or 'none'} among "
            f"{[value.name for value in graph.output]}"
        )
    output = candidates[0]
    if len(_dims(output)) < 2:
        raise ModelImportError(
            f"{path}: output {output.name!r} must be [batch, {num_labels}], got {_shape_text(_dims(output))}"
        )
    if output.type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ModelImportError(f"{path}: output {output.name!r} must be float32")
    return _OnnxGraph(
        input_name=image.name,
        output_name=output.name,
        dynamic_batch=batch is None,
        output_dims=[-1 if d is None else d for d in _dims(output)[1:]],
    )


def _dims(value: Any) -> list[int | None]:
    """A value's shape: None for symbolic or unknown dimensions."""
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None for d in dims]


def _shape_text(dims: Sequence[int | None]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


# -------------------------------------------------------------------------------- writing a model


@dataclass
class _Stage:
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
def _staging(name: str, user_repository: Path, models_dir: Path) -> Iterator[_Stage]:
    user_repository.mkdir(parents=True, exist_ok=True)
    models_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=f".import-{name}.", dir=user_repository))
    try:
        weights_root = Path(tempfile.mkdtemp(prefix=f".import-{name}.", dir=models_dir))
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise
    stage = _Stage(name, user_repository, models_dir, root, weights_root)
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


def _catalog_document(
    *,
    name: str,
    description: str,
    licence: str,
    weights: Path,
    input_contract: dict[str, Any],
    tagger: dict[str, Any],
) -> dict[str, Any]:
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
    }


def _triton_config(
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


def _write_folder(
    folder: Path, config: str, catalog: dict[str, Any], tags_file: str, tags: list[str]
) -> None:
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


def _write_categories(
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
