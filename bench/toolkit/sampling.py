"""A thread that takes a sample at a fixed interval while a `with` block runs: what the memory
samplers (memory.MemorySampler, rss_timeline.RssTimeline) share."""

from __future__ import annotations

import threading
import time
from typing import Self


class SamplingThread:
    """Calls `sample(seconds since the block began)` at once and then every `interval_s`, in a
    daemon thread, until the block ends."""

    def __init__(self, interval_s: float, name: str) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._started = time.perf_counter()

    def __enter__(self) -> Self:
        self._started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        while True:
            self.sample(time.perf_counter() - self._started)
            if self._stop.wait(self.interval_s):
                return

    def sample(self, elapsed_s: float) -> None:
        raise NotImplementedError
