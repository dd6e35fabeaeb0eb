"""End-to-end throughput of the stack against ONNX Runtime in-process, on the same images.

One run fetches the model's weights into a throw-away data directory, starts `stash-vision serve`
serving only the benchmarked model on free loopback ports, and then, per concurrency level,
measures side by side:

- in-process: decode + preprocess + ORT (batch 1) on the same ONNX file, sequentially and with
  `concurrency` threads: the work the stack does, minus every RPC;
- the stack: `InferenceService.Infer` with the encoded image bytes, exactly `concurrency` calls in
  flight;

and reads Triton's and the server's Prometheus metrics (plus Triton's statistics API and
/proc) around each stack level to explain the figures: batch sizes the dynamic batcher formed,
queue and execution times, per-stage times, CPU per process, outside load.

    .venv/bin/python -m bench.bench_stack --model open_nsfw --images 300 --concurrency 1,8,32

The table is printed and written as JSON to bench/results/<UTC timestamp>.json. Method and
figures: docs/benchmarks.md."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from bench.common import LOOPBACK, Samples, batch_stats, machine, metric, scrape
from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.server.media.images import ImageLimits, decode_image
from stash_vision.server.preprocessing import preprocess
from stash_vision.settings import Settings
from stash_vision.v1 import inference_pb2, inference_pb2_grpc, media_pb2

REPO = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO / "bench" / "results"
# Targets this benchmark checks (see docs/benchmarks.md).
TARGET_RATIO_AT_8 = 0.75
TARGET_MIN_BATCH = 1.0
# Outside load (cores busy with other processes) above which a level's figures are flagged.
NOISY_CORES = 0.2

# Settings inherited from the caller's environment that would send the benchmark somewhere else
# (an external Triton, another server, auth) are dropped; these two are the tuning knobs under test.
_INHERITED_KNOBS = ("STASH_VISION_ORT_THREADS", "STASH_VISION_DECODE_THREADS")
_CALL_TIMEOUT_S = 120.0
_PR_SET_PDEATHSIG = 1


# -- inputs ---------------------------------------------------------------------------------------
def shared_dir() -> Path:
    return Path(os.environ.get("STASH_VISION_SHARED_DIR") or REPO.parent / "shared")


def load_images(shared: Path) -> list[tuple[str, bytes]]:
    """Real photos of mixed sizes (60 KB to 2.4 MB): decoding cost is part of what is measured."""
    files = sorted(p for p in (shared / "testdata" / "images").iterdir() if p.is_file())
    files += sorted((shared / "testdata" / "faces" / "deepface").glob("*.jpg"))
    if not files:
        raise SystemExit(f"no test images under {shared / 'testdata'} (set STASH_VISION_SHARED_DIR)")
    return [(p.name, p.read_bytes()) for p in files]


def cycled(images: list[tuple[str, bytes]], count: int) -> list[bytes]:
    return [images[i % len(images)][1] for i in range(count)]


# -- in-process baseline --------------------------------------------------------------------------
@dataclass
class Run:
    """One measured phase: completed images over wall time, and CPU used by this process."""

    images: int
    seconds: float
    cpu_cores: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    # Cores busy with other processes meanwhile (the machine may be shared): large values mean
    # the figure is depressed by outside load, not by what is measured.
    foreign_cores: float = 0.0

    @property
    def images_per_s(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0

    def percentile_ms(self, q: float) -> float | None:
        if len(self.latencies_ms) < 2:
            return None
        return statistics.quantiles(self.latencies_ms, n=100, method="inclusive")[round(q) - 1]


def ort_session(onnx_path: Path) -> ort.InferenceSession:
    # The configuration the embedded runner uses (ort_runner.py) with all cores: the strongest
    # single-session setup, so the baseline is not handicapped.
    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])


def run_inprocess(
    session: ort.InferenceSession,
    entry: CatalogEntry,
    limits: ImageLimits,
    payloads: list[bytes],
    threads: int,
    duration_s: float | None,
) -> Run:
    """Decode + preprocess + ORT (batch 1) per image, with `threads` images in flight.

    threads == 1 runs inline (plain sequential loop); otherwise `threads` workers of a pool pull
    from one shared index, the same closed-loop model as the gRPC client, so both sides get the
    same concurrency. ORT and OpenCV release the GIL, so the threads overlap for real."""
    contract = entry.input
    lock = threading.Lock()
    position = 0
    deadline = None if duration_s is None else time.perf_counter() + duration_s
    latencies: list[float] = []

    def take() -> bytes | None:
        nonlocal position
        with lock:
            if position >= len(payloads) or (deadline is not None and time.perf_counter() >= deadline):
                return None
            position += 1
            return payloads[position - 1]

    def work() -> None:
        while (data := take()) is not None:
            started = time.perf_counter()
            tensor, _ = preprocess(decode_image(data, limits), contract)
            session.run(None, {contract.tensor: tensor[np.newaxis]})
            with lock:
                latencies.append((time.perf_counter() - started) * 1e3)

    cpu_before, busy_before, started = time.process_time(), system_busy_s(), time.perf_counter()
    if threads == 1:
        work()
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="baseline") as pool:
            for future in [pool.submit(work) for _ in range(threads)]:
                future.result()
    seconds = time.perf_counter() - started
    cores = (time.process_time() - cpu_before) / seconds
    foreign = max((system_busy_s() - busy_before) / seconds - cores, 0.0)
    return Run(len(latencies), seconds, cores, latencies, foreign)


# -- the stack ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Ports:
    http: int
    grpc: int
    server_metrics: int
    triton_grpc: int
    triton_metrics: int


def free_ports() -> Ports:
    # All sockets stay open until every port is chosen, so the five numbers are distinct.
    with contextlib.ExitStack() as stack:
        numbers = []
        for _ in range(5):
            probe = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            probe.bind((LOOPBACK, 0))
            numbers.append(probe.getsockname()[1])
    return Ports(*numbers)


def stack_env(data_dir: Path, mirror: str, model: str, ports: Ports, knobs: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STASH_VISION_") or k in _INHERITED_KNOBS}
    env |= {
        "STASH_VISION_DATA_DIR": str(data_dir),
        "STASH_VISION_MODEL_MIRROR": mirror,
        # Only the benchmarked model: others would load, warm up and poll on the same cores.
        "STASH_VISION_MODELS": json.dumps([model]),
        "STASH_VISION_HOST": LOOPBACK,
        "STASH_VISION_HTTP_PORT": str(ports.http),
        "STASH_VISION_GRPC_PORT": str(ports.grpc),
        "STASH_VISION_SERVER_METRICS_PORT": str(ports.server_metrics),
        "STASH_VISION_TRITON_GRPC_PORT": str(ports.triton_grpc),
        "STASH_VISION_TRITON_METRICS_PORT": str(ports.triton_metrics),
    }
    return env | knobs


def fetch_weights(env: dict[str, str], model: str, mirror: str) -> None:
    # The CLI a user would run, so the benchmark also exercises the fetcher's mirror path.
    command = [sys.executable, "-m", "stash_vision.cli", "models", "fetch", model]
    command += ["--mirror", mirror, "--mirror-only"]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise SystemExit(f"fetching {model} from {mirror} failed:\n{result.stdout}{result.stderr}")


def _die_with_parent() -> None:
    # If the benchmark is killed outright, the supervisor gets SIGTERM and takes its children down.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# -- what-if overrides ----------------------------------------------------------------------------
# Knobs that have no setting yet (they live in config.pbtxt or ort_runner.py) are tried without
# editing the project: a launcher wraps runtime_repository.assemble and edits the derived runtime
# repository that `serve` is about to hand to Triton. Without overrides the genuine CLI runs.
_OVERRIDES_ENV = "STASH_VISION_BENCH_OVERRIDES"
_LAUNCH_SERVE = "_serve-with-overrides"
_RUNNER_ANCHOR = "options.inter_op_num_threads = 1\n"


def apply_overrides(model_dir: Path, overrides: dict[str, Any]) -> None:
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config_path = model_dir / "config.pbtxt"
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    if overrides.get("max_queue_delay_us") is not None:
        config.dynamic_batching.max_queue_delay_microseconds = int(overrides["max_queue_delay_us"])
    if overrides.get("instances") is not None:
        config.instance_group[0].count = int(overrides["instances"])
    config_path.write_text(text_format.MessageToString(config))
    if overrides.get("ort_spinning") is not None:
        runner = next(model_dir.glob("*/model.py"))
        runner.write_text(_with_spinning(runner.read_text(), str(int(overrides["ort_spinning"])), runner))


def _with_spinning(source: str, value: str, runner: Path) -> str:
    """Sets ORT's session.intra_op.allow_spinning in the runner: 0 makes idle intra-op threads
    sleep instead of busy-waiting on cores the decoders need."""
    current = re.search(r'add_session_config_entry\("session\.intra_op\.allow_spinning", "(\d)"\)', source)
    if current:
        return source[: current.start(1)] + value + source[current.end(1) :]
    if _RUNNER_ANCHOR not in source:
        raise RuntimeError(f"cannot set allow_spinning: {_RUNNER_ANCHOR.strip()!r} not in {runner}")
    line = f'options.add_session_config_entry("session.intra_op.allow_spinning", "{value}")\n'
    return source.replace(_RUNNER_ANCHOR, f"{_RUNNER_ANCHOR}        {line}", 1)


def serve_with_overrides() -> int:
    from stash_vision import cli
    from stash_vision.embedded import runtime_repository

    overrides = json.loads(os.environ[_OVERRIDES_ENV])
    assemble = runtime_repository.assemble

    def assemble_and_override(
        entries: list[CatalogEntry], models_dir: Path, out: Path, mode: Any, ort_threads: int = 1
    ) -> Path:
        result = assemble(entries, models_dir, out, mode, ort_threads)
        for entry in entries:
            apply_overrides(result / entry.name, overrides)
        return result

    runtime_repository.assemble = assemble_and_override
    return cli.main(["serve"])


class Stack:
    """`stash-vision serve` as a child process, stopped with SIGINT like a user would."""

    def __init__(self, env: dict[str, str], ports: Ports, log_path: Path, overrides: dict[str, Any]) -> None:
        self.env = env
        self.ports = ports
        self.log_path = log_path
        self.overrides = overrides
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float) -> None:
        command = [sys.executable, "-m", "stash_vision.cli", "serve"]
        env = self.env
        if self.overrides:
            command = [sys.executable, "-m", "bench.bench_stack", _LAUNCH_SERVE]
            env = env | {_OVERRIDES_ENV: json.dumps(self.overrides)}
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command,
                cwd=REPO,  # `bench` is importable from the repository root only
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        deadline = time.monotonic() + timeout_s
        url = f"http://{LOOPBACK}:{self.ports.http}/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"stash-vision serve exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            # Refused while starting, HTTPError (503) until every model is ready.
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
            time.sleep(0.5)
        raise RuntimeError(f"the stack was not ready within {timeout_s:.0f} s:\n{self.log_tail()}")

    def stop(self, grace_s: float = 60.0) -> int | None:
        process = self.process
        if process is None or process.poll() is not None:
            return None if process is None else process.returncode
        process.send_signal(signal.SIGINT)
        try:
            return process.wait(grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(10)

    def log_tail(self, lines: int = 40) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])


# -- metrics --------------------------------------------------------------------------------------


def process_tree_cpu(root: int) -> dict[str, float]:
    """CPU seconds (user + system) of the supervisor and every descendant, by role."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    stats: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            raw = (entry / "stat").read_text()
            # comm is in parentheses and may contain spaces: split after the last ')'.
            rest = raw[raw.rindex(")") + 2 :].split()
            pid = int(entry.name)
            parents[pid] = int(rest[1])
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            stats[pid] = (cmdline, (int(rest[11]) + int(rest[12])) / ticks)
    tree = {root}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                changed = True
    by_role: dict[str, float] = {}
    for pid in tree & stats.keys():
        cmdline, seconds = stats[pid]
        role = _role(pid, root, cmdline)
        by_role[role] = by_role.get(role, 0.0) + seconds
    return by_role


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


def system_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot (first line of /proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    # guest time is already counted in user/nice.
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


@dataclass
class Snapshot:
    triton: Samples
    server: Samples
    batches: dict[int, tuple[int, int]]
    cpu: dict[str, float]
    client_cpu: float
    system_busy: float
    at: float


def snapshot(stack: Stack, root: int, model: str) -> Snapshot:
    return Snapshot(
        triton=scrape(stack.ports.triton_metrics),
        server=scrape(stack.ports.server_metrics),
        batches=batch_stats(stack.ports.triton_grpc, model),
        cpu=process_tree_cpu(root),
        client_cpu=time.process_time(),
        system_busy=system_busy_s(),
        at=time.perf_counter(),
    )


def explain(before: Snapshot, after: Snapshot, model: str) -> dict[str, Any]:
    """What happened during one level, from the metrics deltas."""

    def triton(name: str) -> float:
        return metric(after.triton, name, model=model) - metric(before.triton, name, model=model)

    def server(name: str, **labels: str) -> float:
        return metric(after.server, name, **labels) - metric(before.server, name, **labels)

    wall = after.at - before.at
    inferences, executions = triton("nv_inference_count"), triton("nv_inference_exec_count")
    requests = triton("nv_inference_request_success") or 1.0
    stages = {}
    for stage in ("decode", "preprocess", "triton"):
        count = server("stash_vision_stage_seconds_count", stage=stage)
        stages[stage] = server("stash_vision_stage_seconds_sum", stage=stage) / count * 1e3 if count else None
    handled = server("grpc_server_handling_seconds_count", grpc_method="Infer")
    cpu = {role: (after.cpu.get(role, 0.0) - before.cpu.get(role, 0.0)) / wall for role in after.cpu}
    cpu["bench_client"] = (after.client_cpu - before.client_cpu) / wall
    # Whatever else ran on the machine meanwhile (other users' jobs): it skews the comparison.
    foreign = (after.system_busy - before.system_busy) / wall - sum(cpu.values())
    histogram: dict[str, int] = {}
    busy_ns = 0
    for size, (count, ns) in sorted(after.batches.items()):
        old_count, old_ns = before.batches.get(size, (0, 0))
        if count > old_count:
            histogram[str(size)] = count - old_count
            busy_ns += ns - old_ns
    return {
        "avg_batch": inferences / executions if executions else None,
        "executions": int(executions),
        "triton_ms_per_request": {
            "queue": triton("nv_inference_queue_duration_us") / requests / 1e3,
            "compute_input": triton("nv_inference_compute_input_duration_us") / requests / 1e3,
            # Triton stamps each request of a batch with the whole batch's execution time.
            "compute_infer": triton("nv_inference_compute_infer_duration_us") / requests / 1e3,
            "compute_output": triton("nv_inference_compute_output_duration_us") / requests / 1e3,
            "request_total": triton("nv_inference_request_duration_us") / requests / 1e3,
        },
        "batch_size_histogram": histogram,
        # Mean wall time of one execute() (IPC to the Python-backend stub + ORT), and the share of
        # the wall time the model instance spent in one: near 1 means Triton is the bottleneck.
        "batch_exec_ms": busy_ns / 1e6 / sum(histogram.values()) if histogram else None,
        "ort_instance_busy": busy_ns / 1e9 / wall,
        "server_stage_ms": stages,
        "server_infer_rpc_ms": (
            server("grpc_server_handling_seconds_sum", grpc_method="Infer") / handled * 1e3
            if handled
            else None
        ),
        "cpu_cores_by_process": {k: round(v, 3) for k, v in sorted(cpu.items())},
        "cpu_cores_total": round(sum(cpu.values()), 3),
        "cpu_cores_foreign": round(max(foreign, 0.0), 3),
    }


# -- the gRPC client ------------------------------------------------------------------------------
async def drive(
    stub: inference_pb2_grpc.InferenceServiceStub,
    requests: list[inference_pb2.InferRequest],
    concurrency: int,
    duration_s: float | None,
) -> Run:
    """Exactly `concurrency` calls in flight (closed loop) until the requests or the time run out."""
    position = 0
    latencies: list[float] = []
    errors: list[str] = []
    deadline = None if duration_s is None else time.perf_counter() + duration_s

    async def worker() -> None:
        nonlocal position
        # One event loop thread: the check-and-increment cannot interleave.
        while position < len(requests) and (deadline is None or time.perf_counter() < deadline):
            request = requests[position]
            position += 1
            started = time.perf_counter()
            try:
                await stub.Infer(request, timeout=_CALL_TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                errors.append(f"{error.code().name}: {error.details()}")
                continue
            latencies.append((time.perf_counter() - started) * 1e3)

    cpu_before, started = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    seconds = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{len(errors)} of {position} calls failed, first: {errors[0]}")
    return Run(len(latencies), seconds, (time.process_time() - cpu_before) / seconds, latencies)


@dataclass
class Baseline:
    """What the in-process baseline needs, created once per benchmark."""

    session: ort.InferenceSession
    entry: CatalogEntry
    limits: ImageLimits


@dataclass
class Level:
    """One concurrency level: the best stack run and the best in-process runs next to it."""

    concurrency: int
    stack: Run
    detail: dict[str, Any]
    sequential: Run
    threaded: Run | None

    @property
    def inprocess(self) -> tuple[str, Run]:
        # The denominator is the best in-process figure: sequential, or `concurrency` threads.
        if self.threaded is not None and self.threaded.images_per_s > self.sequential.images_per_s:
            return f"{self.concurrency} threads", self.threaded
        return "sequential", self.sequential


def _best(runs: list[Run]) -> Run:
    return max(runs, key=lambda run: run.images_per_s)


async def bench_levels(
    stack: Stack, baseline: Baseline, payloads: list[bytes], args: argparse.Namespace
) -> list[Level]:
    """Per level, alternately: in-process sequential, in-process threaded, stack; `--repeat`
    times, keeping the best of each. Measuring them side by side (rather than all baselines
    first) exposes both to the same outside load when the machine is shared, and best-of-R
    discards the runs an outside burst slowed down."""
    assert stack.process is not None
    settings = Settings()
    options = [
        ("grpc.max_send_message_length", settings.max_message_bytes),
        ("grpc.max_receive_message_length", settings.max_message_bytes),
    ]
    # One request object per distinct image: building them is not part of what is measured.
    built: dict[int, inference_pb2.InferRequest] = {}
    for data in payloads:
        if id(data) not in built:
            built[id(data)] = inference_pb2.InferRequest(
                model=args.model, image=media_pb2.ImageSource(data=data)
            )
    requests = [built[id(data)] for data in payloads]
    levels = []
    async with grpc.aio.insecure_channel(f"{LOOPBACK}:{stack.ports.grpc}", options=options) as channel:
        stub = inference_pb2_grpc.InferenceServiceStub(channel)
        for concurrency in args.levels:
            sequential: list[Run] = []
            threaded: list[Run] = []
            stack_runs: list[tuple[Run, dict[str, Any]]] = []
            for _ in range(args.repeat):
                # The baseline blocks the event loop on purpose: no call is in flight meanwhile.
                sequential.append(
                    run_inprocess(
                        baseline.session, baseline.entry, baseline.limits, payloads, 1, args.duration_s
                    )
                )
                if concurrency > 1 and not args.no_threaded_baseline:
                    threaded.append(
                        run_inprocess(
                            baseline.session,
                            baseline.entry,
                            baseline.limits,
                            payloads,
                            concurrency,
                            args.duration_s,
                        )
                    )
                # Warm-up at the level's own concurrency: connection, pool threads and the
                # batcher reach their steady state before the counters are read.
                await drive(stub, requests[: max(args.warmup, concurrency)], concurrency, None)
                before = snapshot(stack, stack.process.pid, args.model)
                run = await drive(stub, requests, concurrency, args.duration_s)
                after = snapshot(stack, stack.process.pid, args.model)
                stack_runs.append((run, explain(before, after, args.model)))
                print(
                    f"  c={concurrency}: stack {run.images_per_s:.1f} img/s, in-process sequential "
                    f"{sequential[-1].images_per_s:.1f}"
                    + (f", {concurrency} threads {threaded[-1].images_per_s:.1f}" if threaded else ""),
                    flush=True,
                )
            best_run, detail = max(stack_runs, key=lambda pair: pair[0].images_per_s)
            levels.append(
                Level(concurrency, best_run, detail, _best(sequential), _best(threaded) if threaded else None)
            )
    return levels


# -- report ---------------------------------------------------------------------------------------
def _fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def report(
    args: argparse.Namespace,
    n_distinct: int,
    requests_per_level: int,
    levels: list[Level],
    knobs: dict[str, str],
    overrides: dict[str, Any],
) -> dict[str, Any]:
    rows = []
    for level in levels:
        mode, best = level.inprocess
        run, detail = level.stack, level.detail
        outside = max(detail["cpu_cores_foreign"], best.foreign_cores)
        rows.append(
            {
                "concurrency": level.concurrency,
                "stack_images_per_s": round(run.images_per_s, 2),
                "inprocess_images_per_s": round(best.images_per_s, 2),
                "inprocess_mode": mode,
                "ratio": round(run.images_per_s / best.images_per_s, 3),
                "avg_triton_batch": None if detail["avg_batch"] is None else round(detail["avg_batch"], 2),
                "requests": run.images,
                "seconds": round(run.seconds, 2),
                "latency_ms_p50": _round(run.percentile_ms(50)),
                "latency_ms_p95": _round(run.percentile_ms(95)),
                "client_cpu_cores": round(run.cpu_cores, 3),
                "outside_load_cores": round(outside, 3),
                "noisy": outside > NOISY_CORES,
                "inprocess_sequential": _run_json(level.sequential),
                "inprocess_threaded": None if level.threaded is None else _run_json(level.threaded),
                "detail": _rounded(detail),
            }
        )
    at_8 = next((r for r in rows if r["concurrency"] == 8), None)
    batched = [r for r in rows if r["concurrency"] >= 8]
    targets = {
        "ratio_at_8_ge_0.75": None if at_8 is None else at_8["ratio"] >= TARGET_RATIO_AT_8,
        "avg_batch_gt_1_at_ge_8": (
            all((r["avg_triton_batch"] or 0) > TARGET_MIN_BATCH for r in batched) if batched else None
        ),
    }

    print()
    print(
        f"model {args.model}: {n_distinct} distinct images cycled to {requests_per_level} requests per level, "
        f"best of {args.repeat}, {os.cpu_count()} CPUs, knobs {knobs or 'defaults'}, "
        f"overrides {overrides or 'none'}"
    )
    header = (
        f"{'conc':>4}  {'stack img/s':>11}  {'in-proc img/s':>13}  {'(best of)':<12} {'ratio':>5}  "
        f"{'avg batch':>9}  {'p50 ms':>7}  {'p95 ms':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['concurrency']:>4}  {r['stack_images_per_s']:>11.1f}  {r['inprocess_images_per_s']:>13.1f}  "
            f"{r['inprocess_mode']:<12} {r['ratio']:>5.2f}  {_fmt(r['avg_triton_batch'], '.2f'):>9}  "
            f"{_fmt(r['latency_ms_p50']):>7}  {_fmt(r['latency_ms_p95']):>7}"
            + (f"  (outside load {r['outside_load_cores']:.2f} cores: unreliable)" if r["noisy"] else "")
        )
    print()
    for level, r in zip(levels, rows, strict=True):
        d = r["detail"]
        stages = ", ".join(f"{k} {_fmt(v)}" for k, v in d["server_stage_ms"].items())
        tri = d["triton_ms_per_request"]
        cpu = ", ".join(f"{k} {v:.2f}" for k, v in d["cpu_cores_by_process"].items() if v >= 0.005)
        batches = " ".join(f"{k}:{v}" for k, v in d["batch_size_histogram"].items())
        inproc = (
            f"sequential {level.sequential.images_per_s:.1f} img/s ({level.sequential.cpu_cores:.2f} cores)"
        )
        if level.threaded is not None:
            inproc += (
                f", {level.concurrency} threads {level.threaded.images_per_s:.1f} img/s "
                f"({level.threaded.cpu_cores:.2f} cores)"
            )
        print(
            f"c={r['concurrency']}: server stage ms [{stages}]; Triton queue {tri['queue']:.1f} ms/request, "
            f"batch exec {_fmt(d['batch_exec_ms'])} ms, instances busy {d['ort_instance_busy']:.0%}\n"
            f"      batch sizes [{batches}]\n"
            f"      stack CPU cores [{cpu}] = {d['cpu_cores_total']:.2f}, other load {d['cpu_cores_foreign']:.2f}\n"
            f"      in-process {inproc}"
        )
    print()
    print(
        f"target ratio >= {TARGET_RATIO_AT_8} at c=8: {_verdict(targets['ratio_at_8_ge_0.75'])}; "
        f"avg batch > {TARGET_MIN_BATCH:.0f} at c>=8: {_verdict(targets['avg_batch_gt_1_at_ge_8'])}"
    )
    return {
        "model": args.model,
        "requests_per_level": requests_per_level,
        "distinct_images": n_distinct,
        "warmup_requests": args.warmup,
        "repeat": args.repeat,
        "duration_s": args.duration_s,
        "knobs": knobs,
        "overrides": overrides,
        "levels": rows,
        "targets": targets,
    }


def _verdict(value: bool | None) -> str:
    return "n/a" if value is None else ("met" if value else "MISSED")


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


def _run_json(run: Run) -> dict[str, Any]:
    return {
        "images_per_s": round(run.images_per_s, 2),
        "images": run.images,
        "seconds": round(run.seconds, 2),
        "cpu_cores": round(run.cpu_cores, 3),
        "cpu_cores_foreign": round(run.foreign_cores, 3),
        "latency_ms_p50": _round(run.percentile_ms(50)),
    }


# -- main -----------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.bench_stack", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="open_nsfw")
    parser.add_argument("--images", type=int, default=300, help="requests per measured level (images cycled)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated in-flight call counts")
    parser.add_argument(
        "--duration-s", type=float, default=None, help="cap on each measured phase; unset runs all --images"
    )
    parser.add_argument("--warmup", type=int, default=20, help="unmeasured requests before each level")
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="measure each level this many times, keep the best (shared machines)",
    )
    parser.add_argument(
        "--mirror",
        default=None,
        help="weights mirror (default: $STASH_VISION_MODEL_MIRROR or ../shared/models)",
    )
    parser.add_argument(
        "--ort-threads", type=int, default=None, help="STASH_VISION_ORT_THREADS for the stack"
    )
    parser.add_argument(
        "--decode-threads", type=int, default=None, help="STASH_VISION_DECODE_THREADS for the stack"
    )
    parser.add_argument(
        "--max-queue-delay-us",
        type=int,
        default=None,
        help="what-if: dynamic batcher max_queue_delay_microseconds",
    )
    parser.add_argument(
        "--instances", type=int, default=None, help="what-if: Triton model instances (processes)"
    )
    parser.add_argument(
        "--ort-spinning",
        type=int,
        choices=(0, 1),
        default=None,
        help="what-if: session.intra_op.allow_spinning in the ORT runner (1 is ORT's own default)",
    )
    parser.add_argument("--no-threaded-baseline", action="store_true", help="only the sequential baseline")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory and logs")
    parser.add_argument("--startup-timeout-s", type=float, default=300.0)
    args = parser.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.levels or min(args.levels) < 1 or args.images < 1 or args.repeat < 1:
        parser.error("--concurrency needs positive integers, --images and --repeat positive counts")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_LAUNCH_SERVE]:
        return serve_with_overrides()
    args = parse_args(argv)
    mirror = (
        args.mirror or os.environ.get("STASH_VISION_MODEL_MIRROR") or str(REPO.parent / "shared" / "models")
    )
    entry = Catalog.load().get(args.model)
    images = load_images(shared_dir())
    payloads = cycled(images, args.images)
    knobs = {k: os.environ[k] for k in _INHERITED_KNOBS if k in os.environ}
    if args.ort_threads is not None:
        knobs["STASH_VISION_ORT_THREADS"] = str(args.ort_threads)
    if args.decode_threads is not None:
        knobs["STASH_VISION_DECODE_THREADS"] = str(args.decode_threads)

    work_dir = Path(tempfile.mkdtemp(prefix="stash-vision-bench-"))
    ports = free_ports()
    env = stack_env(work_dir / "data", mirror, args.model, ports, knobs)
    overrides = {
        k: v
        for k, v in {
            "max_queue_delay_us": args.max_queue_delay_us,
            "instances": args.instances,
            "ort_spinning": args.ort_spinning,
        }.items()
        if v is not None
    }
    stack = Stack(env, ports, work_dir / "serve.log", overrides)
    started = time.monotonic()
    try:
        print(f"fetching {args.model} from {mirror} into {work_dir / 'data'}", flush=True)
        fetch_weights(env, args.model, mirror)
        onnx_path = entry.weights_path(work_dir / "data" / "models")
        settings = Settings()
        limits = ImageLimits(settings.max_image_pixels, settings.max_image_file_bytes)

        print(f"starting stash-vision serve (ports {asdict(ports)})", flush=True)
        stack.start(args.startup_timeout_s)
        print(f"  ready after {time.monotonic() - started:.0f} s", flush=True)
        baseline = Baseline(ort_session(onnx_path), entry, limits)
        run_inprocess(baseline.session, entry, limits, payloads[: args.warmup], 1, None)
        levels = asyncio.run(bench_levels(stack, baseline, payloads, args))

        result = report(args, len(images), len(payloads), levels, knobs, overrides)
        result |= {
            "timestamp_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "machine": _machine(),
            "command": " ".join(["python", "-m", "bench.bench_stack", *argv]),
            "wall_s": round(time.monotonic() - started, 1),
        }
        RESULTS_DIR.mkdir(parents=True, exist_ok=True)
        out = RESULTS_DIR / f"{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {out.relative_to(REPO)} ({result['wall_s']:.0f} s in all)")
        return 0
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        code = stack.stop()
        if code not in (None, 0):
            print(f"warning: stash-vision serve exited with {code}:\n{stack.log_tail()}", file=sys.stderr)
        if args.keep:
            print(f"kept {work_dir}")
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def _machine() -> dict[str, Any]:
    return machine(onnxruntime=ort.__version__, grpcio=grpc.__version__)


if __name__ == "__main__":
    raise SystemExit(main())
