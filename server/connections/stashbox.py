"""A stash-box endpoint (StashDB, FansDB, …): performers page by page, newest change first, and
their images at a chosen size.

Pages are sorted by UPDATED_AT descending, so an index build that remembers the newest `updated`
it saw (its watermark) fetches only what changed since — it stops at the first performer not
newer than the watermark. Descending order is also safe while the box changes underneath: a
performer updated mid-walk moves to page 1 and only shifts later rows down (seen twice, never
skipped; duplicates are dropped here). stash-box has no server-side limiter, so every request —
queries, image downloads, retries — goes through the endpoint's budget
(`max_requests_per_minute`, Stash's default 240), shared by every connection to that endpoint."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from stash_vision.server.connections.graphql import GraphQLClient
from stash_vision.server.connections.rate import budget_for
from stash_vision.server.connections.stash import check_image, endpoint_domain
from stash_vision.server.connections.status import SourceStatus, probe
from stash_vision.settings import StashBoxEndpoint

IMAGE_SIZES = ("300", "600", "1280", "full")
_PERFORMERS = """query Performers($input: PerformerQueryInput!) { queryPerformers(input: $input) {
  count performers { id name disambiguation aliases gender country
    images { id url width height } deleted merged_into_id updated } } }"""


@dataclass(frozen=True)
class BoxImage:
    id: str
    url: str
    width: int
    height: int


@dataclass(frozen=True)
class BoxPerformer:
    id: str
    universal_id: str  # `<domain>:<uuid>`, e.g. `stashdb.org:…`, as Stash's stash_ids name it
    name: str
    disambiguation: str | None
    aliases: list[str]
    gender: str | None
    country: str | None
    images: list[BoxImage]
    deleted: bool
    merged_into_id: str | None
    updated: datetime


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class StashBoxConnection:
    def __init__(
        self,
        config: StashBoxEndpoint,
        *,
        timeout_s: float = 20.0,
        retries: int = 4,
        window_s: float = 60.0,
        client: GraphQLClient | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.domain = endpoint_domain(config.endpoint)
        self.client = client or GraphQLClient(
            config.name,
            config.endpoint,
            config.api_key,
            key_hint=f"the api_key of {config.name!r} in STASH_VISION_STASHBOX_ENDPOINTS",
            timeout_s=timeout_s,
            retries=retries,
            budget=budget_for(config.endpoint, config.max_requests_per_minute, window_s),
            subdomains=True,  # images on the box's CDN host
        )

    async def aclose(self) -> None:
        await self.client.aclose()

    async def status(self) -> SourceStatus:
        """Reachable, its version, and whether the key works."""
        return await probe(self.client)

    def _performer(self, raw: dict[str, Any]) -> BoxPerformer:
        return BoxPerformer(
            id=str(raw["id"]),
            universal_id=f"{self.domain}:{raw['id']}",
            name=raw["name"],
            disambiguation=raw.get("disambiguation"),
            aliases=list(raw.get("aliases") or []),
            gender=raw.get("gender"),
            country=raw.get("country"),
            images=[
                BoxImage(str(i["id"]), i["url"], i["width"], i["height"]) for i in raw.get("images") or []
            ],
            deleted=bool(raw.get("deleted")),
            merged_into_id=raw.get("merged_into_id"),
            updated=parse_time(raw["updated"]),
        )

    async def performers_updated_since(
        self, watermark: datetime | None = None, *, per_page: int = 25
    ) -> AsyncIterator[BoxPerformer]:
        """Performers updated after `watermark` (every one when None), newest first. Deleted and
        merged performers come too: an index drops them. The first one's `updated` is the next
        watermark."""
        seen: set[str] = set()
        page = 1
        while True:
            variables = {
                "input": {"page": page, "per_page": per_page, "sort": "UPDATED_AT", "direction": "DESC"}
            }
            result = (await self.client.execute(_PERFORMERS, variables))["queryPerformers"]
            for raw in result["performers"]:
                performer = self._performer(raw)
                if watermark is not None and performer.updated <= watermark:
                    return
                if performer.id not in seen:
                    seen.add(performer.id)
                    yield performer
            if page * per_page >= result["count"] or not result["performers"]:
                return
            page += 1

    def image_url(self, image: BoxImage | str, size: str = "600") -> str:
        """`{url}?size=300|600|1280|full` (stash-box scales on its side)."""
        if size not in IMAGE_SIZES:
            raise ValueError(f"image size must be one of {', '.join(IMAGE_SIZES)}, not {size!r}")
        url = image.url if isinstance(image, BoxImage) else image
        return str(httpx.URL(url).copy_merge_params({"size": size}))

    async def fetch_image(
        self,
        image: BoxImage | str,
        size: str = "600",
        *,
        max_bytes: int = 32 * 1024 * 1024,
        max_pixels: int = 100_000_000,
    ) -> bytes:
        """An image's bytes at `size`, refused when too large, not an image, or undecodable."""
        url = self.image_url(image, size)
        response = await self.client.download(url, max_bytes=max_bytes)
        content_type = response.headers.get("content-type", "")
        return await asyncio.to_thread(
            check_image, self.name, url, response.content, content_type, max_pixels
        )
