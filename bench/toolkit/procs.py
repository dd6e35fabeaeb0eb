"""Processes and CPU from /proc: the stack's process tree with a role per process, CPU seconds per
process, memory readings, and CPU windows that split a phase's cores between this process, the
stack and everything else on the machine (which may be shared)."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path

KIB_PER_MIB = 1024
KIB_PER_GIB = 2**20

# (what the command line contains, role), first match wins; the tree's root is the supervisor.
_ROLES = (
    ("triton_python_backend_stub", "ort_stub"),  # the Python-backend process running ONNX Runtime
    ("tritonserver", "tritonserver"),
    ("stash_vision.server", "grpc_server"),  # decoding, preprocessing, the Triton client
    ("stash_vision.adapter", "adapter"),
    ("bench.", "bench"),
)


def role(pid: int, root: int, cmdline: str) -> str:
    if pid == root:
        return "supervisor"
    return next((name for marker, name in _ROLES if marker in cmdline), "other")


@dataclass(frozen=True)
class Proc:
    pid: int
    role: str

    @property
    def key(self) -> str:
        return f"{self.role}[{self.pid}]"


def _stat_fields(pid: int | str) -> list[str]:
    """The fields of /proc/<pid>/stat after the command name (which may hold spaces)."""
    raw = Path(f"/proc/{pid}/stat").read_text()
    return raw[raw.rindex(")") + 2 :].split()


def all_processes() -> tuple[dict[int, int], dict[int, str]]:
    """Every process now: its parent, and its command line."""
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(entry.name)
            parents[pid] = int(_stat_fields(pid)[1])
            cmdlines[pid] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return parents, cmdlines


def process_tree(root: int) -> list[Proc]:
    """`root` and every descendant (for the stack: tritonserver, its Python-backend stubs, the
    server, the adapter), found by walking /proc."""
    parents, cmdlines = all_processes()
    tree = {root} if root in parents else set()
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return [Proc(pid, role(pid, root, cmdlines.get(pid, ""))) for pid in sorted(tree)]


def cpu_seconds(procs: list[Proc]) -> dict[str, float]:
    """utime + stime (all threads) per process."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for proc in procs:
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = _stat_fields(proc.pid)
            out[proc.key] = (int(fields[11]) + int(fields[12])) / ticks
    return out


def by_role(per_process: dict[str, float]) -> dict[str, float]:
    """Values keyed `role[pid]` summed per role."""
    out: dict[str, float] = {}
    for key, value in per_process.items():
        name = key.split("[", 1)[0]
        out[name] = out.get(name, 0.0) + value
    return out


def memory_kib(pid: int) -> dict[str, int]:
    """The Vm*/Rss* lines of /proc/<pid>/status, in KiB (empty when the process is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("Vm", "Rss")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def pss_kib(pid: int) -> int | None:
    """Pss from smaps_rollup: shared pages split between the processes mapping them. Reading it
    costs about 10 ms of CPU for a Triton process."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return None


def memory_mib(root: int, key: str = "VmRSS") -> dict[str, float]:
    """One /proc/<pid>/status value per process of the tree, in MiB: VmRSS now, or VmHWM (the
    kernel's own peak RSS since the process started, start-up included)."""
    out: dict[str, float] = {}
    for proc in process_tree(root):
        value = memory_kib(proc.pid).get(key)
        if value is not None:
            out[proc.key] = round(value / KIB_PER_MIB, 1)
    return out


def system_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (first line of /proc/stat). Guest time is
    already counted in user and nice."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def tree_cpu_s(root: int | None) -> float:
    """CPU seconds of `root`'s process tree, this process excluded (None: 0)."""
    if root is None:
        return 0.0
    own = os.getpid()
    return sum(cpu_seconds([p for p in process_tree(root) if p.pid != own]).values())


@dataclass(frozen=True)
class Cores:
    """Mean cores used over a window: this process, the tree watched (the stack), the rest."""

    wall_s: float
    own: float
    tree: float
    outside: float


class CpuWindow:
    """CPU over one phase. `tree`: a process tree of ours (the stack, or this process's own tree
    with os.getpid()); its CPU is ours, not outside load. Everything else that ran on the machine
    meanwhile (other jobs) is `outside`: it depresses every figure."""

    def __init__(self, tree: int | None = None) -> None:
        self.tree = tree
        self.own_before = time.process_time()
        self.tree_before = tree_cpu_s(tree)
        self.busy_before = system_busy_s()
        self.started = time.perf_counter()

    def close(self) -> Cores:
        wall = time.perf_counter() - self.started
        own = (time.process_time() - self.own_before) / wall
        tree = (tree_cpu_s(self.tree) - self.tree_before) / wall
        busy = (system_busy_s() - self.busy_before) / wall
        return Cores(wall, own, tree, max(busy - own - tree, 0.0))


def outside_cores(seconds: float = 3.0, tree: int | None = None) -> float:
    """Cores busy with other work while this benchmark sleeps (the machine may be shared)."""
    window = CpuWindow(tree)
    time.sleep(seconds)
    return round(window.close().outside, 3)
