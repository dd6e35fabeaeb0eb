"""Waiting for a quiet machine before a measured phase: the machine may be shared, and another
benchmark (or any other load) running meanwhile skews every figure."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from typing import Any

from bench.toolkit.procs import all_processes, outside_cores, process_tree

# Processes of other benchmarks (command line or working directory), whose load would skew ours.
OTHER_BENCHMARKS = ("bench.bench_tagging", "bench.bench_stack", "/tmp/vbench", "stash-vision-bench-")
OTHER_BENCHMARK_DIRS = ("/tmp/vbench",)
POLL_S = 20.0
MAX_WAIT_S = 15 * 60.0
# Besides other benchmarks, outside load above the limit delays a phase, for a shorter while.
MAX_LOAD_WAIT_S = 3 * 60.0
LOAD_PROBE_S = 3.0


def other_benchmarks() -> list[str]:
    """Command lines of other benchmarks running now. Our own tree is excluded, and so are our
    ancestors (the shell that started us may name our log file or cache folder)."""
    parents, cmdlines = all_processes()
    ours = {proc.pid for proc in process_tree(os.getpid())}
    ancestor = parents.get(os.getpid(), 0)
    while ancestor > 1 and ancestor not in ours:
        ours.add(ancestor)
        ancestor = parents.get(ancestor, 0)
    found = []
    for pid, cmdline in cmdlines.items():
        if pid in ours or not cmdline:
            continue
        cwd = ""
        with contextlib.suppress(OSError):
            cwd = os.readlink(f"/proc/{pid}/cwd")
        # A helper script run from its own folder (`python bench.py` in /tmp/vbench) counts too.
        in_dir = "python" in cmdline and cwd in OTHER_BENCHMARK_DIRS
        if in_dir or any(pattern in cmdline for pattern in OTHER_BENCHMARKS):
            found.append(f"{pid}: {cmdline[:120]}")
    return found


@dataclass
class Quiet:
    """Waits before each phase; `no_wait` (smoke tests only) measures at once, whatever else runs.
    Outside load is everything but this benchmark's own process tree (the stack included)."""

    max_outside_cores: float
    no_wait: bool = False
    waits: list[float] = field(default_factory=list)  # seconds per wait, excluded from active time

    def outside(self, seconds: float = LOAD_PROBE_S) -> float:
        return outside_cores(seconds, tree=os.getpid())

    def wait(self, label: str) -> dict[str, Any]:
        """Polls every 20 s until no other benchmark runs (up to 15 minutes) and the outside load
        is below `max_outside_cores` (up to 3 minutes of that); then goes on regardless, and says
        so."""
        if self.no_wait:
            return {
                "waited_s": 0.0,
                "gave_up": True,
                "outside_cores_before": self.outside(1.0),
                "others_seen": [],
            }
        started = time.monotonic()
        seen: list[str] = []
        loaded_since: float | None = None  # since when only outside load (no benchmark) held us up
        gave_up = False
        load: float | None = None
        while True:
            others = other_benchmarks()
            seen += [line for line in others if line not in seen]
            if others:
                loaded_since, load = None, None
                why = f"{len(others)} other benchmark process(es)"
            else:
                load = self.outside()
                if load <= self.max_outside_cores:
                    break
                loaded_since = loaded_since or time.monotonic()
                why = f"outside load {load:.2f} cores"
            now = time.monotonic()
            if now - started >= MAX_WAIT_S or (
                loaded_since is not None and now - loaded_since >= MAX_LOAD_WAIT_S
            ):
                gave_up = True
                break
            print(f"  [{label}] waiting: {why} ({now - started:.0f} s so far)", flush=True)
            time.sleep(POLL_S)
        waited = round(time.monotonic() - started, 1)
        self.waits.append(waited)
        if gave_up:
            print(f"  [{label}] machine not quiet after {waited:.0f} s: measuring anyway", flush=True)
        return {
            "waited_s": waited,
            "gave_up": gave_up,
            "outside_cores_before": load,
            "others_seen": seen[:10],
        }
