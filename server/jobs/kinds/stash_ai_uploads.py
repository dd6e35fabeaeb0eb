"""Images the AI Overhaul plugin sends (base64 in its queue bodies), kept as files under
`$STASH_VISION_DATA_DIR/uploads/<upload id>/<index>` while their job waits and runs, so that
jobs.db holds only the upload's id, never megabytes of base64.

The adapter writes an upload (it received the bytes), the job kinds read each image and delete it
once its result is computed; a sweep on every new upload removes what a cancelled, failed or
forgotten job left behind after `ttl_s`. The adapter and the server therefore share the data
directory (as `stash-vision serve` runs them; under Compose both mount the data volume)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from stash_vision.server.errors import InvalidInput, MediaNotFound

DEFAULT_TTL_S = 24 * 3600.0
_ID = re.compile(r"[0-9a-f]{32}")


def check_upload_id(upload_id: object) -> str:
    if not isinstance(upload_id, str) or not _ID.fullmatch(upload_id):
        raise InvalidInput(f"upload must be an upload id (32 hex digits), got {upload_id!r}")
    return upload_id


def uploads_in(data_dir: Path) -> Uploads:
    """The uploads of a data directory (the adapter's and the server's view of the same folder)."""
    return Uploads(data_dir / "uploads")


class Uploads:
    def __init__(self, root: Path, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.root = root
        self.ttl_s = ttl_s

    def store(self, images: Sequence[bytes | None]) -> str:
        """Writes the images (None: the plugin sent none for that place) as one upload and returns
        its id. All or nothing: the folder appears under its id only when every file is written.
        OSError when the data directory cannot be written."""
        self.root.mkdir(parents=True, exist_ok=True)
        upload_id = uuid.uuid4().hex
        staging = Path(tempfile.mkdtemp(prefix=".incoming-", dir=self.root))
        try:
            for index, data in enumerate(images):
                if data is not None:
                    (staging / str(index)).write_bytes(data)
            os.replace(staging, self.root / upload_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return upload_id

    def path(self, upload_id: str, index: int) -> Path:
        return self.root / check_upload_id(upload_id) / str(index)

    def read(self, upload_id: str, index: int) -> bytes:
        """The image's bytes; MediaNotFound saying why it may be gone."""
        path = self.path(upload_id, index)
        try:
            return path.read_bytes()
        except FileNotFoundError:
            raise MediaNotFound(
                f"uploaded image {index} of upload {upload_id} is not in {self.root}: it was removed "
                f"after {self.ttl_s / 3600:g} h, or the adapter and the server do not share "
                "STASH_VISION_DATA_DIR; submit it again"
            ) from None

    def discard(self, upload_id: str, index: int) -> None:
        """Deletes one image once its result is computed, and the upload's folder with its last
        image (a gallery's images finish in any order)."""
        path = self.path(upload_id, index)
        path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # not empty yet, or already gone
            path.parent.rmdir()

    def discard_all(self, upload_id: str) -> None:
        """Deletes a whole upload (its job could not be queued)."""
        shutil.rmtree(self.root / check_upload_id(upload_id), ignore_errors=True)

    def sweep(self, now: float | None = None) -> int:
        """Removes uploads (and interrupted writes) older than the time-to-live; returns how many.
        Bounds what jobs that never ran to the end leave on disk."""
        if not self.root.is_dir():
            return 0
        cutoff = (time.time() if now is None else now) - self.ttl_s
        removed = 0
        for entry in self.root.iterdir():
            with contextlib.suppress(OSError):  # removed meanwhile by a job
                if entry.is_dir() and entry.stat().st_mtime < cutoff:
                    shutil.rmtree(entry)
                    removed += 1
        return removed
