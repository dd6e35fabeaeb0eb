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
