"""Raw inference of one model on one image: decode and preprocess off the event loop, then one
Triton call whose batching with concurrent requests happens in Triton's dynamic batcher."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.server.arrays import AnyArray, FloatTensor
from stash_vision.server.errors import InvalidInput
from stash_vision.server.image_source import ImageLoader, ImageRef
from stash_vision.server.metrics import IMAGES_DECODED, STAGE_SECONDS
from stash_vision.server.preprocessing import Geometry, preprocess
from stash_vision.server.triton_session import InferenceSession
from stash_vision.server.workers import CpuPool


@dataclass(frozen=True)
class InferResult:
    model: str
    version: str
    outputs: dict[str, AnyArray]
    geometry: Geometry


class ModelInference:
    def __init__(
        self, entries: list[CatalogEntry], session: InferenceSession, loader: ImageLoader, pool: CpuPool
    ):
        self.entries = {entry.name: entry for entry in entries}
        self.session = session
        self.loader = loader
        self.pool = pool

    def entry(self, model: str) -> CatalogEntry:
        if not model:
            raise InvalidInput("model is required")
        try:
            return self.entries[model]
        except KeyError:
            raise InvalidInput(
                f"unknown model {model!r}; served models: {', '.join(sorted(self.entries))}"
            ) from None

    def _prepare(self, ref: ImageRef, entry: CatalogEntry) -> tuple[FloatTensor, Geometry]:
        started = time.perf_counter()
        image = self.loader.load(ref)
        decoded = time.perf_counter()
        tensor, geometry = preprocess(image, entry.input)
        STAGE_SECONDS.labels("decode").observe(decoded - started)
        STAGE_SECONDS.labels("preprocess").observe(time.perf_counter() - decoded)
        IMAGES_DECODED.inc()
        return tensor, geometry

    async def infer(
        self, model: str, ref: ImageRef, outputs: Sequence[str] = (), timeout_s: float | None = None
    ) -> InferResult:
        entry = self.entry(model)
        known = [tensor.name for tensor in entry.triton_config.output]
        unknown = [name for name in outputs if name not in known]
        if unknown:
            raise InvalidInput(
                f"model {model} has no output {', '.join(unknown)}; outputs: {', '.join(known)}"
            )
        tensor, geometry = await self.pool.run(self._prepare, ref, entry)
        started = time.perf_counter()
        result = await self.session.infer(
            model, {entry.input.tensor: tensor[np.newaxis]}, list(outputs) or known, timeout_s
        )
        STAGE_SECONDS.labels("triton").observe(time.perf_counter() - started)
        return InferResult(model, str(entry.version), result, geometry)
