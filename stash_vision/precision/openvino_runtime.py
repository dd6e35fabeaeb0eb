"""OpenVINO as a second CPU runtime for the same ONNX weights, used only through a variant that
passed the accuracy guard (variants.py): measured on an AMD EPYC with AVX-512 BF16 it runs the
ResNet-18 stand-in about 2x faster than ONNX Runtime in fp32, and about 4x in bf16
(docs/precision.md). ONNX Runtime's CPU EP has no bf16 convolutions, and its int8 fails the guard.

OpenVINO reads the ONNX file itself, so a variant is the fp32 weights plus an inference precision:
nothing new on disk, and the weights' own checksum is what is verified.

A mixed variant keeps a classifier's head in fp32 (`fp32_from`, the tensor the head starts from):
the graph is cut there into a body compiled at the variant's precision and a head compiled in
fp32, run one after the other. A tagger whose head weighs hundreds of large, cancelling terms
(the skier233 stand-in's) turns bf16's rounding of those terms into tag decisions that flip; the
head is a few thousand multiply-adds, so fp32 there costs nothing measurable. OpenVINO's own
"keep this node precise" marker is not honoured by its CPU plugin for bf16 (tried), hence the cut."""

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
FP32_FROM_PARAMETER = "fp32_from"

Arrays = dict[str, npt.NDArray[Any]]


def available() -> str | None:
    """None when OpenVINO can be imported, else why not."""
    try:
        import openvino  # noqa: F401
    except ImportError as error:
        return f"OpenVINO is not installed ({error}); it comes with the `embedded` extra"
    return None


def _config(threads: int, inference_precision: str) -> dict[str, str]:
    config = {
        # "bf16" or "f32": OpenVINO's CPU plugin otherwise picks bf16 by itself on CPUs that have
        # it, so fp32 must be asked for explicitly.
        "INFERENCE_PRECISION_HINT": inference_precision,
        "PERFORMANCE_HINT": "LATENCY",
        "NUM_STREAMS": "1",
        # OpenVINO pins its threads to cores by default. Here they share the CPU with the server's
        # decoding threads and Triton: a pinned thread waits for its busy core while another sits
        # idle. Measured through the stack on 2 cores: the model ran at half its in-process speed.
        "ENABLE_CPU_PINNING": "NO",
    }
    if threads > 0:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


def _port_named(model: Any, tensor: str) -> Any:
    for operation in model.get_ordered_ops():
        for port in operation.outputs():
            if tensor in port.get_names():
                return port
    raise ValueError(f"the model has no tensor named {tensor!r} to keep in fp32 from")


def split_at(onnx_path: Path | str, tensor: str) -> tuple[Any, Any]:
    """(body, head): the graph up to `tensor`, and from `tensor` (a new input of that name) to
    the model's outputs. Read twice so the two graphs share no node."""
    import openvino as ov

    core = ov.Core()
    whole = core.read_model(str(onnx_path))
    body = ov.Model([ov.opset13.result(_port_named(whole, tensor))], whole.get_parameters(), "body")
    rest = core.read_model(str(onnx_path))
    cut = _port_named(rest, tensor)
    start = ov.opset13.parameter(cut.get_partial_shape(), cut.get_element_type(), name=tensor)
    start.output(0).set_names({tensor})
    for consumer in list(cut.get_target_inputs()):
        consumer.replace_source_output(start.output(0))
    return body, ov.Model(rest.get_results(), [start], "head")


class CompiledVariant:
    """The compiled model (or body and head), with one inference request each: `infer` takes the
    model's inputs by name and answers every name of every output (OpenVINO may list an internal
    tensor name first, SCRFD's score_8 comes back as '450'; callers look outputs up by their ONNX
    names). Outputs are copies: the request's buffers are reused by the next inference."""

    def __init__(
        self, onnx_path: Path | str, threads: int, inference_precision: str, fp32_from: str = ""
    ) -> None:
        import openvino as ov

        core = ov.Core()
        if fp32_from:
            body, head = split_at(onnx_path, fp32_from)
            stages = [
                core.compile_model(body, "CPU", _config(threads, inference_precision)),
                core.compile_model(head, "CPU", _config(threads, "f32")),
            ]
        else:
            stages = [core.compile_model(str(onnx_path), "CPU", _config(threads, inference_precision))]
        self.requests = [stage.create_infer_request() for stage in stages]
        self.fp32_from = fp32_from
        self.outputs = list(stages[-1].outputs)

    def infer(self, feeds: Arrays) -> Arrays:
        self.requests[0].infer(feeds)
        if self.fp32_from:
            features = self.requests[0].get_output_tensor(0).data
            self.requests[1].infer({self.fp32_from: features})
        last = self.requests[-1]
        answers: Arrays = {}
        for output in self.outputs:
            copied = np.array(last.get_tensor(output).data)  # once per output, whatever its names
            answers.update(dict.fromkeys(output.get_names(), copied))
        return answers


class OpenVinoRunner:
    """The same interface as ort_runner.OnnxRuntimeRunner: several requests' inputs run as one
    batch, outputs split back per request, and what it runs on for the device report."""

    def __init__(
        self,
        onnx_path: str,
        input_names: list[str],
        output_names: list[str],
        threads: int,
        precision: str,
        fp32_from: str = "",
    ) -> None:
        self.model = CompiledVariant(onnx_path, threads, precision, fp32_from)
        self.input_names = input_names
        self.output_names = output_names
        what = f"{precision}, head in f32 from {fp32_from}" if fp32_from else precision
        self.device = DeviceReport(device="cpu", providers=[f"OpenVINO CPU ({what})"], requested="cpu")

    def run_batched(self, per_request_inputs: list[Arrays]) -> list[Arrays]:
        sizes = [int(inputs[self.input_names[0]].shape[0]) for inputs in per_request_inputs]
        feeds = {
            name: np.concatenate([r[name] for r in per_request_inputs])
            if len(sizes) > 1
            else per_request_inputs[0][name]
            for name in self.input_names
        }
        answered = self.model.infer(feeds)
        outputs = {name: answered[name] for name in self.output_names}
        results: list[Arrays] = []
        offset = 0
        for size in sizes:
            results.append({name: value[offset : offset + size] for name, value in outputs.items()})
            offset += size
        return results


def run_each(
    onnx_path: Path,
    feeds: Sequence[dict[str, npt.NDArray[np.float32]]],
    threads: int,
    precision: str,
    fp32_from: str = "",
) -> tuple[list[Arrays], float]:
    """Every feed through one compiled variant (the guard's runs): outputs by name, and the
    seconds they took (compiling and a first run left out, as for ONNX Runtime)."""
    model = CompiledVariant(onnx_path, threads, precision, fp32_from)
    model.infer(dict(feeds[0]))
    started = time.perf_counter()
    results = [model.infer(dict(feed)) for feed in feeds]
    return results, time.perf_counter() - started
