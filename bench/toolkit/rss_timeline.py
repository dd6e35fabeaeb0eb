"""The memory (RSS) of every process of the stack over a long run, and whether it stayed flat.

`RssTimeline` samples the stack's process tree every second in a thread: RSS per role
(supervisor, tritonserver, the ORT stubs summed, grpc_server, adapter). A role is summed over its
processes, so a process the supervisor restarted (new pid) carries on its role's line.

The criterion for "flat after warm-up" (`flat`): the samples after the warm-up are cut into
thirds; per role, the last third's maximum may be at most the first third's maximum x 1.1 +
50 MiB. Allocators keep what a peak request took (the 10 %), and a burst of large batches may
land late in the run (the 50 MiB); a leak of a few MiB a minute over ten minutes breaks it."""

from __future__ import annotations

from typing import Any

from bench.toolkit.procs import KIB_PER_MIB, by_role, memory_kib, process_tree
from bench.toolkit.sampling import SamplingThread

SAMPLE_S = 1.0
GROWTH_FACTOR = 1.1
GROWTH_SLACK_MIB = 50.0


class RssTimeline(SamplingThread):
    def __init__(self, root: int) -> None:
        super().__init__(SAMPLE_S, "rss-timeline")
        self.root = root
        self.samples: list[tuple[float, dict[str, float]]] = []  # (seconds since start, MiB by role)

    def sample(self, elapsed_s: float) -> None:
        per_process = {
            proc.key: memory_kib(proc.pid).get("VmRSS", 0) / KIB_PER_MIB for proc in process_tree(self.root)
        }
        self.samples.append((elapsed_s, by_role(per_process)))

    def roles(self) -> list[str]:
        return sorted({role for _, values in self.samples for role in values})

    def tenths(self) -> dict[str, list[float]]:
        """Per role, RSS (MiB) at each tenth of the run: a slope shows growth."""
        if not self.samples:
            return {}
        end = self.samples[-1][0]
        picks = [next(v for t, v in self.samples if t >= end * k / 10 - 1e-9) for k in range(1, 11)]
        return {role: [round(p.get(role, 0.0), 1) for p in picks] for role in self.roles()}

    def flat(self, warmup_s: float) -> dict[str, dict[str, Any]]:
        """Per role: the first and last third's maxima after `warmup_s`, the limit, and whether the
        criterion held (see the module's docstring)."""
        after = [values for t, values in self.samples if t >= warmup_s]
        if len(after) < 3:
            raise ValueError(f"{len(after)} samples after a warm-up of {warmup_s:.0f} s: run longer")
        third = len(after) // 3
        verdicts: dict[str, dict[str, Any]] = {}
        for role in self.roles():
            first = max(v.get(role, 0.0) for v in after[:third])
            last = max(v.get(role, 0.0) for v in after[-third:])
            limit = first * GROWTH_FACTOR + GROWTH_SLACK_MIB
            verdicts[role] = {
                "first_third_max_mib": round(first, 1),
                "last_third_max_mib": round(last, 1),
                "limit_mib": round(limit, 1),
                "flat": last <= limit,
            }
        return verdicts
