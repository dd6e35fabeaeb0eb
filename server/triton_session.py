"""The one seam between domain code and Triton. Domain code depends on the `InferenceSession`
protocol; `TritonSession` implements it with tritonclient's asyncio gRPC client, and unit tests
substitute their own implementation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import tritonclient.grpc.aio as triton_aio
from tritonclient.grpc import InferInput, InferRequestedOutput
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from stash_vision.embedded.device_report import served_device
from stash_vision.server.arrays import AnyArray
from stash_vision.server.errors import BackendUnavailable, DeadlineExceeded, InferenceFailed, InvalidInput
from stash_vision.server.priority import triton_priority


@dataclass(frozen=True)
class ModelStatus:
    ready: bool
    device: str  # "cpu", "gpu" or "" when unknown


class InferenceSession(Protocol):
    async def infer(
        self,
        model: str,
        inputs: Mapping[str, AnyArray],
        outputs: Sequence[str],
        timeout_s: float | None = None,
    ) -> dict[str, AnyArray]: ...

    async def server_ready(self) -> bool: ...

    async def model_status(self, model: str) -> ModelStatus: ...

    async def close(self) -> None: ...


# tritonclient reports the gRPC status as a string such as "StatusCode.UNAVAILABLE".
_UNAVAILABLE = {"StatusCode.UNAVAILABLE", "StatusCode.CANCELLED"}
_DEADLINE = {"StatusCode.DEADLINE_EXCEEDED"}
_BAD_REQUEST = {"StatusCode.INVALID_ARGUMENT"}


def translate(error: InferenceServerException, model: str) -> Exception:
    status = str(error.status() or "")
    message = error.message() or str(error)
    if status in _DEADLINE or "Deadline Exceeded" in message:
        return DeadlineExceeded(f"Triton did not answer for model {model} in time")
    if status in _UNAVAILABLE or "failed to connect" in message.lower() or "not ready" in message.lower():
        return BackendUnavailable(f"Triton is not available for model {model} ({message}); retry shortly")
    if status in _BAD_REQUEST:
        return InvalidInput(f"model {model} rejected the input: {message}")
    return InferenceFailed(f"model {model} failed: {message}")


class TritonSession:
    def __init__(self, url: str, default_timeout_s: float = 60.0) -> None:
        self.url = url
        self.default_timeout_s = default_timeout_s
        self._client = triton_aio.InferenceServerClient(url)

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, AnyArray],
        outputs: Sequence[str],
        timeout_s: float | None = None,
    ) -> dict[str, AnyArray]:
        infer_inputs = []
        for name, array in inputs.items():
            tensor = InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(np.ascontiguousarray(array))
            infer_inputs.append(tensor)
        requested = [InferRequestedOutput(name) for name in outputs]
        try:
            result = await self._client.infer(
                model,
                infer_inputs,
                outputs=requested,
                client_timeout=timeout_s or self.default_timeout_s,
                priority=triton_priority(),
            )
        except InferenceServerException as error:
            raise translate(error, model) from None
        return {name: result.as_numpy(name) for name in outputs}

    async def server_ready(self) -> bool:
        try:
            return bool(await self._client.is_server_ready(client_timeout=2.0))
        except InferenceServerException:
            return False

    async def model_status(self, model: str) -> ModelStatus:
        try:
            ready = bool(await self._client.is_model_ready(model, client_timeout=2.0))
            if not ready:
                return ModelStatus(ready=False, device="")
            config = await self._client.get_model_config(model, as_json=True, client_timeout=2.0)
        except InferenceServerException:
            return ModelStatus(ready=False, device="")
        # The embedded runner's own report of the providers its session got; Triton's instance
        # kind only where no runner reports (the native onnxruntime backend enforces the kind).
        return ModelStatus(ready=True, device=served_device(config.get("config", {})))

    async def close(self) -> None:
        await self._client.close()
