"""Errors of a remote source (the user's Stash, a stash-box): each names the source and says what
to do, so a job's event or /health can show it to a person as it is."""

from __future__ import annotations

from stash_vision.server.errors import StashVisionError


class SourceError(StashVisionError):
    """Base class; `source` is the server's name (e.g. "Stash at http://…" or "StashDB")."""

    def __init__(self, source: str, message: str) -> None:
        super().__init__(message)
        self.source = source


class SourceUnreachable(SourceError):
    """No answer: connection refused, DNS, timeouts, or 5xx/429 after every retry."""


class SourceAuthFailed(SourceError):
    """401/403: the API key is missing or wrong."""


class SourceQueryFailed(SourceError):
    """The server answered with GraphQL errors (or an answer that is not GraphQL at all)."""


class SourceNotFound(SourceError):
    """A URL or id the source does not know (404, or a null object)."""


class SourceBadContent(SourceError):
    """A download that is too large, not an image, or not decodable."""


class SourceNotConfigured(SourceError):
    """The call names the source's objects (a Stash scene id) but no such source is configured."""
