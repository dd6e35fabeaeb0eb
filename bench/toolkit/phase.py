"""One measured phase of the stack: counters read around it (bench/toolkit/metrics.py) and, while
it runs, the memory of every process of the stack (bench/toolkit/memory.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from bench.toolkit.memory import MemorySampler
from bench.toolkit.metrics import Delta, snapshot
from tests.stack import Stack


@dataclass
class Phase:
    seconds: float = 0.0
    detail: dict[str, Any] = field(default_factory=dict)  # Delta.explain()
    delta: Delta | None = None
    sampler: MemorySampler | None = None


@contextlib.contextmanager
def measure(stack: Stack, model: str, memory: bool = True, pss_every: int = 1) -> Iterator[Phase]:
    """`with measure(stack, model) as phase: <the work>`; afterwards phase.seconds is the work's
    wall time, phase.detail what the stack did meanwhile and phase.sampler its memory."""
    phase = Phase()
    before = snapshot(stack, model)
    sampler = MemorySampler(stack.process.pid, pss_every) if memory else None
    with sampler or contextlib.nullcontext():
        started = time.perf_counter()
        yield phase
        phase.seconds = time.perf_counter() - started
    phase.sampler = sampler
    phase.delta = Delta(before, snapshot(stack, model), model)
    phase.detail = phase.delta.explain()
