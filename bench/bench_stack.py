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
import os
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import onnxruntime as ort

from bench.in_process import ort_session
from bench.toolkit.machine import REPO
from bench.toolkit.metrics import describe_level
from bench.toolkit.phase import Phase, measure
from bench.toolkit.procs import CpuWindow
from bench.toolkit.results import fmt, rounded, run_fields, shared_dir, verdict, write_result
from bench.toolkit.stack import (
    add_stack_options,
    add_what_if_options,
    apply_stack_options,
    failed,
    start_stack,
    stop_stack,
    what_if,
    work_dir,
)
from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.server.media.images import ImageLimits, decode_image
from stash_vision.server.preprocessing import preprocess
from stash_vision.settings import Settings
from stash_vision.v1 import inference_pb2, inference_pb2_grpc, media_pb2
from tests.stack import Stack

# Targets this benchmark checks (see docs/benchmarks.md).
TARGET_RATIO_AT_8 = 0.75
TARGET_MIN_BATCH = 1.0
# Outside load (cores busy with other processes) above which a level's figures are flagged.
NOISY_CORES = 0.2
_CALL_TIMEOUT_S = 120.0


# -- inputs ---------------------------------------------------------------------------------------
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

    window = CpuWindow()
    if threads == 1:
        work()
    else:
        with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="baseline") as pool:
            for future in [pool.submit(work) for _ in range(threads)]:
                future.result()
    cores = window.close()
    return Run(len(latencies), cores.wall_s, cores.own, latencies, cores.outside)


# -- the stack ------------------------------------------------------------------------------------
def stack_detail(phase: Phase) -> dict[str, Any]:
    """What happened during one level (Delta.explain), with the RPC's time in the server and the
    benchmark client among the CPU users."""
    assert phase.delta is not None
    d = phase.detail
    cpu = {**d["stack_cpu_cores_by_role"], "bench_client": d["bench_process_cores"]}
    return {
        "avg_batch": d["avg_triton_batch"],
        "executions": d["triton_executions"],
        "triton_ms_per_request": d["triton_ms_per_request"],
        "batch_size_histogram": d["batch_size_histogram"],
        "batch_exec_ms": d["batch_exec_ms"],
        "ort_instance_busy": d["ort_instance_busy"],
        "server_stage_ms": d["server_stage_ms"],
        "server_infer_rpc_ms": phase.delta.rpc_ms("Infer"),
        "cpu_cores_by_process": {k: round(v, 3) for k, v in sorted(cpu.items())},
        "cpu_cores_total": round(sum(cpu.values()), 3),
        "cpu_cores_foreign": d["foreign_cores"],
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
    async with grpc.aio.insecure_channel(stack.grpc_target, options=options) as channel:
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
                with measure(stack, args.model, memory=False) as phase:
                    run = await drive(stub, requests, concurrency, args.duration_s)
                stack_runs.append((run, stack_detail(phase)))
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
                "detail": rounded(detail),
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
            f"{r['inprocess_mode']:<12} {r['ratio']:>5.2f}  {fmt(r['avg_triton_batch'], '.2f'):>9}  "
            f"{fmt(r['latency_ms_p50']):>7}  {fmt(r['latency_ms_p95']):>7}"
            + (f"  (outside load {r['outside_load_cores']:.2f} cores: unreliable)" if r["noisy"] else "")
        )
    print()
    for level, r in zip(levels, rows, strict=True):
        d = r["detail"]
        stages, batches, cpu = describe_level(d, cpu_key="cpu_cores_by_process")
        tri = d["triton_ms_per_request"]
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
            f"batch exec {fmt(d['batch_exec_ms'])} ms, instances busy {d['ort_instance_busy']:.0%}\n"
            f"      batch sizes [{batches}]\n"
            f"      stack CPU cores [{cpu}] = {d['cpu_cores_total']:.2f}, other load {d['cpu_cores_foreign']:.2f}\n"
            f"      in-process {inproc}"
        )
    print()
    print(
        f"target ratio >= {TARGET_RATIO_AT_8} at c=8: {verdict(targets['ratio_at_8_ge_0.75'])}; "
        f"avg batch > {TARGET_MIN_BATCH:.0f} at c>=8: {verdict(targets['avg_batch_gt_1_at_ge_8'])}"
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


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


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
def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    """The options, and the knobs in effect for the stack (set in this process's environment)."""
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
    add_stack_options(parser, ("ort_threads", "decode_threads"), stack_env=False)
    add_what_if_options(parser, ("max_queue_delay_us", "instances", "ort_spinning"))
    parser.add_argument("--no-threaded-baseline", action="store_true", help="only the sequential baseline")
    parser.add_argument("--startup-timeout-s", type=float, default=300.0)
    args = parser.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.levels or min(args.levels) < 1 or args.images < 1 or args.repeat < 1:
        parser.error("--concurrency needs positive integers, --images and --repeat positive counts")
    # Read before the inherited STASH_VISION_* variables are dropped.
    args.mirror = Path(
        args.mirror or os.environ.get("STASH_VISION_MODEL_MIRROR") or REPO.parent / "shared" / "models"
    )
    return args, apply_stack_options(parser, args)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, knobs = parse_args(argv)
    entry = Catalog.load().get(args.model)
    images = load_images(shared_dir())
    payloads = cycled(images, args.images)
    overrides = what_if(args)
    started = time.monotonic()
    stack: Stack | None = None
    with work_dir("stash-vision-bench-", args.keep) as work:
        try:
            print(
                f"fetching {args.model} from {args.mirror} into {work / 'data'}; starting stash-vision serve",
                flush=True,
            )
            stack = start_stack(work, args.mirror, args.model, overrides, args.startup_timeout_s)
            print(f"  ready after {time.monotonic() - started:.0f} s (gRPC {stack.grpc_target})", flush=True)
            settings = Settings()
            limits = ImageLimits(settings.max_image_pixels, settings.max_image_file_bytes)
            baseline = Baseline(
                ort_session(entry.weights_path(work / "data" / "models"), os.cpu_count() or 1), entry, limits
            )
            run_inprocess(baseline.session, entry, limits, payloads[: args.warmup], 1, None)
            levels = asyncio.run(bench_levels(stack, baseline, payloads, args))

            result = report(args, len(images), len(payloads), levels, knobs, overrides)
            result |= run_fields(
                "bench.bench_stack", argv, started, onnxruntime=ort.__version__, grpcio=grpc.__version__
            )
            out = write_result("", result)
            print(f"wrote {out} ({result['wall_s']:.0f} s in all)")
            return 0
        except (RuntimeError, subprocess.SubprocessError, OSError) as error:
            return failed(error, stack)
        finally:
            stop_stack(stack)


if __name__ == "__main__":
    raise SystemExit(main())
