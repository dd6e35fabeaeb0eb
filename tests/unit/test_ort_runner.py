"""Unit tests for stash_vision.embedded.ort_runner.OnnxRuntimeRunner (importable without Triton): several
requests' inputs run as one ONNX Runtime call and are split back so each request gets its own rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from stash_vision.embedded.ort_runner import OnnxRuntimeRunner


def build_model(path: Path) -> Path:
    """x [batch,3] float -> y = x*2 [batch,3], z = sum(x, axis 1) [batch]."""
    two = helper.make_tensor("two", TensorProto.FLOAT, [], [2.0])
    axes = helper.make_tensor("axes", TensorProto.INT64, [1], [1])
    graph = helper.make_graph(
        [
            helper.make_node("Mul", ["x", "two"], ["y"]),
            helper.make_node("ReduceSum", ["x", "axes"], ["z"], keepdims=0),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [
            helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 3]),
            helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch"]),
        ],
        initializer=[two, axes],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture
def runner(tmp_path: Path) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(str(build_model(tmp_path / "tiny.onnx")), ["x"], ["y", "z"], threads=1)


def test_three_requests_of_batch_1_2_1_each_get_their_own_rows(runner: OnnxRuntimeRunner) -> None:
    requests = [
        {"x": np.array([[1.0, 2.0, 3.0]], np.float32)},
        {"x": np.array([[10.0, 20.0, 30.0], [-1.0, -2.0, -3.0]], np.float32)},
        {"x": np.array([[0.5, 0.25, 0.125]], np.float32)},
    ]
    results = runner.run_batched(requests)
    assert len(results) == 3
    for request, result in zip(requests, results, strict=True):
        x = request["x"]
        assert sorted(result) == ["y", "z"]
        assert result["y"].shape == x.shape
        assert result["z"].shape == (x.shape[0],)
        np.testing.assert_array_equal(result["y"], x * 2)
        np.testing.assert_array_equal(result["z"], x.sum(axis=1))
    np.testing.assert_array_equal(results[1]["z"], np.array([60.0, -6.0], np.float32))
    np.testing.assert_array_equal(results[2]["y"], np.array([[1.0, 0.5, 0.25]], np.float32))


def test_single_request_runs_as_is(runner: OnnxRuntimeRunner) -> None:
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    (result,) = runner.run_batched([{"x": x}])
    np.testing.assert_array_equal(result["y"], x * 2)
    np.testing.assert_array_equal(result["z"], x.sum(axis=1))


def test_runner_uses_cpu_provider_and_requested_threads(runner: OnnxRuntimeRunner) -> None:
    assert runner.session.get_providers() == ["CPUExecutionProvider"]
    assert runner.session.get_session_options().intra_op_num_threads == 1
    assert runner.input_names == ["x"]
    assert runner.output_names == ["y", "z"]
