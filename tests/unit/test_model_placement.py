"""The derived (embedded) runtime repository for each device plan, read back from the written
config.pbtxt files: Triton's instance kind, the ONNX Runtime providers the runner will ask for, the
fallback it may take, where it reports, and the TensorRT engine cache keyed by weights and GPU."""

from __future__ import annotations

import json
from pathlib import Path

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stash_vision.catalog.entries import Catalog
from stash_vision.embedded.device import DevicePlan, GpuInfo
from stash_vision.embedded.device_report import DeviceReport, served_device, write_report
from stash_vision.embedded.model_placement import CPU_PLAN, ModelTarget, shape_profiles, tensorrt_cache_dir
from stash_vision.embedded.ort_session import ProviderRequest
from stash_vision.embedded.runtime_repository import RepositoryMode, assemble

GPU = GpuInfo("NVIDIA GeForce RTX 4070", "8.9", "13.0")
OTHER_GPU = GpuInfo("NVIDIA GeForce RTX 3060", "8.6", "13.0")
AUTO_GPU = DevicePlan("cuda", tensorrt=False, fallback_to_cpu=True, gpu=GPU, ort_version="1.31.1")
STRICT_GPU = DevicePlan("cuda", tensorrt=False, fallback_to_cpu=False, gpu=GPU, ort_version="1.31.1")
TENSORRT = DevicePlan("cuda", tensorrt=True, fallback_to_cpu=True, gpu=GPU, ort_version="1.31.1")
MODELS = ["open_nsfw", "yunet"]
KIND = model_config_pb2.ModelInstanceGroup


def _repository(data_dir: Path, plan: DevicePlan, warmup_batch: int = 8) -> Path:
    entries = Catalog.load().select(MODELS)
    for entry in entries:
        weights = entry.weights_path(data_dir / "models")
        weights.parent.mkdir(parents=True, exist_ok=True)
        weights.write_bytes(f"weights of {entry.name}".encode())
    return assemble(
        entries, data_dir / "models", data_dir / "repo", RepositoryMode.EMBEDDED, 2, warmup_batch, device=plan
    )


def _config(repo: Path, model: str) -> model_config_pb2.ModelConfig:
    return text_format.Parse((repo / model / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _parameters(config: model_config_pb2.ModelConfig) -> dict[str, str]:
    return {k: v.string_value for k, v in config.parameters.items()}


def test_cpu_plan_puts_every_model_on_cpu_instances_with_the_cpu_provider(tmp_path: Path) -> None:
    repo = _repository(tmp_path, CPU_PLAN)
    for model in MODELS:
        config = _config(repo, model)
        assert [(g.kind, list(g.gpus), g.count) for g in config.instance_group] == [(KIND.KIND_CPU, [], 1)]
        parameters = _parameters(config)
        assert json.loads(parameters["ort_providers"]) == [["CPUExecutionProvider", {}]]
        assert parameters["device_fallback"] == "none"
        # The report lands in the final repository folder (not the staging one it was built in).
        assert parameters["device_report"] == str((tmp_path / "repo" / model / "device.json").resolve())
        assert ProviderRequest.from_parameters(parameters) == ProviderRequest.cpu()


def test_gpu_plan_puts_every_model_on_gpu_0_with_cuda_then_cpu(tmp_path: Path) -> None:
    repo = _repository(tmp_path, AUTO_GPU)
    for model in MODELS:
        config = _config(repo, model)
        assert [(g.kind, list(g.gpus), g.count) for g in config.instance_group] == [(KIND.KIND_GPU, [0], 1)]
        parameters = _parameters(config)
        assert json.loads(parameters["ort_providers"]) == [
            ["CUDAExecutionProvider", {"device_id": "0"}],
            ["CPUExecutionProvider", {}],
        ]
        assert parameters["device_fallback"] == "cpu"
        # What the runner makes of it, on the GPU Triton gives the instance.
        request = ProviderRequest.from_parameters(parameters, device_id=1)
        assert request.providers[0] == ("CUDAExecutionProvider", {"device_id": "1"})
        assert request.fallback_to_cpu and request.requested == "cuda"
    # Everything else of the embedded config is untouched by the placement.
    assert _parameters(_config(repo, "yunet"))["intra_op_threads"] == "2"
    assert _config(repo, "yunet").backend == "python"


def test_strict_cuda_allows_no_fallback(tmp_path: Path) -> None:
    parameters = _parameters(_config(_repository(tmp_path, STRICT_GPU), "yunet"))
    assert parameters["device_fallback"] == "none"
    assert not ProviderRequest.from_parameters(parameters).fallback_to_cpu


def test_tensorrt_comes_first_with_its_caches_under_the_data_dir(tmp_path: Path) -> None:
    repo = _repository(tmp_path, TENSORRT, warmup_batch=8)
    providers = json.loads(_parameters(_config(repo, "yunet"))["ort_providers"])
    assert [name for name, _ in providers] == [
        "TensorrtExecutionProvider",
        "CUDAExecutionProvider",
        "CPUExecutionProvider",
    ]
    options = providers[0][1]
    cache = Path(options["trt_engine_cache_path"])
    assert cache.parent == tmp_path / "tensorrt" / "yunet"
    assert options["trt_timing_cache_path"] == str(cache)
    assert options["trt_engine_cache_enable"] == options["trt_timing_cache_enable"] == "True"
    key = json.loads((cache / "key.json").read_text())
    assert key["gpu"] == GPU.name and key["compute_capability"] == "8.9" and key["onnxruntime"] == "1.31.1"
    # yunet: fixed 640x640 input, max batch 16; profiles over the batch, optimal at the warm-up batch.
    assert options["trt_profile_min_shapes"] == "input:1x3x640x640"
    assert options["trt_profile_opt_shapes"] == "input:8x3x640x640"
    assert options["trt_profile_max_shapes"] == "input:16x3x640x640"
    # open_nsfw's input is named "input:0", which ORT's option format cannot carry: no profiles.
    nsfw = json.loads(_parameters(_config(repo, "open_nsfw"))["ort_providers"])[0][1]
    assert not any(k.startswith("trt_profile") for k in nsfw)


def test_engine_cache_is_rebuilt_when_the_weights_or_the_gpu_change_and_kept_otherwise(
    tmp_path: Path,
) -> None:
    weights = tmp_path / "model.onnx"
    weights.write_bytes(b"first weights")
    target = ModelTarget("yunet", weights, tmp_path / "device.json", tmp_path / "tensorrt")
    first = tensorrt_cache_dir(target, TENSORRT)
    (first / "engine").write_bytes(b"built")
    assert tensorrt_cache_dir(target, TENSORRT) == first and (first / "engine").exists()
    weights.write_bytes(b"second weights")
    second = tensorrt_cache_dir(target, TENSORRT)
    assert second != first and not first.exists()  # a fresh, empty folder: the engine is rebuilt
    other_gpu = DevicePlan("cuda", tensorrt=True, fallback_to_cpu=True, gpu=OTHER_GPU, ort_version="1.31.1")
    third = tensorrt_cache_dir(target, other_gpu)
    assert third != second and not second.exists()
    newer_ort = DevicePlan("cuda", tensorrt=True, fallback_to_cpu=True, gpu=OTHER_GPU, ort_version="1.32.0")
    assert tensorrt_cache_dir(target, newer_ort) != third
    assert sorted(p.name for p in (tmp_path / "tensorrt" / "yunet").iterdir()) == [
        tensorrt_cache_dir(target, newer_ort).name
    ]


def test_no_profiles_for_models_that_do_not_batch_or_have_dynamic_dimensions() -> None:
    config = model_config_pb2.ModelConfig(max_batch_size=0)
    config.input.add(name="x", dims=[1, 3, 64, 64])
    assert shape_profiles(config, 8) == {}
    config = model_config_pb2.ModelConfig(max_batch_size=8)
    config.input.add(name="x", dims=[3, -1, -1])
    assert shape_profiles(config, 8) == {}


def test_served_device_is_the_runners_report_else_the_instance_kind(tmp_path: Path) -> None:
    report = tmp_path / "device.json"
    config = {
        "parameters": {"device_report": {"string_value": str(report)}},
        "instance_group": [{"kind": "KIND_GPU"}],
    }
    assert served_device(config) == ""  # ready but unreported: unknown, not the config's GPU
    write_report(
        report, DeviceReport("cpu", ["CPUExecutionProvider"], "cuda", "the GPU session failed (oom)")
    )
    assert served_device(config) == "cpu"
    write_report(report, DeviceReport("cuda", ["CUDAExecutionProvider", "CPUExecutionProvider"], "cuda"))
    assert served_device(config) == "gpu"
    # The native repository (onnxruntime backend): Triton enforces the kind itself.
    assert served_device({"instance_group": [{"kind": "KIND_GPU", "count": 1}]}) == "gpu"
    assert served_device({"instance_group": [{"kind": "KIND_CPU", "count": 1}]}) == "cpu"
