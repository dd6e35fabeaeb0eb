"""How `stash-vision jobs` shows a job's progress: one live line with a bar on a terminal, plain
lines at most every few seconds otherwise (a log file or CI must not fill with carriage returns),
and the job's events as their own lines in both cases."""

from __future__ import annotations

import shutil
import time
from datetime import datetime
from typing import TextIO

from stash_vision.server.jobs.api import JobUpdate
from stash_vision.server.jobs.model import Job, JobState, Progress

# Without a terminal, a progress line at most this often (state changes and events always show).
PLAIN_INTERVAL_S = 10.0
_BAR_WIDTH = 24

# `watch` / `submit --follow` exit status by the state the watch ended in.
EXIT_SUCCEEDED = 0
EXIT_FAILED = 1  # failed or cancelled
EXIT_STOPPED = 3  # paused or interrupted: the job can be resumed


def exit_code(job: Job) -> int:
    if job.state is JobState.SUCCEEDED:
        return EXIT_SUCCEEDED
    if job.state in (JobState.FAILED, JobState.CANCELLED):
        return EXIT_FAILED
    return EXIT_STOPPED


def clock(at: float | None) -> str:
    """Local wall-clock time of a Unix timestamp; empty for unset."""
    return "" if at is None else datetime.fromtimestamp(at).strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def describe_progress(p: Progress) -> str:
    """ "370/1000 files (37%), 3 failed, 12.3/s, ETA 51s"; a "+" on the total while still listing."""
    total = f"{p.total}" if p.listing_complete else f"{p.total}+"
    parts = [f"{p.done}/{total} {p.unit}"]
    if p.listing_complete and p.total:
        parts[0] += f" ({p.done * 100 // p.total}%)"
    if p.failed:
        parts.append(f"{p.failed} failed")
    if p.rate:
        parts.append(f"{p.rate:.1f}/s")
    if p.eta_seconds is not None:
        parts.append(f"ETA {duration(p.eta_seconds)}")
    return ", ".join(parts)


def _bar(p: Progress) -> str:
    filled = min(_BAR_WIDTH, _BAR_WIDTH * p.done // p.total) if p.total else 0
    return "[" + "#" * filled + "-" * (_BAR_WIDTH - filled) + "]"


def final_line(job: Job) -> str:
    line = f"job {job.id} {job.state}: {describe_progress(job.progress)}"
    if job.started_at is not None and job.finished_at is not None:
        line += f" in {duration(job.finished_at - job.started_at)}"
    if job.error:
        line += f"\n  error: {job.error}"
    elif job.state in (JobState.PAUSED, JobState.INTERRUPTED):
        line += f"\n  resume it with: stash-vision jobs resume {job.id}"
    return line


class ProgressView:
    def __init__(self, out: TextIO, *, tty: bool | None = None) -> None:
        self.out = out
        self.tty = out.isatty() if tty is None else tty
        self.drawn = False  # a live line is on screen (tty)
        self.last_plain = 0.0
        self.last_state: JobState | None = None
        self.job: Job | None = None

    def update(self, update: JobUpdate) -> None:
        for event in update.events:
            self._line(f"{clock(event.at)}  {event.level:<7} {event.message}")
        job = self.job = update.job
        status = f"{job.state}  {describe_progress(job.progress)}"
        if self.tty:
            width = shutil.get_terminal_size().columns - 1
            self.out.write(f"\r\x1b[K{_bar(job.progress)} {status}"[: width + 4])
            self.drawn = True
        elif job.state != self.last_state or time.monotonic() - self.last_plain >= PLAIN_INTERVAL_S:
            self._line(status)
            self.last_plain = time.monotonic()
        self.last_state = job.state
        self.out.flush()

    def _line(self, text: str) -> None:
        if self.drawn:
            self.out.write("\r\x1b[K")
            self.drawn = False
        self.out.write(text + "\n")

    def close(self) -> None:
        """Ends the live line; after a watch that reached its end, says how the job ended."""
        if self.drawn:
            self.out.write("\n")
            self.drawn = False
        if self.job is not None and (
            self.job.state.finished or self.job.state in (JobState.PAUSED, JobState.INTERRUPTED)
        ):
            self.out.write(final_line(self.job) + "\n")
        self.out.flush()
