"""One job runner per data directory. Inference scales out through Triton, not through a home-made
job cluster: a second server on the same data directory serves interactive calls but refuses to
run jobs, and says which process holds them.

An advisory `flock` on `$DATA_DIR/jobs.lock`: the kernel drops it when the holder dies (even by
`kill -9`), so a crashed server never leaves a stale lock behind."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path
from typing import IO

from stash_vision.server.errors import JobsUnavailable


class RunnerLock:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        """Takes the lock or raises JobsUnavailable naming the holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise JobsUnavailable(
                f"jobs of {self.path.parent} are run by {holder}; this server answers calls but runs no "
                "jobs (one job runner per data directory: stop the other server or give this one its own "
                "STASH_VISION_DATA_DIR)"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"process {os.getpid()} on {socket.gethostname()}\n")
        handle.flush()
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            fcntl.flock(self._handle, fcntl.LOCK_UN)
            self._handle.close()
            self._handle = None
