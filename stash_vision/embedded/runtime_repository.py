"""Derives a runnable Triton model repository from model_repository/ (the one source of truth).

- native (compose, official Triton image): configs as they are, weights placed at
  <name>/<version>/model.onnx for the onnxruntime backend.
- embedded (the nvidia-pytriton binary, Python backend only): the same config with the backend
  swapped for the Python backend running stash_vision/embedded/ort_runner.py, instances on the
  device STASH_VISION_DEVICE settled on (model_placement.py: instance kind, ONNX Runtime providers,
  the runner's device report), and the ONNX path passed as a parameter. Batching, queueing, I/O
  and warmup stay identical."""

from __future__ import annotations

import os
import shutil
import tempfile
from enum import StrEnum
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.embedded import model_placement
from stash_vision.embedded.device import DevicePlan
from stash_vision.embedded.device_report import REPORT_FILE
from stash_vision.precision.selection import add_runtime_parameters, served_choice
from stash_vision.server.priority import TRITON_PRIORITY_LEVELS

RUNNER_SOURCE = Path(__file__).with_name("ort_runner.py")


class RepositoryMode(StrEnum):
    NATIVE = "native"
    EMBEDDED = "embedded"


class WeightsMissing(RuntimeError):
    """A model's weights are not in the data directory."""


def embedded_config(
    entry: CatalogEntry, weights: Path, ort_threads: int, warmup_batch: int = 1
) -> model_config_pb2.ModelConfig:
    config = model_config_pb2.ModelConfig()
    config.CopyFrom(entry.triton_config)
    config.name = entry.name
    config.backend = "python"
    config.ClearField("platform")
    config.ClearField("optimization")  # ORT/TensorRT accelerator settings mean nothing to the Python backend
    # The Python backend runs each instance as a process; one per model, on the CPU, with ORT's own
    # threads doing the parallel work.
    del config.instance_group[:]
    config.instance_group.add(kind=model_config_pb2.ModelInstanceGroup.KIND_CPU, count=1)
    config.parameters["onnx_path"].string_value = str(weights)
    config.parameters["intra_op_threads"].string_value = str(ort_threads)
    # ONNX Runtime's arena keeps the high-water mark of the largest batch it has run. Warming up at
    # the largest batch the in-flight caps let Triton form sizes it once, at start-up, so memory
    # does not step up in the middle of a long video when a larger batch happens to form.
    if config.max_batch_size > 0:
        for warmup in config.model_warmup:
            warmup.batch_size = max(1, min(warmup_batch, config.max_batch_size))
    return config


def with_request_priorities(config: model_config_pb2.ModelConfig) -> None:
    """Two priority levels in the dynamic batcher: interactive calls ask for the default (1), job
    items for 2, so Triton serves a plugin's call ahead of queued background work
    (stash_vision/server/priority.py). Kept out of the configs in git so imported models get it too."""
    if config.HasField("dynamic_batching") and config.dynamic_batching.priority_levels == 0:
        config.dynamic_batching.priority_levels = TRITON_PRIORITY_LEVELS
        config.dynamic_batching.default_priority_level = 1


def assemble(
    entries: list[CatalogEntry],
    models_dir: Path,
    out: Path,
    mode: RepositoryMode,
    ort_threads: int = 1,
    warmup_batch: int = 1,
    device: DevicePlan = model_placement.CPU_PLAN,
    precision: str = "fp32",
) -> Path:
    """Writes the repository to `out`, replacing it whole (built beside it, then renamed).
    `device` places the embedded models (the CPU unless the supervisor planned the GPU)."""
    missing = [e.name for e in entries if not e.weights_path(models_dir).is_file()]
    if missing:
        names = " ".join(missing)
        raise WeightsMissing(
            f"weights not fetched for: {names}. Run `stash-vision models fetch {names}` "
            f"(data directory {models_dir.parent})"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for entry in entries:
            # STASH_VISION_PRECISION: fp32 or a variant the accuracy guard passed (stash_vision/precision).
            embedded = mode is RepositoryMode.EMBEDDED
            choice = served_choice(entry, models_dir, precision, device.device != "cpu", openvino=embedded)
            _write_model(entry, choice.path, staging / entry.name, mode, ort_threads, warmup_batch)
            if embedded:
                _place(entry, models_dir, staging / entry.name, out, device, warmup_batch)
                add_runtime_parameters(staging / entry.name / "config.pbtxt", choice)
        backup = out.with_name(f".{out.name}.old")
        if out.exists():
            shutil.rmtree(backup, ignore_errors=True)
            out.rename(backup)
        staging.rename(out)
        shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _write_model(
    entry: CatalogEntry, weights: Path, folder: Path, mode: RepositoryMode, threads: int, warmup_batch: int
) -> None:
    version_dir = folder / str(entry.version)
    version_dir.mkdir(parents=True)
    if mode is RepositoryMode.EMBEDDED:
        config = embedded_config(entry, weights, threads, warmup_batch)
        shutil.copy2(RUNNER_SOURCE, version_dir / "model.py")
    else:
        config = model_config_pb2.ModelConfig()
        config.CopyFrom(entry.triton_config)
        _link_or_copy(weights, version_dir / entry.weights.file)
    with_request_priorities(config)
    (folder / "config.pbtxt").write_text(text_format.MessageToString(config))
    if entry.labels_file:
        shutil.copy2(entry.folder / entry.labels_file, folder / entry.labels_file)


def _place(
    entry: CatalogEntry, models_dir: Path, folder: Path, out: Path, device: DevicePlan, warmup_batch: int
) -> None:
    """Rewrites the embedded config in `folder` for `device`; the runner's report path is the
    one the folder will have once the repository is renamed into place."""
    config_path = folder / "config.pbtxt"
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    target = model_placement.ModelTarget(
        name=entry.name,
        weights=Path(config.parameters["onnx_path"].string_value),  # the file the runner loads
        report=out.resolve() / entry.name / REPORT_FILE,
        tensorrt_root=models_dir.parent / "tensorrt",
        warmup_batch=warmup_batch,
    )
    model_placement.place(config, device, target)
    config_path.write_text(text_format.MessageToString(config))


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another filesystem, or links not allowed
        shutil.copy2(source, target)
