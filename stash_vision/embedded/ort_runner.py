"""Triton Python-backend model that runs one ONNX file with ONNX Runtime.

The embedded launcher copies this file as <model>/1/model.py into the runtime repository it derives
from model_repository/, so the ONNX models get Triton's dynamic batching, queueing and metrics on a
Triton build that has only the Python backend. It stays importable without Triton for its tests.

Requests that Triton's dynamic batcher groups into one execute() call are concatenated along the
batch dimension and run as ONE ONNX Runtime call, then split back per request: that is what makes
batching across requests pay off."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stash_vision.embedded.device_report import REPORT_PARAMETER, write_report
from stash_vision.embedded.ort_session import ProviderRequest, open_session
from stash_vision.precision.openvino_runtime import (
    FP32_FROM_PARAMETER,
    PRECISION_PARAMETER,
    RUNTIME,
    RUNTIME_PARAMETER,
    OpenVinoRunner,
)

try:
    import triton_python_backend_utils as pb_utils
except ImportError:  # imported outside Triton (tests, tooling)
    pb_utils = None


class OnnxRuntimeRunner:
    """Triton-independent core: one ORT session, batched execution of several requests' inputs."""

    def __init__(
        self,
        onnx_path: str,
        input_names: list[str],
        output_names: list[str],
        threads: int,
        providers: ProviderRequest | None = None,
    ) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        # One execute() runs at a time per instance; inter-op threads would only oversubscribe.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Idle ORT threads sleep instead of spinning: the cores are shared with the decoders.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # The providers the derived config asks for (the CPU unless STASH_VISION_DEVICE gave a
        # GPU), and what the session really runs on: ort_session.py.
        self.session, self.device = open_session(onnx_path, options, providers or ProviderRequest.cpu())
        self.input_names = input_names
        self.output_names = output_names

    def run_batched(
        self, per_request_inputs: list[dict[str, npt.NDArray[Any]]]
    ) -> list[dict[str, npt.NDArray[Any]]]:
        sizes = [int(inputs[self.input_names[0]].shape[0]) for inputs in per_request_inputs]
        if len(per_request_inputs) == 1:
            feeds = per_request_inputs[0]
        else:
            feeds = {name: np.concatenate([r[name] for r in per_request_inputs]) for name in self.input_names}
        outputs = self.session.run(self.output_names, feeds)
        results: list[dict[str, npt.NDArray[Any]]] = []
        offset = 0
        for size in sizes:
            results.append(
                {n: o[offset : offset + size] for n, o in zip(self.output_names, outputs, strict=True)}
            )
            offset += size
        return results


class TritonPythonModel:
    """Entry point Triton's Python backend looks for."""

    def initialize(self, args: dict[str, Any]) -> None:
        config = json.loads(args["model_config"])
        parameters = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}
        self.batching = int(config.get("max_batch_size", 0)) > 0
        self.runner: OnnxRuntimeRunner | OpenVinoRunner
        if parameters.get(RUNTIME_PARAMETER) == RUNTIME:  # a variant that passed the accuracy guard
            self.runner = OpenVinoRunner(
                parameters["onnx_path"],
                [t["name"] for t in config["input"]],
                [t["name"] for t in config["output"]],
                int(parameters.get("intra_op_threads", "1")),
                parameters[PRECISION_PARAMETER],
                parameters.get(FP32_FROM_PARAMETER, ""),
            )
        else:
            self.runner = OnnxRuntimeRunner(
                onnx_path=parameters["onnx_path"],
                input_names=[t["name"] for t in config["input"]],
                output_names=[t["name"] for t in config["output"]],
                threads=int(parameters.get("intra_op_threads", "1")),
                providers=ProviderRequest.from_parameters(
                    parameters, device_id=int(args.get("model_instance_device_id", 0) or 0)
                ),
            )
        if self.runner.device.reason:  # lands in tritonserver.log; the supervisor logs it too
            print(
                f"{config['name']}: on {self.runner.device.device}: {self.runner.device.reason}",
                file=sys.stderr,
            )
        if parameters.get(REPORT_PARAMETER):
            write_report(Path(parameters[REPORT_PARAMETER]), self.runner.device)

    def execute(self, requests: list[Any]) -> list[Any]:
        inputs = [
            {
                name: pb_utils.get_input_tensor_by_name(request, name).as_numpy()
                for name in self.runner.input_names
            }
            for request in requests
        ]
        try:
            if self.batching:
                results = self.runner.run_batched(inputs)
            else:
                results = [self.runner.run_batched([one])[0] for one in inputs]
        except Exception as error:  # one bad batch must not kill the model instance
            message = f"ONNX Runtime failed: {error}"
            return [pb_utils.InferenceResponse(error=pb_utils.TritonError(message)) for _ in requests]
        return [
            pb_utils.InferenceResponse(
                [pb_utils.Tensor(name, np.ascontiguousarray(value)) for name, value in r.items()]
            )
            for r in results
        ]

    def finalize(self) -> None:
        self.runner = None  # type: ignore[assignment]
