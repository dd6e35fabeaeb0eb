"""The runner's session on real ONNX Runtime (this machine's CPU build): it reports the providers
the session really got, falls back to the CPU where the config allows (auto) with the reason, and
refuses where it does not (cuda). A GPU session that fails to create (out of memory) is simulated
by a factory that raises for GPU providers, as ORT does."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from stash_vision.embedded.device_report import DeviceReport, read_report
from stash_vision.embedded.ort_runner import OnnxRuntimeRunner, TritonPythonModel
from stash_vision.embedded.ort_session import ProviderRequest, open_session
from tests.unit.test_ort_runner import build_model

CUDA_THEN_CPU = [("CUDAExecutionProvider", {"device_id": "0"}), ("CPUExecutionProvider", {})]
AUTO = ProviderRequest(CUDA_THEN_CPU, fallback_to_cpu=True)
STRICT = ProviderRequest(CUDA_THEN_CPU, fallback_to_cpu=False)
pytestmark = pytest.mark.filterwarnings("ignore:Specified provider .CUDAExecutionProvider.:UserWarning")

OOM = "CUDA failure 2: out of memory ; GPU=0 ; file=cuda_allocator.cc"


@pytest.fixture
def model(tmp_path: Path) -> str:
    return str(build_model(tmp_path / "tiny.onnx"))


def _options() -> ort.SessionOptions:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    return options


def _runs(session: Any) -> None:
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(session.run(["y"], {"x": x})[0], x * 2)


def test_cpu_request_gets_the_cpu_and_reports_it(model: str) -> None:
    session, report = open_session(model, _options(), ProviderRequest.cpu())
    assert report == DeviceReport("cpu", ["CPUExecutionProvider"], "cpu", "")
    assert session.get_providers() == report.providers
    _runs(session)


def test_auto_on_a_cpu_only_onnxruntime_reports_the_cpu_it_really_got(model: str) -> None:
    """ORT does not fail for a provider it lacks: it carries on with the CPU. The report says
    what the session uses, not what was asked for."""
    session, report = open_session(model, _options(), AUTO)
    assert report.device == "cpu" and report.requested == "cuda"
    assert report.providers == session.get_providers() == ["CPUExecutionProvider"]
    assert "could not start CUDAExecutionProvider" in report.reason
    _runs(session)


def test_strict_cuda_without_its_provider_fails_the_load_with_the_reason(model: str) -> None:
    with pytest.raises(
        RuntimeError, match="STASH_VISION_DEVICE=cuda, but ONNX Runtime could not start CUDAExecutionProvider"
    ):
        open_session(model, _options(), STRICT)


def _gpu_out_of_memory(onnx_path: str, options: Any, providers: list[Any]) -> Any:
    if any((p[0] if isinstance(p, tuple) else p) != "CPUExecutionProvider" for p in providers):
        raise RuntimeError(f"[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : {OOM}\nmore detail")
    return ort.InferenceSession(onnx_path, options, providers=providers)


def test_auto_falls_back_to_the_cpu_when_the_gpu_session_fails(model: str) -> None:
    session, report = open_session(model, _options(), AUTO, create=_gpu_out_of_memory)
    assert report.device == "cpu" and report.providers == ["CPUExecutionProvider"]
    assert report.reason == f"the GPU session failed ([ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : {OOM})"
    _runs(session)


def test_strict_cuda_does_not_fall_back_when_the_gpu_session_fails(model: str) -> None:
    with pytest.raises(RuntimeError, match="out of memory"):
        open_session(model, _options(), STRICT, create=_gpu_out_of_memory)


def test_runner_keeps_what_its_session_got(model: str) -> None:
    runner = OnnxRuntimeRunner(model, ["x"], ["y", "z"], threads=1, providers=AUTO)
    assert runner.device.device == "cpu" and runner.device.providers == runner.session.get_providers()
    (result,) = runner.run_batched([{"x": np.ones((1, 3), np.float32)}])
    np.testing.assert_array_equal(result["z"], [3.0])


def test_triton_model_writes_its_report_where_the_config_says(model: str, tmp_path: Path) -> None:
    """initialize() as Triton's Python backend calls it: the model config as JSON, parameters as
    string_value, the GPU Triton assigned as model_instance_device_id."""
    report = tmp_path / "repo" / "tiny" / "device.json"
    parameters = {
        "onnx_path": model,
        "intra_op_threads": "1",
        "ort_providers": json.dumps(CUDA_THEN_CPU),
        "device_fallback": "cpu",
        "device_report": str(report),
    }
    config = {
        "name": "tiny",
        "max_batch_size": 8,
        "input": [{"name": "x"}],
        "output": [{"name": "y"}, {"name": "z"}],
        "parameters": {k: {"string_value": v} for k, v in parameters.items()},
    }
    triton_model = TritonPythonModel()
    triton_model.initialize({"model_config": json.dumps(config), "model_instance_device_id": "0"})
    written = read_report(report)
    assert written is not None
    assert written == triton_model.runner.device
    assert (written.device, written.requested, written.providers) == ("cpu", "cuda", ["CPUExecutionProvider"])
