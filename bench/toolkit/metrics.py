"""What the stack did during a phase, from counters read before and after it: Triton's and the
server's Prometheus metrics, Triton's per-batch-size statistics, and CPU from /proc."""

from __future__ import annotations

import re
import time
import urllib.request
from dataclasses import dataclass
from typing import Any

from bench.toolkit.procs import by_role, cpu_seconds, process_tree, system_busy_s
from bench.toolkit.results import fmt
from tests.stack import Stack

LOOPBACK = "127.0.0.1"

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

# Triton's cumulative durations per request: (key in the result, metric nv_inference_<name>_duration_us).
# Triton stamps each request of a batch with the whole batch's execution time (compute_infer).
_TRITON_TIMES = (
    ("queue", "queue"),
    ("compute_input", "compute_input"),
    ("compute_infer", "compute_infer"),
    ("compute_output", "compute_output"),
    ("request_total", "request"),
)

Samples = list[tuple[str, dict[str, str], float]]
# Per batch size: (executions, compute_infer ns).
BatchStats = dict[int, tuple[int, int]]


def scrape(port: int) -> Samples:
    """Every sample of a /metrics page: (name, labels, value)."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = []
    for line in text.splitlines():
        if not line.startswith("#") and (match := _SAMPLE.match(line)):
            samples.append((match[1], dict(_LABEL.findall(match[2] or "")), float(match[3])))
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels`."""
    return sum(v for n, lbl, v in samples if n == name and all(lbl.get(k) == w for k, w in labels.items()))


def batch_stats(port: int, model: str) -> BatchStats:
    """Per batch size: (executions, compute_infer ns), from Triton's statistics API. Exact where
    the Prometheus counters only give means."""
    import tritonclient.grpc as triton_grpc

    client = triton_grpc.InferenceServerClient(f"{LOOPBACK}:{port}")
    try:
        stats = client.get_inference_statistics(model, as_json=True)
    finally:
        client.close()
    out: BatchStats = {}
    for model_stats in stats.get("model_stats", []):
        for batch in model_stats.get("batch_stats", []):
            infer = batch.get("compute_infer", {})
            out[int(batch["batch_size"])] = (int(infer.get("count", 0)), int(infer.get("ns", 0)))
    return out


@dataclass
class Snapshot:
    triton: Samples
    server: Samples
    batches: BatchStats
    cpu: dict[str, float]  # CPU seconds per process of the stack, keyed role[pid]
    own_cpu: float  # this process (the benchmark's client)
    system_busy: float
    at: float


def snapshot(stack: Stack, model: str) -> Snapshot:
    return Snapshot(
        triton=scrape(stack.triton_metrics_port),
        server=scrape(stack.server_metrics_port),
        batches=batch_stats(stack.triton_grpc_port, model),
        cpu=cpu_seconds(process_tree(stack.process.pid)),
        own_cpu=time.process_time(),
        system_busy=system_busy_s(),
        at=time.perf_counter(),
    )


@dataclass
class Delta:
    """The counters' change between two snapshots of one phase."""

    before: Snapshot
    after: Snapshot
    model: str

    @property
    def wall_s(self) -> float:
        return self.after.at - self.before.at

    def triton(self, name: str) -> float:
        return metric(self.after.triton, name, model=self.model) - metric(
            self.before.triton, name, model=self.model
        )

    def server(self, name: str, **labels: str) -> float:
        return metric(self.after.server, name, **labels) - metric(self.before.server, name, **labels)

    def rpc_ms(self, method: str) -> float | None:
        """Mean handling time of one gRPC call of `method` in the server."""
        handled = self.server("grpc_server_handling_seconds_count", grpc_method=method)
        return (
            self.server("grpc_server_handling_seconds_sum", grpc_method=method) / handled * 1e3
            if handled
            else None
        )

    def explain(self) -> dict[str, Any]:
        """Batching, per-request Triton times, the server's stages and CPU by role."""
        wall = self.wall_s
        inferences, executions = self.triton("nv_inference_count"), self.triton("nv_inference_exec_count")
        requests = self.triton("nv_inference_request_success") or 1.0
        stages: dict[str, float | None] = {}
        for stage in ("decode", "preprocess", "triton"):
            count = self.server("stash_vision_stage_seconds_count", stage=stage)
            total = self.server("stash_vision_stage_seconds_sum", stage=stage)
            stages[stage] = total / count * 1e3 if count else None
        histogram: dict[str, int] = {}
        busy_ns = 0
        for size, (count, ns) in sorted(self.after.batches.items()):
            old_count, old_ns = self.before.batches.get(size, (0, 0))
            if count > old_count:
                histogram[str(size)] = count - old_count
                busy_ns += ns - old_ns
        stack_cpu = {k: v - self.before.cpu.get(k, 0.0) for k, v in self.after.cpu.items()}
        own = (self.after.own_cpu - self.before.own_cpu) / wall
        busy = (self.after.system_busy - self.before.system_busy) / wall
        stack_cores = sum(stack_cpu.values()) / wall
        return {
            "avg_triton_batch": inferences / executions if executions else None,
            "triton_executions": int(executions),
            "batch_size_histogram": histogram,
            # Mean wall time of one execute() (IPC to the Python-backend stub + ORT), and the share
            # of the wall time the model instance spent executing: near 100 % means ORT is the
            # bottleneck.
            "batch_exec_ms": busy_ns / 1e6 / sum(histogram.values()) if histogram else None,
            "ort_instance_busy": busy_ns / 1e9 / wall,
            "triton_ms_per_request": {
                key: self.triton(f"nv_inference_{name}_duration_us") / requests / 1e3
                for key, name in _TRITON_TIMES
            },
            "server_stage_ms": stages,
            "stack_cpu_cores_by_role": {k: round(v / wall, 3) for k, v in sorted(by_role(stack_cpu).items())},
            "stack_cpu_cores": round(stack_cores, 3),
            "stack_cpu_seconds": sum(stack_cpu.values()),
            "bench_process_cores": round(own, 3),
            # Whatever else ran on the machine meanwhile (other jobs): it depresses every figure.
            "foreign_cores": round(max(busy - own - stack_cores, 0.0), 3),
        }


def describe_level(detail: dict[str, Any], cpu_key: str = "stack_cpu_cores_by_role") -> tuple[str, str, str]:
    """(server stages, batch histogram, CPU cores by role) of an explained phase, for printing."""
    stages = ", ".join(f"{k} {fmt(v)}" for k, v in detail["server_stage_ms"].items())
    batches = " ".join(f"{k}:{v}" for k, v in detail["batch_size_histogram"].items())
    cpu = ", ".join(f"{k} {v:.2f}" for k, v in detail[cpu_key].items() if v >= 0.005)
    return stages, batches, cpu
