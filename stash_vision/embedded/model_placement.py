"""Puts one model of the derived (embedded) runtime repository where the device plan says: the
Triton instance kind, the ONNX Runtime providers the runner asks for, where the runner reports
what it really got, and for TensorRT the engine cache.

Instance kind. The Python backend runs every instance in its own stub process on the host; the
kind is what Triton records and passes to the instance. With KIND_GPU and `gpus: [0]` Triton
gives the instance GPU 0 (args["model_instance_device_id"], which the runner hands to the CUDA
provider), its statistics carry the GPU, and a host whose Triton sees no GPU refuses to load the
model instead of silently running elsewhere. Inputs still reach the runner in host memory (the
backend's default FORCE_CPU_ONLY_INPUT_TENSORS), which is what `as_numpy()` needs; ONNX Runtime
copies the batch to the GPU itself. So: KIND_GPU on the GPU, KIND_CPU on the CPU. One GPU is used
(the first visible one: CUDA_VISIBLE_DEVICES picks it).

TensorRT engines. ONNX Runtime names its cached engines after the graph and the GPU's compute
capability, not after the weights or TensorRT's version, so a changed model could load a stale
engine. Each model gets its own cache folder keyed by the weights' sha256, the GPU's name and
compute capability, and the ONNX Runtime (and TensorRT) version: any change gives a new, empty
folder, so the engine is rebuilt, and older folders of the model are removed. Explicit shape
profiles (batch 1 to max_batch_size) let one engine serve every batch Triton forms, where ORT's
default would rebuild it whenever a larger batch first arrives."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from tritonclient.grpc import model_config_pb2

from stash_vision.embedded.device import CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER, DevicePlan
from stash_vision.embedded.device_report import REPORT_PARAMETER
from stash_vision.embedded.ort_session import (
    FALLBACK_PARAMETER,
    FALLBACK_TO_CPU,
    NO_FALLBACK,
    PROVIDERS_PARAMETER,
)

CPU_PLAN = DevicePlan("cpu", tensorrt=False, fallback_to_cpu=False)
_KEY_FILE = "key.json"


@dataclass(frozen=True)
class ModelTarget:
    name: str
    weights: Path
    report: Path  # where the runner writes its device report (in the final repository)
    tensorrt_root: Path  # $DATA_DIR/tensorrt
    warmup_batch: int = 1


def place(config: model_config_pb2.ModelConfig, plan: DevicePlan, target: ModelTarget) -> None:
    del config.instance_group[:]
    if plan.device == "cuda":
        config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_GPU, count=1, gpus=[0])
    else:
        config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, count=1)
    providers = provider_list(config, plan, target)
    config.parameters[PROVIDERS_PARAMETER].string_value = json.dumps(providers)
    config.parameters[FALLBACK_PARAMETER].string_value = (
        FALLBACK_TO_CPU if plan.fallback_to_cpu else NO_FALLBACK
    )
    config.parameters[REPORT_PARAMETER].string_value = str(target.report)


def provider_list(
    config: model_config_pb2.ModelConfig, plan: DevicePlan, target: ModelTarget
) -> list[tuple[str, dict[str, str]]]:
    """(provider, options) in priority order. The CPU provider stays last on the GPU too: ONNX
    Runtime runs there whatever the GPU providers do not support."""
    if plan.device != "cuda":
        return [(CPU_PROVIDER, {})]
    providers: list[tuple[str, dict[str, str]]] = [(CUDA_PROVIDER, {"device_id": "0"}), (CPU_PROVIDER, {})]
    if plan.tensorrt:
        cache = tensorrt_cache_dir(target, plan)
        options = {
            "device_id": "0",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache),
            "trt_timing_cache_enable": "True",
            "trt_timing_cache_path": str(cache),
        }
        options |= shape_profiles(config, target.warmup_batch)
        providers.insert(0, (TENSORRT_PROVIDER, options))
    return providers


def shape_profiles(config: model_config_pb2.ModelConfig, warmup_batch: int) -> dict[str, str]:
    """TensorRT profiles over the batch dimension (1, the warm-up batch, max_batch_size), for
    inputs whose other dimensions are fixed; none when a model does not batch, has a dynamic
    dimension, or an input name ORT's "name:dims,..." option cannot carry (ORT splits at the
    first ':', so open_nsfw's "input:0" cannot be named): TensorRT then sizes its profile from
    the shapes it sees, rebuilding the engine when a batch size outside it first arrives."""
    if config.max_batch_size <= 0 or any(d <= 0 for i in config.input for d in i.dims):
        return {}
    if any(":" in i.name or "," in i.name for i in config.input):
        return {}
    batch = max(1, min(warmup_batch, config.max_batch_size))

    def shapes(size: int) -> str:
        return ",".join(f"{i.name}:{'x'.join(str(d) for d in [size, *i.dims])}" for i in config.input)

    return {
        "trt_profile_min_shapes": shapes(1),
        "trt_profile_opt_shapes": shapes(batch),
        "trt_profile_max_shapes": shapes(config.max_batch_size),
    }


def _tensorrt_version() -> str:
    for distribution in ("tensorrt", "tensorrt-cu13", "tensorrt-cu12", "tensorrt-libs"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return ""


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as weights:
        for block in iter(lambda: weights.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_key(target: ModelTarget, plan: DevicePlan) -> dict[str, str]:
    assert plan.gpu is not None, "TensorRT is planned on a GPU only"
    return {
        "model": target.name,
        "weights_sha256": _sha256(target.weights),
        "gpu": plan.gpu.name,
        "compute_capability": plan.gpu.compute_capability,
        "onnxruntime": plan.ort_version,
        "tensorrt": _tensorrt_version(),
    }


def tensorrt_cache_dir(target: ModelTarget, plan: DevicePlan) -> Path:
    """$DATA_DIR/tensorrt/<model>/<key digest>/, created with a key.json saying what it is for;
    the model's folders for other keys are removed."""
    key = cache_key(target, plan)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    model_root = target.tensorrt_root / target.name
    folder = model_root / digest
    folder.mkdir(parents=True, exist_ok=True)
    (folder / _KEY_FILE).write_text(json.dumps(key, indent=2) + "\n")
    for stale in model_root.iterdir():
        if stale.is_dir() and stale != folder:
            shutil.rmtree(stale, ignore_errors=True)
    return folder
