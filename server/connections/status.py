"""What /health and the dashboard show about a remote source: reachable, its version, and whether
the key works. One `version { version }` query answers all three — Stash checks the key on every
request when credentials are configured, and stash-box guards `version` with the READ role."""

from __future__ import annotations

from dataclasses import dataclass

from stash_vision.server.connections.errors import SourceAuthFailed, SourceError
from stash_vision.server.connections.graphql import GraphQLClient


@dataclass(frozen=True)
class SourceStatus:
    configured: bool
    reachable: bool = False
    version: str | None = None
    key_ok: bool | None = None
    error: str | None = None


async def probe(client: GraphQLClient) -> SourceStatus:
    try:
        data = await client.execute("query { version { version } }")
    except SourceAuthFailed as error:
        return SourceStatus(True, reachable=True, key_ok=False, error=str(error))
    except SourceError as error:
        return SourceStatus(True, reachable=False, error=str(error))
    return SourceStatus(True, reachable=True, version=(data.get("version") or {}).get("version"), key_ok=True)
