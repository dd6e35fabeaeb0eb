"""Domain errors. Each carries a message a person can act on; transports map the class to a status
(gRPC code here, HTTP status in the adapter) and never show a traceback."""

from __future__ import annotations


class StashVisionError(Exception):
    """Base class: `str(error)` is the user-facing message."""


class InvalidInput(StashVisionError):
    """The request itself is wrong: undecodable image, empty input, unknown model, bad value."""


class MediaNotFound(StashVisionError):
    """A server-side path does not exist (as the server sees it)."""


class AccessDenied(StashVisionError):
    """A server-side path lies outside every configured library root."""


class TooLarge(StashVisionError):
    """Input above a configured limit (pixels, bytes)."""


class Overloaded(StashVisionError):
    """A bounded queue is full; retry later."""


class BackendUnavailable(StashVisionError):
    """Triton is down, restarting, or the model is not ready."""


class DeadlineExceeded(StashVisionError):
    """The caller's deadline or our own Triton timeout ran out."""


class InferenceFailed(StashVisionError):
    """Triton accepted the request but the model failed on it."""


class IndexUnavailable(StashVisionError):
    """No usable face index (none built, corrupt, or built with another profile's recipe)."""


class IndexVersionNotFound(StashVisionError):
    """No face index version of that name in the active profile."""


class IndexVersionConflict(StashVisionError):
    """The version's state does not allow the action (deleting the active one, nothing to roll back to)."""


class ProfileUnavailable(StashVisionError):
    """The face profile cannot run: a model it needs is not served."""


class JobNotFound(StashVisionError):
    """No job with that id."""


class JobConflict(StashVisionError):
    """The job's state does not allow the action (pausing a finished job, resuming a running one)."""


class JobsUnavailable(StashVisionError):
    """This process cannot run jobs: another process holds the data directory's job lock."""


class StorageUnavailable(StashVisionError):
    """The job database or result store cannot be written: full disk, read-only, locked."""


def unwrap_group(error: BaseException) -> BaseException:
    """What a caller should see of `error`. asyncio.TaskGroup wraps what its tasks raised in an
    exception group, so a BackendUnavailable from one task (Triton killed mid-request) would reach
    a transport as an unknown exception (an incident, INTERNAL) instead of UNAVAILABLE. A group
    whose every leaf is a domain error stands for its first one; any other group stays as it is
    (a bug, to be logged with its incident)."""
    if isinstance(error, BaseExceptionGroup):
        domain, rest = error.split(StashVisionError)
        while domain is not None and rest is None:
            first = domain.exceptions[0]
            if not isinstance(first, BaseExceptionGroup):
                return first
            domain = first
    return error
