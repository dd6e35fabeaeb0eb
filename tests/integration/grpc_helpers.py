"""Small client-side helpers for the integration tests: call Infer, decode its tensors."""

from __future__ import annotations

from typing import Any

import grpc
import numpy as np
import numpy.typing as npt
from tritonclient.utils import triton_to_np_dtype

from stash_vision.v1 import inference_pb2, inference_pb2_grpc, media_pb2


def channel(target: str) -> grpc.Channel:
    return grpc.insecure_channel(
        target,
        options=[("grpc.max_send_message_length", 256 << 20), ("grpc.max_receive_message_length", 256 << 20)],
    )


def tensors(response: inference_pb2.InferResponse) -> dict[str, npt.NDArray[Any]]:
    return {
        t.name: np.frombuffer(t.data, dtype=triton_to_np_dtype(t.datatype)).reshape(tuple(t.shape))
        for t in response.outputs
    }


def infer(
    stub: inference_pb2_grpc.InferenceServiceStub,
    model: str,
    *,
    path: str | None = None,
    data: bytes | None = None,
    timeout: float = 60,
) -> inference_pb2.InferResponse:
    source = media_pb2.ImageSource(path=path) if path is not None else media_pb2.ImageSource(data=data or b"")
    return stub.Infer(inference_pb2.InferRequest(model=model, image=source), timeout=timeout)
