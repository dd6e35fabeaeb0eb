"""Where the embedded stack runs its models: STASH_VISION_DEVICE (auto | cpu | cuda) and
STASH_VISION_TENSORRT against what this host really has.

The supervisor probes the host once, before it derives the runtime repository: the NVIDIA driver
(libcuda, asked directly, so no nvidia-smi is needed) and the execution providers the installed
ONNX Runtime was built with. `plan_device` turns setting + probe into a `DevicePlan`:

- `cpu`: the CPU, whatever the host has.
- `cuda`: the GPU or a clear start-up error (no driver, no GPU, a CPU-only ONNX Runtime).
- `auto`: the GPU when the probe finds everything it needs, else the CPU with ONE log line that
  says why. The runner itself may still fall back (the CUDA libraries fail to load, the session
  runs out of GPU memory); it reports what it really got (device_report.py), and that report, not
  this plan, is what /health, ListModels and the metrics show.

Pure decisions take the probe as an argument, so the tests simulate any host."""

from __future__ import annotations

import contextlib
import ctypes
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger("stash_vision.device")

CUDA_PROVIDER = "CUDAExecutionProvider"
TENSORRT_PROVIDER = "TensorrtExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

DeviceSetting = Literal["auto", "cpu", "cuda"]
Device = Literal["cpu", "cuda"]

# Images and sampled frames in flight when the models run on a GPU and the user set no cap: a GPU
# runs a batch of 32 about as fast as one of 8, so more in flight keeps it fed while the CPU
# threads decode. 32 is the largest batch of the tagging models (open_nsfw, nudenet_320n).
GPU_IN_FLIGHT = 32
_IN_FLIGHT_SETTINGS = ("images_in_flight", "video_frames_in_flight")

_INSTALL_GPU = (
    "install ONNX Runtime's GPU build: .venv/bin/pip uninstall -y onnxruntime && "
    ".venv/bin/pip install -e '.[embedded-gpu]' (scripts/serve does this when nvidia-smi sees a GPU)"
)


class DeviceUnavailable(RuntimeError):
    """STASH_VISION_DEVICE=cuda (or TensorRT) asked for what this host lacks; the message says what."""


@dataclass(frozen=True)
class GpuInfo:
    """GPU 0 as the driver names it (what a TensorRT engine is built for)."""

    name: str
    compute_capability: str  # "8.9"
    driver_cuda_version: str  # the newest CUDA the driver supports, "13.0"


@dataclass(frozen=True)
class HostProbe:
    gpu: GpuInfo | None
    no_gpu_reason: str  # why `gpu` is None; "" when there is one
    ort_providers: tuple[str, ...]  # onnxruntime.get_available_providers()
    ort_version: str
    ort_cuda_version: str = ""  # the CUDA the ONNX Runtime GPU build was built with; "" when CPU-only


@dataclass(frozen=True)
class DevicePlan:
    device: Device
    tensorrt: bool
    fallback_to_cpu: bool  # auto: the runner may still fall back to the CPU, and says why
    reason: str = ""  # why auto chose the CPU, or TensorRT was left out
    gpu: GpuInfo | None = None
    ort_version: str = ""


# -- probing the host ---------------------------------------------------------------------------------
def _cuda_error(lib: ctypes.CDLL, code: int) -> str:
    name = ctypes.c_char_p()
    with contextlib.suppress(Exception):
        if lib.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
            return f"{name.value.decode()} ({code})"
    return f"CUDA error {code}"


_CUDA_ERROR_NO_DEVICE = 100


def probe_gpu(library: str = "libcuda.so.1") -> tuple[GpuInfo | None, str]:
    """GPU 0 through the driver API, or None and why not. CUDA_VISIBLE_DEVICES applies."""
    try:
        lib = ctypes.CDLL(library)
    except OSError:
        return None, f"no NVIDIA driver ({library} not found)"
    code = lib.cuInit(0)
    count = ctypes.c_int()
    if code == 0:
        code = lib.cuDeviceGetCount(ctypes.byref(count))
    if code == _CUDA_ERROR_NO_DEVICE or (code == 0 and count.value < 1):
        return None, "no CUDA device visible (check CUDA_VISIBLE_DEVICES and the container's --gpus)"
    if code != 0:
        return None, f"the NVIDIA driver did not initialise: {_cuda_error(lib, code)}"
    device = ctypes.c_int()
    lib.cuDeviceGet(ctypes.byref(device), 0)
    name = ctypes.create_string_buffer(256)
    lib.cuDeviceGetName(name, len(name), device)
    major, minor, driver = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
    lib.cuDeviceGetAttribute(ctypes.byref(major), 75, device)  # COMPUTE_CAPABILITY_MAJOR
    lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, device)  # COMPUTE_CAPABILITY_MINOR
    lib.cuDriverGetVersion(ctypes.byref(driver))
    return (
        GpuInfo(
            name=name.value.decode(errors="replace").strip(),
            compute_capability=f"{major.value}.{minor.value}",
            driver_cuda_version=f"{driver.value // 1000}.{driver.value % 1000 // 10}",
        ),
        "",
    )


def probe_onnxruntime() -> tuple[tuple[str, ...], str, str]:
    """Providers, version, and the CUDA version of a GPU build ("" for the CPU build)."""
    import onnxruntime as ort

    cuda = ""
    with contextlib.suppress(Exception):
        from onnxruntime.capi import build_and_package_info

        cuda = str(getattr(build_and_package_info, "cuda_version", "") or "")
    return tuple(ort.get_available_providers()), str(ort.__version__), cuda


def probe_host() -> HostProbe:
    gpu, reason = probe_gpu()
    providers, version, cuda = probe_onnxruntime()
    return HostProbe(gpu, reason, providers, version, cuda)


# -- deciding -------------------------------------------------------------------------------------------
def _major(version: str) -> int:
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else 0


def _why_not_cuda(probe: HostProbe) -> str:
    """Why the GPU cannot be used, "" when it can."""
    if probe.gpu is None:
        return probe.no_gpu_reason or "no NVIDIA GPU found"
    if CUDA_PROVIDER not in probe.ort_providers:
        return f"ONNX Runtime {probe.ort_version} is the CPU-only build (no {CUDA_PROVIDER})"
    needed, driver = _major(probe.ort_cuda_version), _major(probe.gpu.driver_cuda_version)
    if needed and driver and driver < needed:
        return (
            f"the NVIDIA driver supports CUDA {probe.gpu.driver_cuda_version}, and ONNX Runtime "
            f"{probe.ort_version} needs CUDA {probe.ort_cuda_version}: update the driver"
        )
    return ""


def plan_device(setting: DeviceSetting, tensorrt: bool, probe: HostProbe) -> DevicePlan:
    if setting == "cpu":
        if tensorrt:
            raise DeviceUnavailable(
                "STASH_VISION_TENSORRT=true needs the GPU, and STASH_VISION_DEVICE=cpu; "
                "set STASH_VISION_DEVICE=auto or cuda, or STASH_VISION_TENSORRT=false"
            )
        return DevicePlan("cpu", tensorrt=False, fallback_to_cpu=False, ort_version=probe.ort_version)
    blocker = _why_not_cuda(probe)
    strict = setting == "cuda"
    if blocker:
        if strict:
            hint = (
                _INSTALL_GPU
                if probe.gpu is not None and CUDA_PROVIDER not in probe.ort_providers
                else ("set STASH_VISION_DEVICE=auto or cpu to run on the CPU")
            )
            raise DeviceUnavailable(f"STASH_VISION_DEVICE=cuda, but {blocker}; {hint}")
        return DevicePlan(
            "cpu", tensorrt=False, fallback_to_cpu=False, reason=blocker, ort_version=probe.ort_version
        )
    reason = ""
    if tensorrt and TENSORRT_PROVIDER not in probe.ort_providers:
        missing = f"ONNX Runtime {probe.ort_version} has no {TENSORRT_PROVIDER}"
        if strict:
            raise DeviceUnavailable(
                f"STASH_VISION_TENSORRT=true, but {missing}; set STASH_VISION_TENSORRT=false"
            )
        tensorrt, reason = False, f"{missing}; CUDA without TensorRT"
    return DevicePlan(
        "cuda",
        tensorrt=tensorrt,
        fallback_to_cpu=not strict,
        reason=reason,
        gpu=probe.gpu,
        ort_version=probe.ort_version,
    )


def choose(setting: DeviceSetting, tensorrt: bool, probe: HostProbe | None = None) -> DevicePlan:
    """The plan for this host, with the one log line that says what was chosen and, when `auto`
    settled for less than asked, why."""
    plan = plan_device(setting, tensorrt, probe or probe_host())
    if plan.device == "cuda":
        assert plan.gpu is not None
        extra = " with TensorRT" if plan.tensorrt else ""
        suffix = f" ({plan.reason})" if plan.reason else ""
        log.info("device: the models run on %s through CUDA%s%s", plan.gpu.name, extra, suffix)
    elif plan.reason:
        log.warning("device: auto runs the models on the CPU: %s", plan.reason)
    else:
        log.info("device: the models run on the CPU (STASH_VISION_DEVICE=%s)", setting)
    return plan


def in_flight_overrides(plan: DevicePlan, fields_set: set[str], current: Mapping[str, int]) -> dict[str, int]:
    """The in-flight caps the GPU raises: those the user did not set and that are below
    GPU_IN_FLIGHT. On the CPU nothing changes (the CPU defaults come from measurement)."""
    if plan.device != "cuda":
        return {}
    return {
        name: GPU_IN_FLIGHT
        for name in _IN_FLIGHT_SETTINGS
        if name not in fields_set and current.get(name, GPU_IN_FLIGHT) < GPU_IN_FLIGHT
    }


def log_runner_fallbacks(reports: Mapping[str, tuple[str, str]]) -> None:
    """One line for the models whose runner fell back to the CPU although the plan said the GPU
    (model -> (device, reason)), grouped by reason."""
    by_reason: dict[str, list[str]] = {}
    for model, (device, reason) in sorted(reports.items()):
        if device == "cpu" and reason:
            by_reason.setdefault(reason, []).append(model)
    if by_reason:
        parts = "; ".join(f"{', '.join(models)}: {reason}" for reason, models in by_reason.items())
        log.warning("device: auto fell back to the CPU for %s", parts)
