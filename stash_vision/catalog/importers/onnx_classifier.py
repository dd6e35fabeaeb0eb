"""Importing any ONNX multi-label classifier with a labels file and an input contract the user
declares."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash_vision.catalog.entries import Catalog, CatalogEntry, InputContract
from stash_vision.catalog.importers.staging import (
    SCALE_0_1,
    catalog_document,
    staging,
    triton_config,
    write_categories,
    write_folder,
)
from stash_vision.catalog.importers.validation import (
    SKIER233_EXTRA_HINT,
    ModelImportError,
    read_tags,
    refuse_packaged_name,
    triton_name,
    valid_category,
)

Vector3 = tuple[float, float, float]


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
    refuse_packaged_name(model_name)
    if not valid_category(category):
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
    labels = read_tags(labels_path)
    graph = _inspect_onnx(onnx_path, layout, size, len(labels))

    batch_dims: list[int] = [] if graph.dynamic_batch else [1]
    spatial = [3, size, size] if layout == "NCHW" else [size, size, 3]
    tags_file = f"{model_name}.tags.txt"
    contract["tensor"] = graph.input_name
    with staging(model_name, user_repository, models_dir) as stage:
        shutil.copyfile(onnx_path, stage.weights)
        document = catalog_document(
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
        config = triton_config(
            model_name,
            input_name=graph.input_name,
            input_dims=batch_dims + spatial,
            output_name=graph.output_name,
            output_dims=batch_dims + graph.output_dims,
            batching=graph.dynamic_batch,
        )
        write_folder(stage.folder, config, document, tags_file, labels)
        write_categories(stage.folder / "categories", labels, [category] * len(labels), [category], [])
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
