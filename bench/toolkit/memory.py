"""Memory of a process tree (the stack) while a phase runs, sampled in a thread."""

from __future__ import annotations

import time
from typing import Any

from bench.toolkit.procs import KIB_PER_GIB, KIB_PER_MIB, memory_kib, process_tree, pss_kib
from bench.toolkit.sampling import SamplingThread

SAMPLE_INTERVAL_S = 0.2
_REFRESH_S = 2.0  # a process may have (re)started


def _mib(values: dict[str, int]) -> dict[str, float]:
    return {k: round(v / KIB_PER_MIB, 1) for k, v in sorted(values.items())}


class MemorySampler(SamplingThread):
    """Samples VmRSS, RssAnon and RssShmem of every process of the tree every 0.2 s, and Pss
    every `pss_every` samples. RSS counts shared pages (libraries, Triton's shared-memory
    tensors) in each process that maps them, so the sum of RSS overstates the total; the sum of
    Pss splits shared pages between them. The peaks of RssAnon (private heap) and RssShmem
    (shared memory: /dev/shm) per process tell which kind of memory grew. Reading Pss costs
    about 10 ms of CPU per Triton process: every 0.2 s that would take 0.1 core from the stack
    under test, hence `pss_every`."""

    def __init__(self, root: int, pss_every: int = 1) -> None:
        super().__init__(SAMPLE_INTERVAL_S, "rss-sampler")
        self.root = root
        self.pss_every = pss_every
        self.peak_rss_kib: dict[str, int] = {}
        self.peak_anon_kib: dict[str, int] = {}
        self.peak_shmem_kib: dict[str, int] = {}
        self.peak_sum_rss_kib = 0
        self.peak_sum_pss_kib = 0
        self.timeline: list[tuple[float, int]] = []  # (seconds since start, sum of RSS in KiB)
        self._procs = process_tree(root)
        self._refreshed = time.monotonic()

    @property
    def samples(self) -> int:
        return len(self.timeline)

    def sample(self, elapsed_s: float) -> None:
        if time.monotonic() - self._refreshed > _REFRESH_S:
            self._procs, self._refreshed = process_tree(self.root), time.monotonic()
        procs = self._procs
        total_rss = total_pss = 0
        with_pss = self.samples % self.pss_every == 0
        for proc in procs:
            memory = memory_kib(proc.pid)
            if "VmRSS" not in memory:
                continue
            total_rss += memory["VmRSS"]
            if with_pss:
                total_pss += pss_kib(proc.pid) or 0
            for peaks, key in (
                (self.peak_rss_kib, "VmRSS"),
                (self.peak_anon_kib, "RssAnon"),
                (self.peak_shmem_kib, "RssShmem"),
            ):
                peaks[proc.key] = max(peaks.get(proc.key, 0), memory.get(key, 0))
        self.peak_sum_rss_kib = max(self.peak_sum_rss_kib, total_rss)
        self.peak_sum_pss_kib = max(self.peak_sum_pss_kib, total_pss)
        self.timeline.append((elapsed_s, total_rss))

    def peaks_by_process(self) -> dict[str, dict[str, float]]:
        """Peak RSS, RssAnon and RssShmem per process, in MiB."""
        return {
            "peak_rss_mib_by_process": _mib(self.peak_rss_kib),
            "peak_rss_anon_mib_by_process": _mib(self.peak_anon_kib),
            "peak_rss_shmem_mib_by_process": _mib(self.peak_shmem_kib),
        }

    def peak_sums_gib(self) -> dict[str, float]:
        return {
            "peak_sum_rss_gib": round(self.peak_sum_rss_kib / KIB_PER_GIB, 3),
            "peak_sum_pss_gib": round(self.peak_sum_pss_kib / KIB_PER_GIB, 3),
        }

    def peak_sums_mib(self) -> dict[str, float]:
        return {
            "peak_sum_rss_mib": round(self.peak_sum_rss_kib / KIB_PER_MIB, 1),
            "peak_sum_pss_mib": round(self.peak_sum_pss_kib / KIB_PER_MIB, 1),
        }

    def tenths_mib(self) -> list[float]:
        """The sum of RSS at each tenth of the phase: growth with the input's length shows as a
        slope."""
        if not self.timeline:
            return []
        end = self.timeline[-1][0]
        return [
            round(next(v for t, v in self.timeline if t >= end * tenth / 10 - 1e-9) / KIB_PER_MIB, 1)
            for tenth in range(1, 11)
        ]

    def summary(self, unit: str = "MiB") -> dict[str, Any]:
        """Peak sums (in `unit`: "MiB" or "GiB"), the peaks per process, and the sample count."""
        sums = self.peak_sums_gib() if unit == "GiB" else self.peak_sums_mib()
        return {**sums, **self.peaks_by_process(), "samples": self.samples}
