"""STASH_VISION_DEVICE and STASH_VISION_TENSORRT against simulated hosts (driver or none, ONNX
Runtime's CPU or GPU build): the plan, its one log line, the raised in-flight caps; and the real
probe on this GPU-less machine."""

from __future__ import annotations

import logging

import pytest

from stash_vision.embedded import device
from stash_vision.embedded.device import (
    CPU_PROVIDER,
    CUDA_PROVIDER,
    TENSORRT_PROVIDER,
    DevicePlan,
    DeviceUnavailable,
    GpuInfo,
    HostProbe,
    plan_device,
)
from stash_vision.settings import Settings

GPU = GpuInfo(name="NVIDIA GeForce RTX 4070", compute_capability="8.9", driver_cuda_version="13.0")
CPU_ORT = (CPU_PROVIDER,)
GPU_ORT = (CUDA_PROVIDER, CPU_PROVIDER)
TRT_ORT = (TENSORRT_PROVIDER, CUDA_PROVIDER, CPU_PROVIDER)
NO_DRIVER = "no NVIDIA driver (libcuda.so.1 not found)"


def host(gpu: GpuInfo | None = GPU, providers: tuple[str, ...] = GPU_ORT, cuda: str = "13.0") -> HostProbe:
    return HostProbe(
        gpu, "" if gpu else NO_DRIVER, providers, "1.31.1", cuda if CUDA_PROVIDER in providers else ""
    )


# -- cpu ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("probe", [host(), host(None, CPU_ORT)])
def test_cpu_is_the_cpu_whatever_the_host_has(probe: HostProbe) -> None:
    plan = plan_device("cpu", False, probe)
    assert (plan.device, plan.tensorrt, plan.fallback_to_cpu, plan.reason) == ("cpu", False, False, "")


def test_tensorrt_with_cpu_is_refused() -> None:
    with pytest.raises(DeviceUnavailable, match="STASH_VISION_TENSORRT=true needs the GPU"):
        plan_device("cpu", True, host())


# -- cuda ----------------------------------------------------------------------------------------------------
def test_cuda_with_a_gpu_and_the_gpu_build_runs_on_the_gpu_without_fallback() -> None:
    plan = plan_device("cuda", False, host())
    assert (plan.device, plan.fallback_to_cpu, plan.gpu, plan.reason) == ("cuda", False, GPU, "")


def test_cuda_without_a_driver_refuses_to_start() -> None:
    with pytest.raises(DeviceUnavailable) as raised:
        plan_device("cuda", False, host(None, GPU_ORT))
    assert str(raised.value) == (
        f"STASH_VISION_DEVICE=cuda, but {NO_DRIVER}; set STASH_VISION_DEVICE=auto or cpu to run on the CPU"
    )


def test_cuda_with_the_cpu_build_of_onnxruntime_says_how_to_install_the_gpu_build() -> None:
    with pytest.raises(DeviceUnavailable) as raised:
        plan_device("cuda", False, host(GPU, CPU_ORT))
    message = str(raised.value)
    assert "ONNX Runtime 1.31.1 is the CPU-only build (no CUDAExecutionProvider)" in message
    assert "pip install -e '.[embedded-gpu]'" in message


def test_cuda_with_a_driver_older_than_onnxruntimes_cuda_says_update_the_driver() -> None:
    old = GpuInfo(GPU.name, GPU.compute_capability, driver_cuda_version="12.4")
    with pytest.raises(
        DeviceUnavailable, match=r"driver supports CUDA 12.4.*needs CUDA 13.0: update the driver"
    ):
        plan_device("cuda", False, host(old))


def test_cuda_with_tensorrt_but_no_tensorrt_provider_is_refused() -> None:
    with pytest.raises(
        DeviceUnavailable, match=r"STASH_VISION_TENSORRT=true, but ONNX Runtime 1\.31\.1 has no"
    ):
        plan_device("cuda", True, host(GPU, GPU_ORT))


# -- auto -----------------------------------------------------------------------------------------------------
def test_auto_with_everything_runs_on_the_gpu_and_lets_the_runner_fall_back() -> None:
    plan = plan_device("auto", False, host())
    assert (plan.device, plan.fallback_to_cpu, plan.reason) == ("cuda", True, "")


@pytest.mark.parametrize(
    ("probe", "reason"),
    [
        (host(None, GPU_ORT), NO_DRIVER),
        (host(None, CPU_ORT), NO_DRIVER),
        (host(GPU, CPU_ORT), "ONNX Runtime 1.31.1 is the CPU-only build (no CUDAExecutionProvider)"),
        (
            host(GpuInfo(GPU.name, "8.9", "12.2")),
            "the NVIDIA driver supports CUDA 12.2, and ONNX Runtime 1.31.1 needs CUDA 13.0: update the driver",
        ),
    ],
)
def test_auto_falls_back_to_the_cpu_and_keeps_the_reason(probe: HostProbe, reason: str) -> None:
    plan = plan_device("auto", False, probe)
    assert (plan.device, plan.tensorrt, plan.fallback_to_cpu, plan.reason) == ("cpu", False, False, reason)


def test_auto_with_tensorrt_uses_it_when_onnxruntime_has_it() -> None:
    plan = plan_device("auto", True, host(GPU, TRT_ORT))
    assert (plan.device, plan.tensorrt, plan.reason) == ("cuda", True, "")


def test_auto_with_tensorrt_but_no_tensorrt_provider_runs_cuda_and_says_so() -> None:
    plan = plan_device("auto", True, host(GPU, GPU_ORT))
    assert (plan.device, plan.tensorrt) == ("cuda", False)
    assert plan.reason == "ONNX Runtime 1.31.1 has no TensorrtExecutionProvider; CUDA without TensorRT"


# -- the one log line ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("setting", "tensorrt", "probe", "level", "line"),
    [
        (
            "auto",
            False,
            host(None, CPU_ORT),
            logging.WARNING,
            f"device: auto runs the models on the CPU: {NO_DRIVER}",
        ),
        ("auto", False, host(), logging.INFO, f"device: the models run on {GPU.name} through CUDA"),
        (
            "auto",
            True,
            host(GPU, TRT_ORT),
            logging.INFO,
            f"device: the models run on {GPU.name} through CUDA with TensorRT",
        ),
        ("cpu", False, host(), logging.INFO, "device: the models run on the CPU (STASH_VISION_DEVICE=cpu)"),
    ],
)
def test_choose_logs_exactly_one_line(
    caplog: pytest.LogCaptureFixture,
    setting: device.DeviceSetting,
    tensorrt: bool,
    probe: HostProbe,
    level: int,
    line: str,
) -> None:
    with caplog.at_level(logging.INFO, logger="stash_vision.device"):
        device.choose(setting, tensorrt, probe)
    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [(level, line)]


def test_runner_fallbacks_are_one_line_grouped_by_reason(caplog: pytest.LogCaptureFixture) -> None:
    oom = "the GPU session failed (CUDA failure 2: out of memory)"
    with caplog.at_level(logging.INFO, logger="stash_vision.device"):
        device.log_runner_fallbacks(
            {
                "yunet": ("cpu", oom),
                "arcface": ("cpu", oom),
                "open_nsfw": ("cuda", ""),
                "scrfd_500m": ("cpu", ""),
            }
        )
    assert [r.getMessage() for r in caplog.records] == [
        f"device: auto fell back to the CPU for arcface, yunet: {oom}"
    ]


# -- in-flight caps -------------------------------------------------------------------------------------------
CUDA_PLAN = DevicePlan("cuda", tensorrt=False, fallback_to_cpu=True, gpu=GPU)
CPU_PLAN = DevicePlan("cpu", tensorrt=False, fallback_to_cpu=False)


def _caps(settings: Settings, plan: DevicePlan) -> dict[str, int]:
    current = {
        "images_in_flight": settings.images_in_flight,
        "video_frames_in_flight": settings.video_frames_in_flight,
    }
    return device.in_flight_overrides(plan, settings.model_fields_set, current)


def test_on_the_gpu_default_in_flight_caps_rise(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STASH_VISION_IMAGES_IN_FLIGHT", raising=False)
    monkeypatch.delenv("STASH_VISION_VIDEO_FRAMES_IN_FLIGHT", raising=False)
    assert _caps(Settings(), CUDA_PLAN) == {"images_in_flight": 32, "video_frames_in_flight": 32}
    assert _caps(Settings(), CPU_PLAN) == {}


def test_caps_the_user_set_stay_as_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STASH_VISION_IMAGES_IN_FLIGHT", "4")
    monkeypatch.delenv("STASH_VISION_VIDEO_FRAMES_IN_FLIGHT", raising=False)
    assert _caps(Settings(), CUDA_PLAN) == {"video_frames_in_flight": 32}


def test_settings_accept_the_three_devices_and_refuse_others(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("STASH_VISION_DEVICE", raising=False)
    monkeypatch.delenv("STASH_VISION_TENSORRT", raising=False)
    assert (Settings().device, Settings().tensorrt) == ("auto", False)
    for value in ("auto", "cpu", "cuda"):
        monkeypatch.setenv("STASH_VISION_DEVICE", value)
        assert Settings().device == value
    monkeypatch.setenv("STASH_VISION_DEVICE", "gpu")
    with pytest.raises(ValueError, match="'auto', 'cpu' or 'cuda'"):
        Settings()


# -- the real probe, on this machine ------------------------------------------------------------------------------
def test_probe_of_a_missing_driver_library_says_so() -> None:
    assert device.probe_gpu("libcuda-not-here.so.1") == (
        None,
        "no NVIDIA driver (libcuda-not-here.so.1 not found)",
    )


def test_probe_of_this_gpu_less_machine_with_onnxruntimes_cpu_build() -> None:
    probe = device.probe_host()
    assert probe.gpu is None and probe.no_gpu_reason == NO_DRIVER
    assert CPU_PROVIDER in probe.ort_providers and CUDA_PROVIDER not in probe.ort_providers
    assert probe.ort_cuda_version == ""
    assert plan_device("auto", False, probe).reason == NO_DRIVER
