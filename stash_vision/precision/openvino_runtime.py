"""OpenVINO as a second CPU runtime for the same ONNX weights, used only through a variant that
passed the accuracy guard (variants.py): measured on an AMD EPYC with AVX-512 BF16 it runs the
ResNet-18 stand-in about 2x faster than ONNX Runtime in fp32, and about 4x in bf16
(docs/precision.md). ONNX Runtime's CPU EP has no bf16 convolutions, and its int8 fails the guard.

OpenVINO reads the ONNX file itself, so a variant is the fp32 weights plus an inference precision:
nothing new on disk, and the weights' own checksum is what is verified."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from stash_vision.embedded.device_report import DeviceReport

RUNTIME = "openvino"
RUNTIME_PARAMETER = "runtime"
PRECISION_PARAMETER = "inference_precision"


def available() -> str | None:
    """None when OpenVINO can be imported, else why not."""
    try:
        import openvino  # noqa: F401
    except ImportError as error:
        return f"OpenVINO is not installed ({error}); it comes with the `embedded` extra"
    return None


def compile_model(onnx_path: Path | str, threads: int, inference_precision: str) -> Any:
    import openvino as ov

    core = ov.Core()
    config = {
        # "bf16" or "f32": OpenVINO's CPU plugin otherwise picks bf16 by itself on CPUs that have
        # it, so fp32 must be asked for explicitly.
        "INFERENCE_PRECISION_HINT": inference_precision,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
    }
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return core.compile_model(str(onnx_path), "CPU", config)


class OpenVinoRunner:
    """The same interface as ort_runner.OnnxRuntimeRunner: several requests' inputs run as one
    batch, outputs split back per request, and what it runs on for the device report."""

    def __init__(
        self, onnx_path: str, input_names: list[str], output_names: list[str], threads: int, precision: str
    ) -> None:
        self.compiled = compile_model(onnx_path, threads, precision)
        self.request = self.compiled.create_infer_request()
        self.input_names = input_names
        self.output_names = output_names
        self.device = DeviceReport(device="cpu", providers=[f"OpenVINO CPU ({precision})"], requested="cpu")

    def run_batched(
        self, per_request_inputs: list[dict[str, npt.NDArray[Any]]]
    ) -> list[dict[str, npt.NDArray[Any]]]:
        sizes = [int(inputs[self.input_names[0]].shape[0]) for inputs in per_request_inputs]
        feeds = {
            name: np.concatenate([r[name] for r in per_request_inputs])
            if len(sizes) > 1
            else per_request_inputs[0][name]
            for name in self.input_names
        }
        self.request.infer(feeds)
        # Copies: the request's output buffers are reused by the next inference.
        outputs = {name: np.array(self.request.get_tensor(name).data) for name in self.output_names}
        results: list[dict[str, npt.NDArray[Any]]] = []
        offset = 0
        for size in sizes:
            results.append({name: value[offset : offset + size] for name, value in outputs.items()})
            offset += size
        return results


def run_each(
    onnx_path: Path, feeds: Sequence[dict[str, npt.NDArray[np.float32]]], threads: int, precision: str
) -> tuple[list[dict[str, npt.NDArray[Any]]], float]:
    """Every feed through one compiled model (the guard's runs): outputs by name, and the
    seconds they took (compiling and a first run left out, as for ONNX Runtime)."""
    compiled = compile_model(onnx_path, threads, precision)
    request = compiled.create_infer_request()
    # Every name of each output: OpenVINO may list an internal tensor name first (SCRFD's
    # score_8 comes back as '450'), and the decoders look outputs up by their ONNX names.
    names = {name: output for output in compiled.outputs for name in output.get_names()}
    request.infer(feeds[0])
    started = time.perf_counter()
    results = []
    for feed in feeds:
        request.infer(feed)
        results.append({name: np.array(request.get_tensor(output).data) for name, output in names.items()})
    return results, time.perf_counter() - started
