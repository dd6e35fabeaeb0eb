"""An in-process ONNX Runtime implementation of the server's InferenceSession seam: the same domain
code (preprocessing, decoding, fusion) with the models called directly instead of through Triton.
Benchmarks use it as the baseline our stack is compared against; calibration scripts use it to
measure thresholds without a running stack."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stash_vision.server.arrays import AnyArray
from stash_vision.server.triton_session import ModelStatus


def ort_session(onnx_path: Path, threads: int, spinning: bool = True) -> ort.InferenceSession:
    """One session as the embedded runner configures it (ort_runner.py), with `threads` intra-op
    threads: with every core and ORT's default spinning, the strongest single-session setup, so
    a baseline is not handicapped. `spinning=False`: idle threads sleep (as in the runner), so
    they leave the cores to whatever alternates with them."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if not spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


class OrtSession:
    def __init__(self, model_files: Mapping[str, Path], threads: int = 0) -> None:
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        self._sessions = {
            name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            for name, path in model_files.items()
        }

    async def infer(
        self,
        model: str,
        inputs: Mapping[str, AnyArray],
        outputs: Sequence[str],
        timeout_s: float | None = None,
    ) -> dict[str, AnyArray]:
        session = self._sessions[model]
        feeds = {name: np.ascontiguousarray(a) for name, a in inputs.items()}
        # In a thread, as Triton runs beside the server: decoding and preprocessing of other
        # requests overlap with inference (ONNX Runtime sessions are thread-safe).
        results = await asyncio.to_thread(session.run, list(outputs), feeds)
        return dict(zip(outputs, results, strict=True))

    async def server_ready(self) -> bool:
        return True

    async def model_status(self, model: str) -> ModelStatus:
        return ModelStatus(ready=model in self._sessions, device="cpu")

    async def close(self) -> None:
        self._sessions.clear()
