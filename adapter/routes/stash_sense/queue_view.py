"""What the Stash Sense Operations tab shows of our jobs, beyond the jobs themselves: who submitted
a job through the tab (`triggered_by`; our jobs do not record it) and when its history was last
cleared.

Our job API deletes nothing: a finished job's per-item results are what the result store and later
runs reuse, and `GET /jobs` / `stash-vision jobs list` still list every job. So "Clear History"
hides the jobs that finished before the click from the tab, and says so. Both are kept in a small
JSON file in the data directory (best effort: a read-only data directory keeps them for the
process's life only) so a restart does not bring the cleared history back."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from fastapi import Request

from stash_vision.atomic import replace_text
from stash_vision.settings import Settings

log = logging.getLogger(__name__)

FILE_NAME = "stash-sense-queue.json"
_KEEP_TRIGGERS = 1000  # newest submissions remembered; older jobs show "api"


class QueueView:
    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.history_cleared_at = 0.0
        self.triggered_by: dict[str, str] = {}
        if path is not None and path.exists():
            try:
                saved: dict[str, Any] = json.loads(path.read_text())
                self.history_cleared_at = float(saved.get("history_cleared_at") or 0.0)
                self.triggered_by = {str(k): str(v) for k, v in (saved.get("triggered_by") or {}).items()}
            except (OSError, ValueError, TypeError, AttributeError) as error:
                log.warning("ignoring unreadable %s: %s", path, error)

    def submitted(self, job_id: str, triggered_by: str) -> None:
        self.triggered_by[job_id] = triggered_by
        while len(self.triggered_by) > _KEEP_TRIGGERS:
            del self.triggered_by[next(iter(self.triggered_by))]
        self._save()

    def trigger_of(self, job_id: str) -> str:
        return self.triggered_by.get(job_id, "api")

    def clear_history(self, now: float | None = None) -> None:
        self.history_cleared_at = time.time() if now is None else now
        self._save()

    def _save(self) -> None:
        if self.path is None:
            return
        body = {"history_cleared_at": self.history_cleared_at, "triggered_by": self.triggered_by}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_text(self.path, json.dumps(body))
        except OSError as error:
            log.warning(
                "cannot keep the Operations tab's state in %s (kept until restart): %s", self.path, error
            )


def queue_view(request: Request) -> QueueView:
    """One per app, loaded on first use from the app's data directory."""
    state = request.app.state
    if getattr(state, "stash_sense_queue", None) is None:
        settings: Settings = getattr(state, "settings", None) or Settings()
        state.stash_sense_queue = QueueView(settings.data_dir / FILE_NAME)
    view: QueueView = state.stash_sense_queue
    return view
