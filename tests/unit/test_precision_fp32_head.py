"""The mixed variant that keeps a classifier's head in fp32: where the head starts is found in the
graph (a final Gemm or MatMul and what follows it), nothing is found in a detector or a file that
is not a graph, the cut model answers what the whole model answers, and the runner, the guard's
runs and the derived config carry the cut."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from stash_vision.precision.classifier_head import classifier_head_input
from stash_vision.precision.openvino_runtime import CompiledVariant, OpenVinoRunner, run_each
from stash_vision.precision.selection import Choice, add_runtime_parameters
from tests.conftest import shared_file


def _classifier(path: Path, head: str = "Gemm", then: tuple[str, ...] = ("Sigmoid",)) -> Path:
    """Conv -> Relu -> GlobalAveragePool -> Flatten -> head (Gemm, or MatMul + Add) -> `then`."""
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 20, (8, 4)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(0, 20, (4,)).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["x", "conv_w"], ["conv"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["features"]),
    ]
    if head == "Gemm":
        nodes.append(helper.make_node("Gemm", ["features", "fc_w", "fc_b"], ["logits"]))
    else:
        nodes += [
            helper.make_node("MatMul", ["features", "fc_w"], ["product"]),
            helper.make_node("Add", ["product", "fc_b"], ["logits"]),
        ]
    last = "logits"
    for index, op in enumerate(then):
        nodes.append(helper.make_node(op, [last], [f"after{index}"]))
        last = f"after{index}"
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 16, 16])],
        [helper.make_tensor_value_info(last, TensorProto.FLOAT, ["N", 4])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(
    ("head", "then"), [("Gemm", ("Sigmoid",)), ("Gemm", ()), ("MatMul", ("Softmax",)), ("MatMul", ())]
)
def test_the_head_starts_at_the_final_fully_connected_layers_input(
    tmp_path: Path, head: str, then: tuple[str, ...]
) -> None:
    assert classifier_head_input(_classifier(tmp_path / "m.onnx", head, then)) == "features"


def test_models_without_a_classifier_head_have_none(tmp_path: Path) -> None:
    assert classifier_head_input(shared_file("models/face_detection/scrfd_500m_bnkps.onnx")) is None
    assert classifier_head_input(shared_file("models/content/nudenet_320n.onnx")) is None
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a graph at all")
    assert classifier_head_input(garbage) is None


def test_a_real_classifier_has_its_head_found() -> None:
    assert classifier_head_input(shared_file("models/content/open_nsfw.onnx")) == "Reshape:0"


def test_the_cut_model_answers_as_the_whole_one(tmp_path: Path) -> None:
    path = _classifier(tmp_path / "m.onnx")
    feeds = [{"x": np.random.default_rng(n).normal(size=(n, 3, 16, 16)).astype(np.float32)} for n in (1, 3)]
    whole, _ = run_each(path, feeds, threads=1, precision="f32")
    cut, _ = run_each(path, feeds, threads=1, precision="f32", fp32_from="features")
    for a, b in zip(whole, cut, strict=True):
        np.testing.assert_allclose(b["after0"], a["after0"], atol=1e-6)
    assert CompiledVariant(path, 1, "f32", "features").infer(feeds[1])["after0"].shape == (3, 4)

    runner = OpenVinoRunner(str(path), ["x"], ["after0"], threads=1, precision="f32", fp32_from="features")
    answers = runner.run_batched(feeds)
    assert [a["after0"].shape for a in answers] == [(1, 4), (3, 4)]
    np.testing.assert_allclose(answers[1]["after0"], whole[1]["after0"], atol=1e-6)
    assert runner.device.providers == ["OpenVINO CPU (f32, head in f32 from features)"]


def test_a_cut_at_a_tensor_the_model_lacks_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no tensor named 'nowhere'"):
        CompiledVariant(_classifier(tmp_path / "m.onnx"), 1, "f32", "nowhere")


def test_the_derived_config_carries_the_cut(tmp_path: Path) -> None:
    config = tmp_path / "config.pbtxt"
    config.write_text('name: "m"\nbackend: "python"\n')
    choice = Choice("openvino-bf16-fp32-head", tmp_path / "m.onnx", "", "openvino", "bf16", "features")
    add_runtime_parameters(config, choice)
    parsed = text_format.Parse(config.read_text(), model_config_pb2.ModelConfig())
    assert parsed.parameters["runtime"].string_value == "openvino"
    assert parsed.parameters["inference_precision"].string_value == "bf16"
    assert parsed.parameters["fp32_from"].string_value == "features"


def test_a_model_without_a_head_says_the_variant_is_not_usable_not_refused(tmp_path: Path) -> None:
    from stash_vision.catalog.entries import Catalog
    from stash_vision.precision.manifest import read_manifest
    from stash_vision.precision.selection import Precision, choose
    from stash_vision.precision.variants import OpenVino, derive_variants
    from tests.conftest import shared_dir

    entry = Catalog.load().get("scrfd_500m")
    models_dir = tmp_path / "models"
    weights = entry.weights_path(models_dir)
    weights.parent.mkdir(parents=True)
    weights.write_bytes(shared_file("models/face_detection/scrfd_500m_bnkps.onnx").read_bytes())
    head = OpenVino("openvino-bf16-fp32-head", "bf16", fp32_head=True)
    derive_variants(entry, models_dir, shared_dir() / "testdata" / "images", {entry.name: entry}, 1, [head])
    manifest = read_manifest(entry, models_dir)
    assert manifest is not None
    (variant,) = manifest.variants
    assert not variant.passed and variant.agreement == {} and variant.fp32_from == ""
    assert variant.summary() == (
        "openvino-bf16-fp32-head not usable: the model does not end in a classifier head "
        "(a final Gemm or MatMul) to keep in fp32"
    )
    reason = choose(entry, models_dir, Precision.REDUCED, flags=frozenset({"avx512_bf16"})).reason
    assert reason.startswith("openvino-bf16-fp32-head not usable: the model does not end")
