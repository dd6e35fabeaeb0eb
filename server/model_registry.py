"""The served models and where each stands in Triton."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.server.triton_session import InferenceSession, ModelStatus


@dataclass(frozen=True)
class ModelInfo:
    entry: CatalogEntry
    status: ModelStatus


class ModelRegistry:
    def __init__(self, entries: list[CatalogEntry], session: InferenceSession) -> None:
        self.entries = sorted(entries, key=lambda e: e.name)
        self.session = session

    async def list(self) -> list[ModelInfo]:
        statuses = await asyncio.gather(*(self.session.model_status(e.name) for e in self.entries))
        return [ModelInfo(entry, status) for entry, status in zip(self.entries, statuses, strict=True)]

    async def all_ready(self) -> bool:
        if not await self.session.server_ready():
            return False
        return all(info.status.ready for info in await self.list())
