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
from stash_vision.server.connections.stash import Remote, StashConnection, StashStatus

__all__ = [
    "GraphQLClient",
    "RateBudget",
    "Remote",
    "SourceAuthFailed",
    "SourceBadContent",
    "SourceError",
    "SourceNotFound",
    "SourceQueryFailed",
    "SourceUnreachable",
    "StashConnection",
    "StashStatus",
    "budget_for",
]
