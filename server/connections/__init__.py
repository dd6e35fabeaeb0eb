"""Connections to the servers around stash-vision: the user's own Stash and stash-box endpoints
(StashDB, FansDB, …). GraphQL over HTTP with the ApiKey header, a request budget per endpoint,
retries with back-off, and errors that name the server and say what to do."""

from stash_vision.server.connections.errors import (
    SourceAuthFailed,
    SourceBadContent,
    SourceError,
    SourceNotFound,
    SourceQueryFailed,
    SourceUnreachable,
)
from stash_vision.server.connections.graphql import GraphQLClient
from stash_vision.server.connections.rate import RateBudget, budget_for
from stash_vision.server.connections.stash import Remote, StashConnection
from stash_vision.server.connections.stashbox import BoxImage, BoxPerformer, StashBoxConnection
from stash_vision.server.connections.status import SourceStatus
from stash_vision.server.connections.status import SourceStatus as StashStatus

__all__ = [
    "BoxImage",
    "BoxPerformer",
    "GraphQLClient",
    "RateBudget",
    "Remote",
    "SourceAuthFailed",
    "SourceBadContent",
    "SourceError",
    "SourceNotFound",
    "SourceQueryFailed",
    "SourceStatus",
    "SourceUnreachable",
    "StashBoxConnection",
    "StashConnection",
    "StashStatus",
    "budget_for",
]
