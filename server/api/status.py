"""Domain error -> gRPC status code, and the decorator every servicer method wears so that no
exception reaches a caller as a traceback or as UNKNOWN."""

from __future__ import annotations

import functools
import logging
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import grpc

from stash_vision.server import errors
from stash_vision.server.connections import errors as source_errors

log = logging.getLogger("stash_vision.server")

CODES: dict[type[errors.StashVisionError], grpc.StatusCode] = {
    errors.InvalidInput: grpc.StatusCode.INVALID_ARGUMENT,
    errors.MediaNotFound: grpc.StatusCode.NOT_FOUND,
    errors.AccessDenied: grpc.StatusCode.PERMISSION_DENIED,
    errors.TooLarge: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.Overloaded: grpc.StatusCode.RESOURCE_EXHAUSTED,
    errors.BackendUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.DeadlineExceeded: grpc.StatusCode.DEADLINE_EXCEEDED,
    errors.InferenceFailed: grpc.StatusCode.INTERNAL,
    errors.IndexUnavailable: grpc.StatusCode.FAILED_PRECONDITION,
    errors.IndexVersionNotFound: grpc.StatusCode.NOT_FOUND,
    errors.IndexVersionConflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.ProfileUnavailable: grpc.StatusCode.FAILED_PRECONDITION,
    errors.JobNotFound: grpc.StatusCode.NOT_FOUND,
    errors.JobConflict: grpc.StatusCode.FAILED_PRECONDITION,
    errors.JobsUnavailable: grpc.StatusCode.UNAVAILABLE,
    errors.StorageUnavailable: grpc.StatusCode.UNAVAILABLE,
    # The user's Stash (or a stash-box) behind a call that names its ids.
    source_errors.SourceNotConfigured: grpc.StatusCode.FAILED_PRECONDITION,
    source_errors.SourceNotFound: grpc.StatusCode.NOT_FOUND,
    source_errors.SourceBadContent: grpc.StatusCode.INVALID_ARGUMENT,
    source_errors.SourceUnreachable: grpc.StatusCode.UNAVAILABLE,
    source_errors.SourceAuthFailed: grpc.StatusCode.UNAVAILABLE,
    source_errors.SourceQueryFailed: grpc.StatusCode.UNAVAILABLE,
    source_errors.SourceError: grpc.StatusCode.UNAVAILABLE,
}


def code_for(error: errors.StashVisionError) -> grpc.StatusCode:
    for cls in type(error).__mro__:
        if cls in CODES:
            return CODES[cls]
    return grpc.StatusCode.INTERNAL


R = TypeVar("R")
Handler = Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], Awaitable[R]]


def mapped_errors(method: Handler[R]) -> Handler[R]:
    @functools.wraps(method)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> R:
        try:
            return await method(self, request, context)
        except errors.StashVisionError as error:
            await context.abort(code_for(error), str(error))
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            if isinstance(domain := errors.unwrap_group(error), errors.StashVisionError):
                await context.abort(code_for(domain), str(domain))
            incident = uuid.uuid4().hex[:8]
            log.exception("internal error in %s (incident %s)", method.__name__, incident)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal error (incident {incident}; see the server log)"
            )
        raise AssertionError("unreachable: abort raises")

    return wrapper


StreamHandler = Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[Any]]


def mapped_stream_errors(method: StreamHandler) -> StreamHandler:
    """mapped_errors for server-streaming methods (async generators)."""

    @functools.wraps(method)
    async def wrapper(
        self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[Any]:
        try:
            async for response in method(self, request, context):
                yield response
        except errors.StashVisionError as error:
            await context.abort(code_for(error), str(error))
        except grpc.aio.AbortError:
            raise
        except Exception as error:
            if isinstance(domain := errors.unwrap_group(error), errors.StashVisionError):
                await context.abort(code_for(domain), str(domain))
            incident = uuid.uuid4().hex[:8]
            log.exception("internal error in %s (incident %s)", method.__name__, incident)
            await context.abort(
                grpc.StatusCode.INTERNAL, f"internal error (incident {incident}; see the server log)"
            )

    return wrapper
