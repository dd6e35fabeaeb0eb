"""The runner's side of the device choice: opens the ONNX Runtime session on the providers the
derived config asks for (model_placement.py wrote them), falls back to the CPU where the config
allows it (STASH_VISION_DEVICE=auto), and says what the session really uses.

ONNX Runtime does not fail when a requested provider cannot start (missing CUDA, cuDNN or
TensorRT libraries): it logs a warning and carries on with the next one. So the outcome is read
back from `session.get_providers()` and compared with the request; a strict request (cuda) that
did not get its providers fails the model's load with a message that says so."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stash_vision.embedded.device import CPU_PROVIDER, CUDA_PROVIDER, TENSORRT_PROVIDER
from stash_vision.embedded.device_report import DeviceReport

PROVIDERS_PARAMETER = "ort_providers"
FALLBACK_PARAMETER = "device_fallback"
FALLBACK_TO_CPU = "cpu"
NO_FALLBACK = "none"

_GPU_PROVIDERS = (TENSORRT_PROVIDER, CUDA_PROVIDER)

Providers = list[tuple[str, dict[str, str]]]
SessionFactory = Callable[..., Any]


@dataclass(frozen=True)
class ProviderRequest:
    providers: Providers  # (name, options) in priority order, the CPU provider last
    fallback_to_cpu: bool

    @classmethod
    def cpu(cls) -> ProviderRequest:
        return cls([(CPU_PROVIDER, {})], fallback_to_cpu=False)

    @classmethod
    def from_parameters(cls, parameters: Mapping[str, str], device_id: int = 0) -> ProviderRequest:
        """From the model config's parameters; `device_id` is the GPU Triton gave this instance
        (args["model_instance_device_id"]), which overrides the one in the config."""
        raw = parameters.get(PROVIDERS_PARAMETER)
        if not raw:
            return cls.cpu()
        providers: Providers = []
        for name, options in json.loads(raw):
            options = {str(k): str(v) for k, v in options.items()}
            if name in _GPU_PROVIDERS:
                options["device_id"] = str(device_id)
            providers.append((str(name), options))
        return cls(providers, parameters.get(FALLBACK_PARAMETER) == FALLBACK_TO_CPU)

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self.providers]

    @property
    def requested(self) -> str:
        return device_of(self.names)


def device_of(providers: Sequence[str]) -> str:
    return "cuda" if any(p in _GPU_PROVIDERS for p in providers) else "cpu"


def _preload_cuda_libraries() -> None:
    """onnxruntime-gpu[cuda,cudnn] brings CUDA and cuDNN as pip packages, which the dynamic
    loader does not search: ORT's preload_dlls (1.21+) loads them first. A host with the libraries
    installed system-wide needs nothing, so a failure here is left to the session to report."""
    import onnxruntime as ort

    preload = getattr(ort, "preload_dlls", None)
    if preload is not None:
        with contextlib.suppress(Exception):
            preload()


def _first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return text.splitlines()[0][:300]


def open_session(
    onnx_path: str, options: Any, request: ProviderRequest, create: SessionFactory | None = None
) -> tuple[Any, DeviceReport]:
    """The session and the report of what it runs on. `create` is onnxruntime.InferenceSession
    (the tests pass one that fails like a GPU out of memory)."""
    if create is None:
        import onnxruntime as ort

        create = ort.InferenceSession
    requested = request.requested
    if requested == "cuda":
        _preload_cuda_libraries()
    try:
        session = create(onnx_path, options, providers=request.providers)
    except Exception as error:
        if requested != "cuda" or not request.fallback_to_cpu:
            raise
        session = create(onnx_path, options, providers=[CPU_PROVIDER])
        reason = f"the GPU session failed ({_first_line(error)})"
        return session, DeviceReport("cpu", list(session.get_providers()), requested, reason)
    used = list(session.get_providers())
    reason = ""
    missing = [name for name in request.names if name != CPU_PROVIDER and name not in used]
    if missing:
        reason = (
            f"ONNX Runtime could not start {', '.join(missing)} (tritonserver.log has its warning: "
            "missing CUDA, cuDNN or TensorRT libraries?)"
        )
        if not request.fallback_to_cpu:
            raise RuntimeError(f"STASH_VISION_DEVICE=cuda, but {reason}")
    return session, DeviceReport(device_of(used), used, requested, reason)
