"""Synthetic ONNX taggers built inside tests, for outputs real models cannot be made to give
(forced positives that depend on the image, so expected tags are known in advance)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

# tag -> (weight on mean brightness in 0..1, bias): logit = weight * (brightness - 0.5) + bias
BRIGHTNESS_TAGS: dict[str, tuple[float, float]] = {
    "Bright": (40.0, 0.0),
    "Dark": (-40.0, 0.0),
    "Always": (0.0, 10.0),
    "Never": (0.0, -10.0),
    "Coin": (0.0, 0.0),  # sigmoid(0) = 0.5 on every image
}


def brightness_tagger_onnx(tags: dict[str, tuple[float, float]] = BRIGHTNESS_TAGS, size: int = 64) -> bytes:
    """INPUT__0 [N,3,S,S] (pixels/255) -> OUTPUT__0 [N,T] logits from the mean brightness."""
    weights = np.array([[w for w, _ in tags.values()]], np.float32)
    biases = np.array([b - 0.5 * w for w, b in tags.values()], np.float32)
    nodes = [
        helper.make_node("ReduceMean", ["INPUT__0"], ["mean"], axes=[1, 2, 3], keepdims=1),
        helper.make_node("Reshape", ["mean", "shape"], ["mean2d"]),
        helper.make_node("MatMul", ["mean2d", "weights"], ["scaled"]),
        helper.make_node("Add", ["scaled", "biases"], ["OUTPUT__0"]),
    ]
    graph = helper.make_graph(
        nodes,
        "brightness_tagger",
        [helper.make_tensor_value_info("INPUT__0", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("OUTPUT__0", TensorProto.FLOAT, ["batch", len(tags)])],
        initializer=[
            numpy_helper.from_array(np.array([-1, 1], np.int64), "shape"),
            numpy_helper.from_array(weights, "weights"),
            numpy_helper.from_array(biases, "biases"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def install_brightness_tagger(
    data_dir: Path,
    name: str = "synthetic_tagger",
    category: str = "synthetic",
    csv_rows: list[str] | None = None,
) -> None:
    """Writes an imported model (config, catalog, tags, category CSV, weights) into a data dir."""
    onnx_bytes = brightness_tagger_onnx()
    weights = data_dir / "models" / name / "1" / "model.onnx"
    weights.parent.mkdir(parents=True, exist_ok=True)
    weights.write_bytes(onnx_bytes)
    folder = data_dir / "model_repository" / name
    (folder / "categories").mkdir(parents=True, exist_ok=True)
    (folder / "tags.txt").write_text("\n".join(BRIGHTNESS_TAGS) + "\n")
    rows = csv_rows or [f"{tag},{tag}_AI,,,," for tag in BRIGHTNESS_TAGS]
    (folder / "categories" / f"{category}.csv").write_text(
        "OriginalTag,RenamedTag,MinMarkerDuration,MaxGap,RequiredDuration,TagThreshold\n"
        + "\n".join(rows)
        + "\n"
    )
    (folder / "config.pbtxt").write_text(
        f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: 16\n'
        'input [ { name: "INPUT__0" data_type: TYPE_FP32 dims: [ 3, 64, 64 ] } ]\n'
        f'output [ {{ name: "OUTPUT__0" data_type: TYPE_FP32 dims: [ {len(BRIGHTNESS_TAGS)} ] }} ]\n'
        "dynamic_batching { }\ninstance_group [ { kind: KIND_GPU count: 1 } ]\n"
    )
    (folder / "catalog.yaml").write_text(
        f"""name: {name}
version: 1
task: image-tagging
licence: test
weights:
  file: model.onnx
  sha256: {hashlib.sha256(onnx_bytes).hexdigest()}
  size: {len(onnx_bytes)}
input:
  tensor: INPUT__0
  layout: NCHW
  color_order: RGB
  width: 64
  height: 64
  resize: stretch
  scale: 0.00392156862745098
tagger:
  kind: multilabel
  display_name: {name}
  identifier: 7
  version: 0.1
  categories: [{category}]
  threshold: 0.5
  output: OUTPUT__0
  activation: sigmoid
  tags_file: tags.txt
"""
    )


def synthetic_embedder_onnx(size: int, output: str, dimensions: int = 512, seed: int = 0) -> bytes:
    """A stand-in with a real embedder's signature: `input` NHWC [N,size,size,3] float -> `output`
    [N,dimensions]. It averages 8x8 blocks of the image and projects them with fixed random weights,
    so the same face gives the same vector and different faces differ, which is all the
    profile's plumbing (layout, batching, flip averaging, fusion) needs."""
    pooled = 8
    features = pooled * pooled * 3
    projection = np.random.default_rng(seed).standard_normal((features, dimensions)).astype(np.float32)
    nodes = [
        helper.make_node("Transpose", ["input"], ["nchw"], perm=[0, 3, 1, 2]),
        helper.make_node(
            "AveragePool",
            ["nchw"],
            ["pooled"],
            kernel_shape=[size // pooled] * 2,
            strides=[size // pooled] * 2,
        ),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("MatMul", ["flat", "projection"], [output]),
    ]
    graph = helper.make_graph(
        nodes,
        "synthetic_embedder",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", size, size, 3])],
        [helper.make_tensor_value_info(output, TensorProto.FLOAT, ["batch", dimensions])],
        initializer=[numpy_helper.from_array(projection, "projection")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString()


def install_stash_sense_standins(data_dir: Path) -> None:
    """Synthetic facenet512 and arcface weights where `stash-vision models fetch` would put the real
    ones (the real files are not in the offline mirror)."""
    for name, size, output, seed in (
        ("facenet512", 160, "Bottleneck_BatchNorm", 1),
        ("arcface", 112, "embedding", 2),
    ):
        weights = data_dir / "models" / name / "1" / "model.onnx"
        weights.parent.mkdir(parents=True, exist_ok=True)
        weights.write_bytes(synthetic_embedder_onnx(size, output, seed=seed))
