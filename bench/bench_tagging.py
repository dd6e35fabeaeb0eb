"""Image tagging through the AITagger HTTP route against in-process inference, on the skier233
stand-in (TorchScript ResNet-18 @512, 10 tags) that the original server was measured with.

One run:

1. imports the stand-in package into a throw-away data directory (TorchScript -> ONNX, the
   importer a user runs) and cycles the shared test photos to `--images` real paths;
2. in-process baselines on those paths, before the stack starts (nothing else of ours runs):
   decode (`decode_image` on the file bytes) + `preprocess` with the imported input contract +
   ONNX Runtime on the imported ONNX file, batch 8, intra-op threads = cores, sequentially; then
   ONNX Runtime and TorchScript (`torch.jit.load` of the `.pt`, same threads, batch 8, fp32,
   no_grad) batch by batch in alternation on the same tensors;
3. starts `stash-vision serve` serving only that tagger on free loopback ports (tests/stack.py)
   and POSTs /process_images/ with all paths (threshold 0.5, return_confidence false) at each
   concurrency level (N identical requests in flight); images/s = images / wall time. While a
   level runs, VmRSS, RssAnon, RssShmem and Pss of every process of the stack are sampled every
   0.2 s; Triton's and the server's Prometheus metrics and /proc CPU times are read around it;
4. if outside load slowed the first in-process baseline, measures it again once the stack is
   down and keeps the faster run.

    .venv/bin/python -m bench.bench_tagging [--images 320] [--concurrency 1,4]

What-if options try knobs without editing the project: --ort-threads / --decode-threads (the
settings), --global-in-flight / --per-request-in-flight (ImageTagging's caps), --max-batch and
--ort-arena (the derived Triton repository), --stack-env KEY=VALUE.

Prints a table and writes JSON to bench/results/tagging-<UTC timestamp>.json. Method and
figures: docs/benchmarks-tagging.md."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import httpx
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bench.common import Samples, batch_stats, machine, metric, scrape
from stash_vision.catalog.entries import CatalogEntry
from stash_vision.catalog.importers import import_skier233
from stash_vision.server.media.images import ImageLimits, decode_image
from stash_vision.server.preprocessing import preprocess
from stash_vision.settings import Settings
from tests.stack import Stack, cli, free_ports, stack_env, start_stack, wait_ready

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
MODEL = "vivid_galaxy_standin"
BATCH = 8
SAMPLE_INTERVAL_S = 0.2
GIB = 2**30

# Targets (docs/benchmarks-tagging.md).
TARGET_RATIO = 0.85
TARGET_TOTAL_RSS_GIB = 1.5
# The in-process baseline is measured again after the stack when the first run saw this much
# outside load (cores busy with other work).
BASELINE_RETRY_FOREIGN_CORES = 0.2

# The original skier233 server with the same package on this kind of 2-core machine
# (shared/models/skier233-standin/README.md).
ORIGINAL = {
    "one_request_images_per_s": 9.6,
    "four_requests_images_per_s": [10.3, 11.0],
    "four_requests_peak_memory_gib": 3.17,
    "ort_inprocess_batch8_images_per_s": 11.9,
}

# Settings of the caller's environment that would point the stack elsewhere are dropped; these
# tuning knobs are kept (and can be set with the options of the same name).
_KNOBS = ("STASH_VISION_ORT_THREADS", "STASH_VISION_DECODE_THREADS")
_REQUEST_TIMEOUT_S = 3600.0

Tensor = npt.NDArray[np.float32]


# -- inputs ---------------------------------------------------------------------------------------
def shared_dir() -> Path:
    return Path(os.environ.get("STASH_VISION_SHARED_DIR") or REPO.parent / "shared")


def image_paths(shared: Path, count: int) -> tuple[list[Path], int]:
    """`count` real photos (60 KB to 2.4 MB, mixed sizes) cycled; and how many are distinct."""
    files = sorted((shared / "testdata" / "faces" / "deepface").glob("*.jpg"))
    files += sorted(p for p in (shared / "testdata" / "images").iterdir() if p.is_file())
    if not files:
        raise SystemExit(f"no test images under {shared / 'testdata'} (set STASH_VISION_SHARED_DIR)")
    return [files[i % len(files)] for i in range(count)], len(files)


# -- CPU accounting ---------------------------------------------------------------------------------
def system_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (first line of /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def background_cores(seconds: float = 3.0) -> float:
    """Cores busy with other work while this benchmark sleeps (the machine may be shared)."""
    before = system_busy_s()
    time.sleep(seconds)
    return round((system_busy_s() - before) / seconds, 2)


@dataclass
class CpuWindow:
    """CPU used by this process and by the whole machine over one phase."""

    own_before: float = field(default_factory=time.process_time)
    busy_before: float = field(default_factory=system_busy_s)
    started: float = field(default_factory=time.perf_counter)

    def close(self, others_s: float = 0.0) -> dict[str, float]:
        """`others_s`: CPU seconds of our other processes (the stack) meanwhile, not foreign."""
        wall = time.perf_counter() - self.started
        own = (time.process_time() - self.own_before) / wall
        busy = (system_busy_s() - self.busy_before) / wall
        return {
            "bench_process_cores": round(own, 3),
            # Whatever else ran on the machine meanwhile (other jobs): it depresses every figure.
            "foreign_cores": round(max(busy - own - others_s / wall, 0.0), 3),
        }


# -- in-process baselines -------------------------------------------------------------------------
@dataclass
class InProcess:
    images: int
    seconds: float
    prepare_seconds: float
    infer_seconds: float
    cpu: dict[str, float]

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds

    @property
    def infer_images_per_s(self) -> float:
        return self.images / self.infer_seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "seconds": round(self.seconds, 2),
            "images_per_s": round(self.images_per_s, 2),
            "prepare_ms_per_image": round(self.prepare_seconds / self.images * 1e3, 1),
            "infer_ms_per_image": round(self.infer_seconds / self.images * 1e3, 1),
            "infer_only_images_per_s": round(self.infer_images_per_s, 2),
            **self.cpu,
        }


def ort_session(onnx_path: Path, threads: int) -> ort.InferenceSession:
    # ORT's defaults (spinning allowed) with every core: the strongest single-session setup.
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def batches(items: list[Path]) -> Iterator[list[Path]]:
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def run_ort(
    onnx_path: Path, entry: CatalogEntry, paths: list[Path], threads: int
) -> tuple[InProcess, dict[Path, Tensor]]:
    """Sequential decode + preprocess + ORT, batch 8, on every path (no caching: each image is
    read and decoded again). Returns the run and the tensor per distinct path."""
    settings = Settings()
    limits = ImageLimits(settings.max_image_pixels, settings.max_image_file_bytes)
    contract = entry.input
    session = ort_session(onnx_path, threads)
    tensors: dict[Path, Tensor] = {}

    def prepare(path: Path) -> Tensor:
        tensor, _ = preprocess(decode_image(path.read_bytes(), limits), contract)
        return cast(Tensor, tensor)

    warm = np.stack([prepare(p) for p in paths[:BATCH]])
    session.run(None, {contract.tensor: warm})

    prepare_s = infer_s = 0.0
    window = CpuWindow()
    for chunk in batches(paths):
        t0 = time.perf_counter()
        batch = np.stack([prepare(p) for p in chunk])
        t1 = time.perf_counter()
        session.run(None, {contract.tensor: batch})
        t2 = time.perf_counter()
        prepare_s += t1 - t0
        infer_s += t2 - t1
        for path, tensor in zip(chunk, batch, strict=True):
            tensors.setdefault(path, tensor)
    seconds = time.perf_counter() - window.started
    return InProcess(len(paths), seconds, prepare_s, infer_s, window.close()), tensors


def run_ort_vs_torch(
    onnx_path: Path, pt_path: Path, paths: list[Path], tensors: dict[Path, Tensor], threads: int
) -> tuple[InProcess, InProcess, float]:
    """Inference only on the ORT run's tensors (same order, batch 8): ONNX Runtime and TorchScript
    (fp32, no_grad) batch by batch in alternation, so outside load on a shared machine hits both
    alike. ORT's idle threads sleep here (allow_spinning 0, as in the stack's runner) so they do
    not spin on the cores TorchScript is using. Returns both runs and the max |logit difference|
    (the conversion check)."""
    import torch

    torch.set_num_threads(threads)
    model = torch.jit.load(str(pt_path), map_location="cpu").eval()  # type: ignore[no-untyped-call]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    ort_s = torch_s = 0.0
    difference = 0.0
    with torch.no_grad():
        warm = np.stack([tensors[p] for p in paths[:BATCH]])
        model(torch.from_numpy(warm))
        session.run(None, {name: warm})
        window = CpuWindow()
        for index, chunk in enumerate(batches(paths)):
            batch = np.stack([tensors[p] for p in chunk])
            for runtime in ("ort", "torch") if index % 2 == 0 else ("torch", "ort"):
                t0 = time.perf_counter()
                if runtime == "ort":
                    (ort_out,) = session.run(None, {name: batch})
                    ort_s += time.perf_counter() - t0
                else:
                    torch_out = model(torch.from_numpy(batch)).numpy()
                    torch_s += time.perf_counter() - t0
            difference = max(difference, float(np.abs(torch_out - ort_out).max()))
    cpu = window.close()
    seconds = time.perf_counter() - window.started
    return (
        InProcess(len(paths), seconds, 0.0, ort_s, cpu),
        InProcess(len(paths), seconds, 0.0, torch_s, cpu),
        difference,
    )


# -- the stack's processes ----------------------------------------------------------------------------
def _role(pid: int, root: int, cmdline: str) -> str:
    if pid == root:
        return "supervisor"
    if "triton_python_backend_stub" in cmdline:
        return "ort_stub"  # the Python-backend process running ONNX Runtime
    if "tritonserver" in cmdline:
        return "tritonserver"
    if "stash_vision.server" in cmdline:
        return "grpc_server"
    if "stash_vision.adapter" in cmdline:
        return "adapter"
    return "other"


@dataclass(frozen=True)
class Proc:
    pid: int
    role: str

    @property
    def key(self) -> str:
        return f"{self.role}[{self.pid}]"


def process_tree(root: int) -> list[Proc]:
    """The serve process and every descendant (tritonserver, its Python-backend stubs, the
    server, the adapter), found by walking /proc."""
    parents: dict[int, int] = {}
    cmdlines: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = (entry / "stat").read_text()
            pid = int(entry.name)
            parents[pid] = int(raw[raw.rindex(")") + 2 :].split()[1])
            cmdlines[pid] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    tree = {root} if root in parents else set()
    grew = True
    while grew:
        grew = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return [Proc(pid, _role(pid, root, cmdlines[pid])) for pid in sorted(tree)]


def _status_kib(pid: int, key: str) -> int | None:
    return _memory_kib(pid).get(key.rstrip(":"))


def _memory_kib(pid: int) -> dict[str, int]:
    """The Vm*/Rss* lines of /proc/<pid>/status, in KiB (empty when the process is gone)."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("Vm", "Rss")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0])
    return out


def _pss_kib(pid: int) -> int | None:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    return None


def cpu_seconds(procs: list[Proc]) -> dict[str, float]:
    """utime + stime (all threads) per process."""
    ticks = os.sysconf("SC_CLK_TCK")
    out: dict[str, float] = {}
    for proc in procs:
        with contextlib.suppress(OSError, ValueError, IndexError):
            raw = Path(f"/proc/{proc.pid}/stat").read_text()
            rest = raw[raw.rindex(")") + 2 :].split()
            out[proc.key] = (int(rest[11]) + int(rest[12])) / ticks
    return out


class MemorySampler:
    """Samples VmRSS and Pss of every process of the tree every 0.2 s in a thread. RSS counts
    shared pages (libraries, Triton's shared-memory tensors) in each process that maps them, so
    the sum of RSS overstates the total; the sum of Pss splits shared pages between them. The
    peaks of RssAnon (private heap) and RssShmem (shared memory: /dev/shm) per process tell
    which kind of memory grew."""

    def __init__(self, root: int) -> None:
        self.root = root
        self.peak_rss_kib: dict[str, int] = {}
        self.peak_anon_kib: dict[str, int] = {}
        self.peak_shmem_kib: dict[str, int] = {}
        self.peak_sum_rss_kib = 0
        self.peak_sum_pss_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _loop(self) -> None:
        procs = process_tree(self.root)
        refreshed = time.monotonic()
        while True:
            if time.monotonic() - refreshed > 2.0:  # a process may have (re)started
                procs, refreshed = process_tree(self.root), time.monotonic()
            total_rss = total_pss = 0
            for proc in procs:
                memory = _memory_kib(proc.pid)
                if "VmRSS" not in memory:
                    continue
                total_rss += memory["VmRSS"]
                total_pss += _pss_kib(proc.pid) or 0
                for peaks, key in (
                    (self.peak_rss_kib, "VmRSS"),
                    (self.peak_anon_kib, "RssAnon"),
                    (self.peak_shmem_kib, "RssShmem"),
                ):
                    peaks[proc.key] = max(peaks.get(proc.key, 0), memory.get(key, 0))
            self.peak_sum_rss_kib = max(self.peak_sum_rss_kib, total_rss)
            self.peak_sum_pss_kib = max(self.peak_sum_pss_kib, total_pss)
            self.samples += 1
            if self._stop.wait(SAMPLE_INTERVAL_S):
                return


# -- metrics ----------------------------------------------------------------------------------------


@dataclass
class Snapshot:
    triton: Samples
    server: Samples
    batches: dict[int, tuple[int, int]]
    cpu: dict[str, float]
    at: float


def snapshot(stack: Stack, procs: list[Proc]) -> Snapshot:
    return Snapshot(
        triton=scrape(stack.triton_metrics_port),
        server=scrape(stack.server_metrics_port),
        batches=batch_stats(stack.triton_grpc_port, MODEL),
        cpu=cpu_seconds(procs),
        at=time.perf_counter(),
    )


def explain(before: Snapshot, after: Snapshot) -> dict[str, Any]:
    def triton(name: str) -> float:
        return metric(after.triton, name, model=MODEL) - metric(before.triton, name, model=MODEL)

    def server(name: str, **labels: str) -> float:
        return metric(after.server, name, **labels) - metric(before.server, name, **labels)

    wall = after.at - before.at
    inferences, executions = triton("nv_inference_count"), triton("nv_inference_exec_count")
    requests = triton("nv_inference_request_success") or 1.0
    stages: dict[str, float | None] = {}
    for stage in ("decode", "preprocess", "triton"):
        count = server("stash_vision_stage_seconds_count", stage=stage)
        stages[stage] = server("stash_vision_stage_seconds_sum", stage=stage) / count * 1e3 if count else None
    histogram: dict[str, int] = {}
    busy_ns = 0
    for size, (count, ns) in sorted(after.batches.items()):
        old_count, old_ns = before.batches.get(size, (0, 0))
        if count > old_count:
            histogram[str(size)] = count - old_count
            busy_ns += ns - old_ns
    cpu_by_process = {k: (after.cpu[k] - before.cpu.get(k, 0.0)) / wall for k in after.cpu}
    cpu_by_role: dict[str, float] = {}
    for key, cores in cpu_by_process.items():
        role = key.split("[", 1)[0]
        cpu_by_role[role] = cpu_by_role.get(role, 0.0) + cores
    return {
        "avg_triton_batch": inferences / executions if executions else None,
        "triton_executions": int(executions),
        "batch_size_histogram": histogram,
        # Mean wall time of one execute() (IPC to the stub + ORT), and the share of the wall time
        # the single model instance spent executing: near 100 % means ORT is the bottleneck.
        "batch_exec_ms": busy_ns / 1e6 / sum(histogram.values()) if histogram else None,
        "ort_instance_busy": busy_ns / 1e9 / wall,
        "triton_ms_per_request": {
            "queue": triton("nv_inference_queue_duration_us") / requests / 1e3,
            "compute_infer": triton("nv_inference_compute_infer_duration_us") / requests / 1e3,
            "request_total": triton("nv_inference_request_duration_us") / requests / 1e3,
        },
        "server_stage_ms": stages,
        "stack_cpu_cores_by_role": {k: round(v, 3) for k, v in sorted(cpu_by_role.items())},
        "stack_cpu_cores": round(sum(cpu_by_process.values()), 3),
        "stack_cpu_seconds": sum(after.cpu[k] - before.cpu.get(k, 0.0) for k in after.cpu),
    }


# -- the stack --------------------------------------------------------------------------------------
# Knobs without a setting (the derived config.pbtxt, ort_runner.py, the in-flight caps of
# ImageTagging) are tried without editing the project: a launcher wraps
# runtime_repository.assemble to edit the runtime repository `serve` is about to hand to Triton,
# and starts the gRPC server through a shim that changes ImageTagging's defaults; then it runs the
# genuine CLI in the same process. Both are source run with `python -c`, so no process of the stack
# imports this benchmark (their RSS stays comparable). Without overrides, tests.stack starts
# `stash-vision serve` as it is.
_OVERRIDES_ENV = "STASH_VISION_BENCH_TAGGING_OVERRIDES"
_SERVER_SHIM = """
import json, os, runpy
from stash_vision.server.tagging import image_flow

overrides = json.loads(os.environ["STASH_VISION_BENCH_TAGGING_OVERRIDES"])
original = image_flow.ImageTagging.__init__

def init(self, *args, **kwargs):
    for key in ("per_request_in_flight", "global_in_flight"):
        if overrides.get(key) is not None:
            kwargs[key] = int(overrides[key])
    original(self, *args, **kwargs)

image_flow.ImageTagging.__init__ = init
runpy.run_module("stash_vision.server", run_name="__main__", alter_sys=True)
"""
_LAUNCHER = """
import json, os, sys
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2
from stash_vision import cli
from stash_vision.embedded import runtime_repository, supervisor

overrides = json.loads(os.environ["STASH_VISION_BENCH_TAGGING_OVERRIDES"])
anchor = "options.inter_op_num_threads = 1\\n"
assemble = runtime_repository.assemble

def assemble_and_override(entries, models_dir, out, mode, ort_threads=1):
    result = assemble(entries, models_dir, out, mode, ort_threads)
    for entry in entries:
        folder = result / entry.name
        config_path = folder / "config.pbtxt"
        config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
        if overrides.get("max_batch") is not None:
            config.max_batch_size = int(overrides["max_batch"])
        config_path.write_text(text_format.MessageToString(config))
        if overrides.get("ort_arena") is not None:
            runner = next(folder.glob("*/model.py"))
            source = runner.read_text()
            if anchor not in source:
                raise RuntimeError(f"cannot set the ORT arena: no {anchor!r} in {runner}")
            line = f"options.enable_cpu_mem_arena = {bool(overrides['ort_arena'])}\\n"
            runner.write_text(source.replace(anchor, anchor + "        " + line, 1))
    return result

class ShimmedChild(supervisor.Child):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.name == "server" and self.argv[1:] == ["-m", "stash_vision.server"]:
            self.argv = [sys.executable, "-c", os.environ["STASH_VISION_BENCH_TAGGING_SERVER_SHIM"]]

runtime_repository.assemble = assemble_and_override
supervisor.Child = ShimmedChild
raise SystemExit(cli.main(["serve"]))
"""


def start_with_overrides(work_dir: Path, mirror: Path, overrides: dict[str, Any]) -> Stack:
    """tests.stack.start_stack with the launcher above instead of `stash-vision serve`."""
    data_dir = work_dir / "data"
    ports = free_ports(5)
    env = stack_env(data_dir, mirror, ports, [MODEL]) | {
        _OVERRIDES_ENV: json.dumps(overrides),
        "STASH_VISION_BENCH_TAGGING_SERVER_SHIM": _SERVER_SHIM,
    }
    fetched = cli(env, "models", "fetch", "--mirror-only")
    if fetched.returncode != 0:
        raise RuntimeError(f"models fetch failed:\n{fetched.stdout}\n{fetched.stderr}")
    log_path = work_dir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _LAUNCHER],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    http, grpc_port, server_metrics, triton_grpc, triton_metrics = ports
    stack = Stack(
        process=process,
        env=env,
        data_dir=data_dir,
        log_path=log_path,
        http_port=http,
        grpc_port=grpc_port,
        server_metrics_port=server_metrics,
        triton_grpc_port=triton_grpc,
        triton_metrics_port=triton_metrics,
        models=[MODEL],
    )
    wait_ready(stack)
    return stack


@dataclass
class Level:
    concurrency: int
    images: int
    seconds: float
    latencies_s: list[float]
    detail: dict[str, Any]
    memory: dict[str, Any]
    cpu: dict[str, float]

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds


async def post_all(client: httpx.AsyncClient, url: str, paths: list[str], concurrency: int) -> list[float]:
    body = {"paths": paths, "threshold": 0.5, "return_confidence": False}

    async def one() -> float:
        started = time.perf_counter()
        response = await client.post(url, json=body)
        response.raise_for_status()
        results = response.json()["result"]
        errors = [r["error"] for r in results if "error" in r]
        if len(results) != len(paths) or errors:
            raise RuntimeError(
                f"{len(errors)} of {len(results)} images failed ({errors[:1]}) for {len(paths)} paths"
            )
        return time.perf_counter() - started

    return list(await asyncio.gather(*(one() for _ in range(concurrency))))


async def bench_stack(stack: Stack, paths: list[Path], levels: list[int]) -> list[Level]:
    url = f"{stack.http}/process_images/"
    names = [str(p) for p in paths]
    out: list[Level] = []
    timeout = httpx.Timeout(_REQUEST_TIMEOUT_S, connect=10.0)
    async with httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=64)) as client:
        # Warm-up: connections, the server's pool threads, ORT's first batched runs.
        await post_all(client, url, names[: BATCH * 2], 1)
        for concurrency in levels:
            procs = process_tree(stack.process.pid)
            idle_rss = {proc.key: _memory_kib(proc.pid).get("VmRSS", 0) for proc in procs}
            before = snapshot(stack, procs)
            window = CpuWindow()
            with MemorySampler(stack.process.pid) as sampler:
                started = time.perf_counter()
                latencies = await post_all(client, url, names, concurrency)
                seconds = time.perf_counter() - started
            after = snapshot(stack, process_tree(stack.process.pid))
            detail = explain(before, after)
            stack_cpu_s = detail.pop("stack_cpu_seconds")
            cpu = window.close(stack_cpu_s)
            # Robust to outside load on a shared machine: images per CPU-second the stack used.
            detail["images_per_stack_cpu_second"] = len(names) * concurrency / stack_cpu_s
            memory = {
                "rss_before_mib_by_process": {k: round(v / 1024, 1) for k, v in sorted(idle_rss.items())},
                "rss_before_sum_gib": round(sum(idle_rss.values()) / 2**20, 3),
                "peak_rss_mib_by_process": {
                    k: round(v / 1024, 1) for k, v in sorted(sampler.peak_rss_kib.items())
                },
                "peak_rss_anon_mib_by_process": {
                    k: round(v / 1024, 1) for k, v in sorted(sampler.peak_anon_kib.items())
                },
                "peak_rss_shmem_mib_by_process": {
                    k: round(v / 1024, 1) for k, v in sorted(sampler.peak_shmem_kib.items())
                },
                "peak_sum_rss_gib": round(sampler.peak_sum_rss_kib / 2**20, 3),
                "peak_sum_pss_gib": round(sampler.peak_sum_pss_kib / 2**20, 3),
                "samples": sampler.samples,
            }
            level = Level(concurrency, len(names) * concurrency, seconds, latencies, detail, memory, cpu)
            out.append(level)
            print(
                f"  {concurrency} x {len(names)}: {level.images_per_s:.2f} img/s in {seconds:.1f} s, "
                f"avg Triton batch {_fmt(detail['avg_triton_batch'], '.2f')}, peak RSS sum "
                f"{memory['peak_sum_rss_gib']:.2f} GiB, foreign load {cpu['foreign_cores']:.2f} cores",
                flush=True,
            )
    return out


def lifetime_peaks(root: int) -> dict[str, float]:
    """VmHWM (the kernel's own peak RSS since each process started, startup included)."""
    peaks: dict[str, float] = {}
    for proc in process_tree(root):
        hwm = _status_kib(proc.pid, "VmHWM:")
        if hwm is not None:
            peaks[proc.key] = round(hwm / 1024, 1)
    return peaks


# -- report -----------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def report(
    levels: list[Level],
    ort_run: InProcess | None,
    ort_only: InProcess | None,
    torch_run: InProcess | None,
    torch_diff: float | None,
) -> dict[str, Any]:
    """`ort_run`: the end-to-end baseline (the ratios' denominator); `ort_only` and `torch_run`:
    inference alone, measured alternately."""
    base = ort_run.images_per_s if ort_run else None
    # The ORT-only ceiling: the faster of the two inference-only figures.
    ceiling = max((r.infer_images_per_s for r in (ort_run, ort_only) if r is not None), default=None)
    print()
    header = (
        f"{'what':<46} {'img/s':>6} {'/in-proc':>8} {'/ORT-only':>9} {'batch':>5} "
        f"{'peak RSS':>8} {'foreign':>7} {'original':>10}"
    )
    print(header)
    print("-" * len(header))

    def line(
        what: str,
        rate: float,
        ratio: float | None = None,
        vs_ort: float | None = None,
        batch: float | None = None,
        rss_gib: float | None = None,
        foreign: float | None = None,
        original: str = "-",
    ) -> None:
        print(
            f"{what:<46} {rate:>6.2f} {_fmt(ratio, '.2f'):>8} {_fmt(vs_ort, '.2f'):>9} "
            f"{_fmt(batch, '.1f'):>5} {_fmt(rss_gib, '.2f'):>8} {_fmt(foreign, '.2f'):>7} {original:>10}"
        )

    originals = {1: "9.6", 4: "10.3-11.0"}
    rows = []
    for level in levels:
        ratio = level.images_per_s / base if base else None
        vs_ort = level.images_per_s / ceiling if ceiling else None
        rows.append(
            {
                "concurrency": level.concurrency,
                "images": level.images,
                "seconds": round(level.seconds, 2),
                "images_per_s": round(level.images_per_s, 2),
                "ratio_vs_inprocess": None if ratio is None else round(ratio, 3),
                "ratio_vs_ort_only": None if vs_ort is None else round(vs_ort, 3),
                "request_seconds": [round(s, 1) for s in level.latencies_s],
                "detail": _rounded(level.detail),
                "memory": level.memory,
                "cpu": level.cpu,
            }
        )
        line(
            f"stack: {level.concurrency} x /process_images/ of {level.images // level.concurrency} paths",
            level.images_per_s,
            ratio,
            vs_ort,
            level.detail["avg_triton_batch"],
            level.memory["peak_sum_rss_gib"],
            level.cpu["foreign_cores"],
            originals.get(level.concurrency, "-"),
        )
    if ort_run:
        foreign = ort_run.cpu["foreign_cores"]
        line("in-process: decode+preprocess+ORT, batch 8", ort_run.images_per_s, 1.0, foreign=foreign)
        line(
            "  of which ORT time only",
            ort_run.infer_images_per_s,
            vs_ort=ort_run.infer_images_per_s / ceiling if ceiling else None,
            foreign=foreign,
        )
    if ort_only and torch_run:
        foreign = ort_only.cpu["foreign_cores"]
        line(
            "in-process: ORT only, batch 8 (alternated)",
            ort_only.infer_images_per_s,
            vs_ort=ort_only.infer_images_per_s / ceiling if ceiling else None,
            foreign=foreign,
            original="11.9",
        )
        line(
            "in-process: TorchScript fp32, batch 8 (alt.)",
            torch_run.infer_images_per_s,
            # Against the ORT run it alternated with: the same outside load.
            vs_ort=torch_run.infer_images_per_s / ort_only.infer_images_per_s,
            foreign=foreign,
        )
    print(
        "(/ORT-only: against the faster ORT-only figure, TorchScript against the ORT run it alternated "
        "with; batch: Triton's mean batch size;\n peak RSS: peak of the sum of VmRSS over the stack's "
        "processes, GiB; foreign: cores busy with other work meanwhile)"
    )
    print()
    for level in levels:
        d, m = level.detail, level.memory
        stages = ", ".join(f"{k} {_fmt(v)}" for k, v in d["server_stage_ms"].items())
        batches = " ".join(f"{k}:{v}" for k, v in d["batch_size_histogram"].items())
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in d["stack_cpu_cores_by_role"].items() if v >= 0.005)
        rss = ", ".join(
            f"{k} {v:.0f} (anon {m['peak_rss_anon_mib_by_process'].get(k, 0):.0f}, "
            f"shm {m['peak_rss_shmem_mib_by_process'].get(k, 0):.0f})"
            for k, v in m["peak_rss_mib_by_process"].items()
        )
        print(
            f"{level.concurrency} x {level.images // level.concurrency}: avg Triton batch "
            f"{_fmt(d['avg_triton_batch'], '.2f')} [{batches}], batch exec {_fmt(d['batch_exec_ms'])} ms, "
            f"ORT instance busy {d['ort_instance_busy']:.0%}, Triton queue "
            f"{d['triton_ms_per_request']['queue']:.0f} ms/image\n"
            f"      server stage ms/image [{stages}]\n"
            f"      stack CPU cores [{cpu}] = {d['stack_cpu_cores']:.2f} "
            f"({d['images_per_stack_cpu_second']:.2f} images per stack CPU-second); bench client "
            f"{level.cpu['bench_process_cores']:.2f}; foreign {level.cpu['foreign_cores']:.2f}\n"
            f"      peak RSS MiB [{rss}]\n"
            f"      RSS before the level {m['rss_before_sum_gib']:.2f} GiB; peak of the sum: RSS {m['peak_sum_rss_gib']:.2f} GiB, Pss {m['peak_sum_pss_gib']:.2f} GiB "
            f"(original server: {ORIGINAL['four_requests_peak_memory_gib']} GiB at 4 x 320)"
        )
    if ort_run:
        print(
            f"in-process ORT: prepare {ort_run.prepare_seconds / ort_run.images * 1e3:.0f} ms + infer "
            f"{ort_run.infer_seconds / ort_run.images * 1e3:.0f} ms per image, foreign {ort_run.cpu['foreign_cores']:.2f}"
        )
    if torch_run and torch_diff is not None:
        print(f"TorchScript vs ORT max |logit difference|: {torch_diff:.2e}")

    at_1 = next((r for r in rows if r["concurrency"] == 1), None)
    at_4 = next((r for r in rows if r["concurrency"] == 4), None)
    targets = {
        "ratio_1_ge_0.85": None
        if at_1 is None or base is None
        else at_1["ratio_vs_inprocess"] >= TARGET_RATIO,
        "ratio_4_ge_0.85": None
        if at_4 is None or base is None
        else at_4["ratio_vs_inprocess"] >= TARGET_RATIO,
        "total_rss_4_le_1.5_gib": None
        if at_4 is None
        else at_4["memory"]["peak_sum_rss_gib"] <= TARGET_TOTAL_RSS_GIB,
    }
    print()
    print(
        "targets: "
        + "; ".join(f"{k} {'n/a' if v is None else ('met' if v else 'MISSED')}" for k, v in targets.items())
    )
    return {
        "levels": rows,
        "inprocess_ort": ort_run.as_json() if ort_run else None,
        "inprocess_ort_only_alternating": ort_only.as_json() if ort_only else None,
        "inprocess_torchscript_alternating": None
        if torch_run is None
        else {**torch_run.as_json(), "max_logit_difference_vs_ort": torch_diff},
        "original_server": ORIGINAL,
        "targets": targets,
    }


def _git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        result = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10
        )
        if result.returncode == 0:
            return result.stdout.strip()
    return None


def _machine() -> dict[str, Any]:
    return machine(onnxruntime=ort.__version__)


# -- main -------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_tagging", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--images", type=int, default=320, help="paths per request (the plugin sends 320)")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated numbers of requests in flight")
    parser.add_argument(
        "--ort-threads", type=int, default=None, help="STASH_VISION_ORT_THREADS for the stack"
    )
    parser.add_argument(
        "--decode-threads", type=int, default=None, help="STASH_VISION_DECODE_THREADS for the stack"
    )
    parser.add_argument(
        "--max-batch", type=int, default=None, help="what-if: the model's max_batch_size in Triton (16)"
    )
    parser.add_argument(
        "--ort-arena",
        type=int,
        choices=(0, 1),
        default=None,
        help="what-if: enable_cpu_mem_arena in the ORT runner (1 is ORT's own default)",
    )
    parser.add_argument(
        "--per-request-in-flight",
        type=int,
        default=None,
        help="what-if: images of one request in flight in the server (ImageTagging default 8)",
    )
    parser.add_argument(
        "--global-in-flight",
        type=int,
        default=None,
        help="what-if: images in flight in the server over all requests (ImageTagging default 32)",
    )
    parser.add_argument(
        "--stack-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="what-if: extra environment for every process of the stack (e.g. MALLOC_ARENA_MAX=2)",
    )
    parser.add_argument("--no-inprocess", action="store_true", help="skip both in-process baselines")
    parser.add_argument("--no-torch", action="store_true", help="skip the TorchScript baseline")
    parser.add_argument(
        "--torch-images",
        type=int,
        default=None,
        help="TorchScript on the first N of the paths only (default: all; it is the slowest phase)",
    )
    parser.add_argument(
        "--package",
        type=Path,
        default=None,
        help="the stand-in's YAML (default: <shared>/models/skier233-standin/vivid_galaxy_standin.yaml)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory and logs")
    args = parser.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.levels or min(args.levels) < 1 or args.images < 1:
        parser.error("--concurrency needs positive integers, --images a positive count")
    if any("=" not in item for item in args.stack_env):
        parser.error("--stack-env takes KEY=VALUE")
    args.extra_env = dict(item.split("=", 1) for item in args.stack_env)
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    overrides = {
        k: v
        for k, v in {
            "max_batch": args.max_batch,
            "ort_arena": args.ort_arena,
            "per_request_in_flight": args.per_request_in_flight,
            "global_in_flight": args.global_in_flight,
        }.items()
        if v is not None
    }
    shared = shared_dir()
    package = args.package or shared / "models" / "skier233-standin" / f"{MODEL}.yaml"
    paths, distinct = image_paths(shared, args.images)
    cores = os.cpu_count() or 1

    # The stack's environment comes from ours (tests/stack.py): keep only the knobs under test.
    for key in [k for k in os.environ if k.startswith("STASH_VISION_") and k not in _KNOBS]:
        if key != "STASH_VISION_SHARED_DIR":
            del os.environ[key]
    if args.ort_threads is not None:
        os.environ["STASH_VISION_ORT_THREADS"] = str(args.ort_threads)
    if args.decode_threads is not None:
        os.environ["STASH_VISION_DECODE_THREADS"] = str(args.decode_threads)
    # tests.stack copies this process's environment into the stack's (set after start-up, so
    # it does not change this process's own allocator).
    os.environ.update(args.extra_env)
    knobs = {k: os.environ[k] for k in _KNOBS if k in os.environ} | args.extra_env
    # What the stack will use (its defaults change between commits).
    settings = Settings()
    effective = {
        "ort_threads": settings.effective_ort_threads,
        "decode_threads": settings.effective_decode_threads,
        "per_request_in_flight": overrides.get("per_request_in_flight", "default"),
        "global_in_flight": overrides.get("global_in_flight", "default"),
        "max_batch": overrides.get("max_batch", "default"),
    }

    work_dir = Path(tempfile.mkdtemp(prefix="stash-vision-bench-tagging-"))
    data_dir = work_dir / "data"
    started = time.monotonic()
    stack: Stack | None = None
    try:
        background = background_cores()
        print(f"background load before the run: {background:.2f} of {cores} cores", flush=True)
        print(f"importing {package} into {data_dir}", flush=True)
        entry = import_skier233(package, data_dir / "model_repository", data_dir / "models")
        onnx_path = entry.weights_path(data_dir / "models")
        pt_path = package.with_name(f"{MODEL}.pt")
        print(
            f"  {entry.name}: {entry.input.width}x{entry.input.height}, {entry.input.interpolation}",
            flush=True,
        )

        ort_runs: list[InProcess] = []
        ort_only = torch_run = None
        torch_diff = None
        if not args.no_inprocess:
            print(f"in-process ORT on {len(paths)} paths (batch {BATCH}, {cores} threads)", flush=True)
            first, tensors = run_ort(onnx_path, entry, paths, cores)
            ort_runs.append(first)
            print(
                f"  {first.images_per_s:.2f} img/s end to end ({first.infer_images_per_s:.2f} in ORT), "
                f"foreign load {first.cpu['foreign_cores']:.2f} cores",
                flush=True,
            )
            if not args.no_torch:
                torch_paths = paths[: args.torch_images] if args.torch_images else paths
                print(
                    f"in-process ORT and TorchScript alternately on the same {len(torch_paths)} tensors "
                    f"({cores} threads)",
                    flush=True,
                )
                ort_only, torch_run, torch_diff = run_ort_vs_torch(
                    onnx_path, pt_path, torch_paths, tensors, cores
                )
                print(
                    f"  ORT {ort_only.infer_images_per_s:.2f} img/s, TorchScript "
                    f"{torch_run.infer_images_per_s:.2f} img/s",
                    flush=True,
                )
            del tensors

        print(
            f"starting stash-vision serve with {MODEL} only ({effective}, knobs {knobs or 'defaults'}, "
            f"overrides {overrides or 'none'})",
            flush=True,
        )
        if overrides:
            stack = start_with_overrides(work_dir, shared / "models", overrides)
        else:
            stack = start_stack(work_dir, shared / "models", [MODEL])
        print(f"  ready after {time.monotonic() - started:.0f} s since the start", flush=True)
        levels = asyncio.run(bench_stack(stack, paths, args.levels))
        peaks = lifetime_peaks(stack.process.pid)
        stack.stop()

        if ort_runs and ort_runs[0].cpu["foreign_cores"] >= BASELINE_RETRY_FOREIGN_CORES:
            # Outside load slowed the first baseline: measure it again now the stack is down, and
            # keep the faster of the two.
            print("in-process ORT again (the first run shared the machine)", flush=True)
            again, _ = run_ort(onnx_path, entry, paths, cores)
            ort_runs.append(again)
            print(
                f"  {again.images_per_s:.2f} img/s end to end, foreign load {again.cpu['foreign_cores']:.2f}",
                flush=True,
            )
        best = max(ort_runs, key=lambda run: run.images_per_s) if ort_runs else None
        result = report(levels, best, ort_only, torch_run, torch_diff)
        result |= {
            "inprocess_ort_runs": [run.as_json() for run in ort_runs],
            "model": MODEL,
            "paths_per_request": len(paths),
            "distinct_images": distinct,
            "knobs": knobs,
            "effective": effective,
            "overrides": overrides,
            "git_commit": _git_commit(),
            "background_cores_before": background,
            "lifetime_peak_rss_mib_by_process": peaks,
            "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": _machine(),
            "command": " ".join(["python", "-m", "bench.bench_tagging", *argv]),
            "wall_s": round(time.monotonic() - started, 1),
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"tagging-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out.relative_to(REPO)} ({result['wall_s']:.0f} s in all)")
        return 0
    except (RuntimeError, OSError, httpx.HTTPError) as error:
        print(f"error: {error}", file=sys.stderr)
        if stack is not None:
            print(stack.log()[-4000:], file=sys.stderr)
        return 1
    finally:
        if stack is not None:
            code = stack.stop()
            if code not in (0, None):
                print(f"warning: stash-vision serve exited with {code}", file=sys.stderr)
        if args.keep:
            print(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
