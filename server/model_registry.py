"""The served models and where each stands in Triton."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.precision.selection import Choice, ServedPrecision
from stash_vision.server.metrics import MODEL_DEVICE
from stash_vision.server.triton_session import InferenceSession, ModelStatus


@dataclass(frozen=True)
class ModelInfo:
    entry: CatalogEntry
    status: ModelStatus
    precision: Choice | None = None  # None when not known (no precision lookup configured)


class ModelRegistry:
    def __init__(
        self, entries: list[CatalogEntry], session: InferenceSession, precision: ServedPrecision | None = None
    ) -> None:
        self.entries = sorted(entries, key=lambda e: e.name)
        self.session = session
        self.precision = precision
        self._devices: dict[str, str] = {}  # model -> device label last exported

    async def list(self) -> list[ModelInfo]:
        statuses = await asyncio.gather(*(self.session.model_status(e.name) for e in self.entries))
        infos = [
            ModelInfo(entry, status, self.precision.of(entry, status.device) if self.precision else None)
            for entry, status in zip(self.entries, statuses, strict=True)
        ]
        self._export_devices(infos)
        return infos

    def _export_devices(self, infos: Sequence[ModelInfo]) -> None:
        """stash_vision_model_device: kept current by the readiness watcher's polling."""
        for info in infos:
            name = info.entry.name
            label = (info.status.device or "unknown") if info.status.ready else None
            previous = self._devices.get(name)
            if previous is not None and previous != label:
                MODEL_DEVICE.remove(name, previous)
                del self._devices[name]
            if label is not None:
                MODEL_DEVICE.labels(name, label).set(1)
                self._devices[name] = label

    async def all_ready(self) -> bool:
        if not await self.session.server_ready():
            return False
        return all(info.status.ready for info in await self.list())
