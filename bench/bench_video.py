"""Video tagging through the AITagger `/process_video/` route against the same decode + inference
in one process, on the skier233 stand-in (TorchScript ResNet-18 @512, 10 tags) that the original
server was measured with.

One run:

1. generates (once; cached in /tmp/stash-vision-bench-video/) 1080p30 H.264 MP4 files of 60 s and
   10 min with PyAV: a scrolling colour gradient with fine grain, a moving box and a patch of fresh
   noise, keyframes every 250 frames (8.3 s), 3 B-frames (pyramid), CABAC, deblocking, 8x8
   transforms (High profile), x264 `ultrafast` search otherwise (generation time is reported,
   never measured);
2. imports the stand-in package into a throw-away data directory (TorchScript -> ONNX, the
   importer a user runs) and derives its precision variants on ../shared/testdata (the stack
   serves what STASH_VISION_PRECISION, default auto, chooses here) and starts `stash-vision serve` serving only that tagger on free loopback
   ports (tests/stack.py);
3. memory: one request each for the 1-minute and the 10-minute file, first after a warm-up (so no
   wider phase has raised the high-water marks yet), while VmRSS of every process of the stack is
   sampled every 0.2 s (Pss every 1 s), as it is during every stack phase;
4. per file (vtest.avi from the shared test data, then the generated 60 s file), side by side:
   in-process = `probe` + `iter_samples` (the server's decoder and its strategy choice) +
   `preprocess` with the imported input contract + ONNX Runtime on the imported ONNX file, batch
   8, intra-op threads = cores, one step after the other; then the stack with 1 request and with
   3 concurrent requests for the same file. Sampled frames/s = samples / wall time;
5. one `/v3/process_video/` request on the 60 s file for the server's own timing split.

Before every measured phase it waits (polling every 20 s, up to 15 minutes) until no other
benchmark runs on the machine, and records the CPU load of everything outside this benchmark's
process tree (/proc/stat minus our processes) next to each figure.

    .venv/bin/python -m bench.bench_video [--repeat 2] [--ort-threads N] [--video-decoders N]

With --repeat R the throughput phases run R times (interleaved) and the best of each is kept.
"3 concurrent beat 1" counts only beyond the measured run-to-run spread (CONCURRENCY_NOISE).

Prints a table next to the original server's figures and writes JSON to
bench/results/video-<UTC timestamp>.json. Method and figures: docs/benchmarks-video.md."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bench.in_process import ort_session
from bench.toolkit.http import httpx
from bench.toolkit.machine import REPO
from bench.toolkit.metrics import describe_level
from bench.toolkit.phase import measure
from bench.toolkit.procs import CpuWindow, memory_mib
from bench.toolkit.quiet import Quiet
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
from bench.toolkit.standin import import_with_variants
from stash_vision.catalog.entries import InputContract
from stash_vision.server.media import video
from stash_vision.server.preprocessing import preprocess
from stash_vision.settings import Settings
from tests.stack import Stack

CACHE_DIR = Path("/tmp/stash-vision-bench-video")
MODEL = "vivid_galaxy_standin"
FRAME_INTERVAL = 2.0
THRESHOLD = 0.3
BATCH = 8
# Pss every 5 samples (1 s): reading it costs the stack's processes CPU.
_PSS_EVERY = 5

# Targets (docs/benchmarks-video.md).
TARGET_RATIO = 0.7
TARGET_RSS_DIFFERENCE_MIB = 100.0
TARGET_SPEEDUP = 2.0
# Run-to-run spread of one phase on this shared machine (measured: ±5 %); a concurrency gain below
# it is not a gain.
CONCURRENCY_NOISE = 0.05

# The original skier233 server with the same package on this kind of 2-core machine
# (shared/models/skier233-standin/README.md): 60 s 1080p H.264, frame_interval 2 (30 samples).
ORIGINAL_SECONDS_PER_VIDEO = 8.1
ORIGINAL_DECODE_SECONDS = 5.8
ORIGINAL_FRAMES_PER_S = 3.7
ORIGINAL_THREE_CONCURRENT_FRAMES_PER_S = 3.7
ORIGINAL: dict[str, float | str] = {
    "seconds_per_60s_1080p_video": ORIGINAL_SECONDS_PER_VIDEO,
    "decode_seconds_of_it": ORIGINAL_DECODE_SECONDS,
    "one_request_frames_per_s": ORIGINAL_FRAMES_PER_S,
    "three_concurrent_frames_per_s": ORIGINAL_THREE_CONCURRENT_FRAMES_PER_S,
    "vtest_avi": "HTTP 400 (its decoder rejects MS-MPEG4 v3)",
}

# What the generated files look like: 1080p30, keyframe every 250 frames, 3 B-frames.
WIDTH, HEIGHT, FPS = 1920, 1080, 30
GOP = 250
B_FRAMES = 3
_GENERATOR_VERSION = 2
_X264_OPTIONS = {
    "preset": "ultrafast",
    "crf": "23",
    # ultrafast turns off what makes a real file cost its decoder something: B-frames (and their
    # pyramid), CABAC, the deblocking filter, 8x8 transforms. Those are turned back on (High
    # profile, as any other preset writes): measured on 20 s of this pattern, CABAC + deblocking
    # double the decoding CPU (53 -> 112 ms per sample), while encoding stays as fast (162 -> 151
    # fps). The encoder's own search stays at ultrafast, which the decoder does not see.
    "x264-params": (
        f"keyint={GOP}:min-keyint={GOP}:scenecut=0:bframes={B_FRAMES}:b-adapt=0:b-pyramid=normal"
        ":cabac=1:deblock=1,0,0:8x8dct=1"
    ),
}

NOISY_CORES = 0.2

_REQUEST_TIMEOUT_S = 3600.0
_GENERATE = "_generate"

Tensor = npt.NDArray[np.float32]


# -- generated inputs -------------------------------------------------------------------------------
def generated_path(seconds: int) -> Path:
    return CACHE_DIR / f"pattern-{HEIGHT}p{FPS}-gop{GOP}-b{B_FRAMES}-{seconds}s-v{_GENERATOR_VERSION}.mp4"


def write_pattern_video(path: Path, seconds: int) -> None:
    """A testsrc2-like moving picture, built directly in YUV 4:2:0 (no colour conversion): a
    diagonal luma gradient with fixed grain scrolling 4 px per frame, chroma waves scrolling with
    it, a box of changing brightness moving across, and a 128x128 patch of fresh noise (detail the
    encoder cannot predict). About 4.4 Mbit/s at crf 23."""
    rng = np.random.default_rng(0)
    period = 1024  # the gradient repeats every 1024 px, so the scroll wraps without a jump
    x = np.arange(WIDTH + period, dtype=np.float32)
    y = np.arange(HEIGHT, dtype=np.float32)[:, None]
    luma = (x[None, :] * 0.25 + y * 0.15) % 256
    luma = np.clip(luma + rng.integers(-5, 5, luma.shape), 0, 255).astype(np.uint8)
    cx = np.arange((WIDTH + period) // 2, dtype=np.float32)
    cy = np.arange(HEIGHT // 2, dtype=np.float32)[:, None]
    u_plane = np.broadcast_to(np.sin(cx * 2 * np.pi / 512) * 60 + 128, (HEIGHT // 2, cx.size)).astype(
        np.uint8
    )
    v_plane = np.broadcast_to(np.cos(cy / 40) * 60 + 128, (HEIGHT // 2, cx.size)).astype(np.uint8)
    picture = np.empty((HEIGHT * 3 // 2, WIDTH), np.uint8)
    quarter = HEIGHT // 4
    with av.open(str(path), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=FPS, options=dict(_X264_OPTIONS))
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.time_base = Fraction(1, FPS)
        for index in range(seconds * FPS):
            offset = (index * 4) % period
            picture[:HEIGHT] = luma[:, offset : offset + WIDTH]
            bx, by = (index * 9) % (WIDTH - 320), (index * 5) % (HEIGHT - 240)
            picture[by : by + 240, bx : bx + 320] = (index * 3) % 256
            picture[60:188, 1500:1628] = rng.integers(0, 256, (128, 128), dtype=np.uint8)
            half = offset // 2
            picture[HEIGHT : HEIGHT + quarter] = u_plane[:, half : half + WIDTH // 2].reshape(quarter, WIDTH)
            picture[HEIGHT + quarter :] = v_plane[:, half : half + WIDTH // 2].reshape(quarter, WIDTH)
            frame = av.VideoFrame.from_ndarray(picture, format="yuv420p")
            frame.pts = index
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def _low_priority() -> None:
    # Generation is not measured; at nice 19 it disturbs other benchmarks on the machine least.
    os.nice(19)


def ensure_video(seconds: int) -> tuple[Path, float | None]:
    """The cached file, generated first if missing (in a nice'd child process). Returns the path
    and the generation time (None when it was cached)."""
    path = generated_path(seconds)
    if path.is_file() and path.stat().st_size > 0:
        return path, None
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.stem}.partial.mp4")
    print(f"generating {path.name} ({seconds} s of 1080p30 H.264; once, then cached)", flush=True)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "bench.bench_video", _GENERATE, str(partial), str(seconds)],
        cwd=REPO,
        check=True,
        preexec_fn=_low_priority,
    )
    partial.rename(path)  # only a complete file gets the cached name
    return path, time.perf_counter() - started


def describe(path: Path) -> dict[str, Any]:
    info = video.probe(path)
    plan = video.sample_plan(info, FRAME_INTERVAL)
    return {
        "file": path.name,
        "duration_s": round(info.duration_s, 2),
        "fps": round(info.fps, 3),
        "size": f"{info.width}x{info.height}",
        "codec": info.codec,
        "container": info.container_format,
        "bytes": path.stat().st_size,
        "mbit_per_s": round(path.stat().st_size * 8 / info.duration_s / 1e6, 2),
        "keyframe_interval_s": None
        if info.keyframe_interval_s is None
        else round(info.keyframe_interval_s, 2),
        "b_frames": info.has_b_frames,
        "samples": plan.expected_samples,
        "step": plan.step,
        "strategy": str(plan.strategy),
        "strategy_reason": plan.reason,
    }


# -- in-process baseline ----------------------------------------------------------------------------
def _cpu(window: CpuWindow) -> dict[str, float]:
    """Our cores (this process and the stack) and everything else's over a phase."""
    cores = window.close()
    return {"our_cores": round(cores.own + cores.tree, 3), "outside_cores": round(cores.outside, 3)}


@dataclass
class InProcessRun:
    file: str
    samples: int
    seconds: float
    probe_s: float
    decode_s: float
    preprocess_s: float
    infer_s: float
    strategy: str
    decoded_frames: int
    cpu: dict[str, float]
    cpu_s_by_step: dict[str, float] = field(default_factory=dict)
    """CPU seconds of this process (all threads: FFmpeg's, ORT's) per step; the steps never
    overlap, so these split the process's CPU exactly."""
    quiet: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.samples / self.seconds

    def as_json(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "samples": self.samples,
            "seconds": round(self.seconds, 2),
            "frames_per_s": round(self.frames_per_s, 2),
            "probe_s": round(self.probe_s, 2),
            "decode_s": round(self.decode_s, 2),
            "preprocess_s": round(self.preprocess_s, 2),
            "infer_s": round(self.infer_s, 2),
            "strategy": self.strategy,
            "decoded_frames": self.decoded_frames,
            "cpu_s_by_step": {k: round(v, 2) for k, v in self.cpu_s_by_step.items()},
            **self.cpu,
            "quiet": self.quiet,
        }


def run_inprocess(session: ort.InferenceSession, contract: InputContract, path: Path) -> InProcessRun:
    """probe + iter_samples (the server's strategy choice) + preprocess + ORT batch 8, one step
    after the other in this thread: the work of one video request, without any RPC or overlap."""
    window = CpuWindow(os.getpid())
    started = time.perf_counter()
    info = video.probe(path)
    probed = time.perf_counter()
    decode_s = preprocess_s = infer_s = 0.0
    cpu = {"probe": time.process_time() - window.own_before, "decode": 0.0, "preprocess": 0.0, "infer": 0.0}
    samples = 0
    pending: list[Tensor] = []

    def flush() -> float:
        t0, c0 = time.perf_counter(), time.process_time()
        session.run(None, {contract.tensor: np.stack(pending)})
        pending.clear()
        cpu["infer"] += time.process_time() - c0
        return time.perf_counter() - t0

    with video.iter_samples(path, FRAME_INTERVAL, info=info) as iterator:
        while True:
            t0, c0 = time.perf_counter(), time.process_time()
            sample = next(iterator, None)
            t1, c1 = time.perf_counter(), time.process_time()
            decode_s += t1 - t0
            cpu["decode"] += c1 - c0
            if sample is None:
                break
            tensor, _ = preprocess(sample.frame, contract)
            pending.append(tensor)
            preprocess_s += time.perf_counter() - t1
            cpu["preprocess"] += time.process_time() - c1
            samples += 1
            if len(pending) == BATCH:
                infer_s += flush()
        if pending:
            infer_s += flush()
    seconds = time.perf_counter() - started
    report = iterator.report
    return InProcessRun(
        file=path.name,
        samples=samples,
        seconds=seconds,
        probe_s=probed - started,
        decode_s=decode_s,
        preprocess_s=preprocess_s,
        infer_s=infer_s,
        strategy=str(report.strategy),
        decoded_frames=report.decoded_frames,
        cpu=_cpu(window),
        cpu_s_by_step=cpu,
    )


# -- the stack --------------------------------------------------------------------------------------
@dataclass
class StackRun:
    label: str
    file: str
    concurrency: int
    samples: int
    seconds: float
    latencies_s: list[float]
    detail: dict[str, Any]
    memory: dict[str, Any]
    cpu: dict[str, float]
    quiet: dict[str, Any] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        return self.samples / self.seconds

    @property
    def seconds_per_video(self) -> float:
        """Mean time from request to answer, per video."""
        return sum(self.latencies_s) / len(self.latencies_s)

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "file": self.file,
            "concurrency": self.concurrency,
            "samples": self.samples,
            "wall_s": round(self.seconds, 2),
            "frames_per_s": round(self.frames_per_s, 2),
            "seconds_per_video": round(self.seconds_per_video, 2),
            "latencies_s": [round(v, 2) for v in self.latencies_s],
            **self.cpu,
            "quiet": self.quiet,
            "detail": rounded(self.detail),
            "memory": self.memory,
        }


def video_body(path: Path) -> dict[str, Any]:
    return {
        "path": str(path),
        "frame_interval": FRAME_INTERVAL,
        "threshold": THRESHOLD,
        "return_confidence": True,
        "vr_video": False,
        "existing_json_data": None,
    }


async def tag_concurrently(client: httpx.AsyncClient, url: str, path: Path, concurrency: int) -> list[float]:
    """`concurrency` identical requests in flight; each answer must be a complete result."""

    async def one() -> float:
        started = time.perf_counter()
        response = await client.post(url, json=video_body(path))
        if response.status_code != 200:
            raise RuntimeError(f"{path.name}: HTTP {response.status_code}: {response.text[:500]}")
        result = response.json()["result"]
        if result.get("partial"):
            raise RuntimeError(f"{path.name}: partial result: {result.get('partial_reason')}")
        return time.perf_counter() - started

    return list(await asyncio.gather(*(one() for _ in range(concurrency))))


async def stack_phase(
    stack: Stack, client: httpx.AsyncClient, label: str, path: Path, samples: int, concurrency: int
) -> StackRun:
    url = f"{stack.http}/process_video/"
    with measure(stack, MODEL, pss_every=_PSS_EVERY) as phase:
        latencies = await tag_concurrently(client, url, path, concurrency)
    detail = phase.detail
    detail.pop("stack_cpu_seconds")
    cpu = {
        "our_cores": round(detail.pop("bench_process_cores") + detail["stack_cpu_cores"], 3),
        "outside_cores": detail.pop("foreign_cores"),
    }
    detail["triton_ms_per_frame"] = detail.pop("triton_ms_per_request")
    # The video path records no per-stage histogram (only the image paths do): None there.
    assert phase.delta is not None and phase.sampler is not None
    detail["server_tagvideo_rpcs"] = int(
        phase.delta.server("grpc_server_handling_seconds_count", grpc_method="TagVideo")
    )
    return StackRun(
        label=label,
        file=path.name,
        concurrency=concurrency,
        samples=samples * concurrency,
        seconds=phase.seconds,
        latencies_s=latencies,
        detail=detail,
        memory={**phase.sampler.summary("MiB"), "sum_rss_mib_by_tenth_of_phase": phase.sampler.tenths_mib()},
        cpu=cpu,
    )


async def v3_metrics(client: httpx.AsyncClient, stack: Stack, path: Path) -> dict[str, Any]:
    """The server's own timing split for one video (the /v3/ route returns it)."""
    response = await client.post(f"{stack.http}/v3/process_video/", json=video_body(path))
    response.raise_for_status()
    metrics: dict[str, Any] = response.json()["metrics"]
    return metrics


@dataclass
class Results:
    inprocess: list[InProcessRun] = field(default_factory=list)
    stack: list[StackRun] = field(default_factory=list)
    memory: dict[str, StackRun] = field(default_factory=dict)
    memory_before_mib: dict[str, dict[str, float]] = field(default_factory=dict)
    v3_metrics: dict[str, Any] = field(default_factory=dict)


async def bench(
    stack: Stack,
    session: ort.InferenceSession,
    contract: InputContract,
    files: dict[str, Path],
    samples: dict[str, int],
    repeat: int,
    quiet: Quiet,
) -> Results:
    results = Results()
    timeout = httpx.Timeout(_REQUEST_TIMEOUT_S, connect=10.0)
    async with httpx.AsyncClient(timeout=timeout) as client:
        # Warm-up: connections, pool threads, ORT's first batched runs in the stub.
        print("warm-up: 1 request on cup.mp4 and 1 on vtest.avi (not measured)", flush=True)
        await tag_concurrently(client, f"{stack.http}/process_video/", files["warmup"], 1)
        await tag_concurrently(client, f"{stack.http}/process_video/", files["vtest"], 1)

        # Memory first: no earlier, wider phase (3 videos at once) has raised the high-water marks.
        for key, label in (("1min", "1-min 1080p"), ("10min", "10-min 1080p")):
            waited = quiet.wait(f"memory {label}")
            results.memory_before_mib[key] = memory_mib(stack.process.pid)
            run = await stack_phase(stack, client, f"memory {label}", files[key], samples[key], 1)
            run.quiet = waited
            results.memory[key] = run
            print(
                f"  {label}: {run.seconds:.1f} s, {run.frames_per_s:.2f} frames/s, peak RSS sum "
                f"{run.memory['peak_sum_rss_mib']:.0f} MiB (Pss {run.memory['peak_sum_pss_mib']:.0f}), "
                f"outside load {run.cpu['outside_cores']:.2f} cores",
                flush=True,
            )

        for _ in range(repeat):
            for key in ("vtest", "1min"):
                path = files[key]
                waited = quiet.wait(f"in-process {path.name}")
                run_in = run_inprocess(session, contract, path)
                run_in.quiet = waited
                results.inprocess.append(run_in)
                print(
                    f"  in-process {path.name}: {run_in.seconds:.2f} s, {run_in.frames_per_s:.2f} frames/s "
                    f"(probe {run_in.probe_s:.2f}, decode {run_in.decode_s:.2f}, preprocess "
                    f"{run_in.preprocess_s:.2f}, ORT {run_in.infer_s:.2f} s; {run_in.strategy}), "
                    f"outside load {run_in.cpu['outside_cores']:.2f}",
                    flush=True,
                )
                for concurrency in (1, 3):
                    waited = quiet.wait(f"stack {path.name} x{concurrency}")
                    run = await stack_phase(stack, client, key, path, samples[key], concurrency)
                    run.quiet = waited
                    results.stack.append(run)
                    d = run.detail
                    print(
                        f"  stack {path.name} x{concurrency}: {run.seconds:.2f} s, {run.frames_per_s:.2f} "
                        f"frames/s, {run.seconds_per_video:.2f} s/video, avg Triton batch "
                        f"{fmt(d['avg_triton_batch'], '.2f')}, stack CPU {d['stack_cpu_cores']:.2f} cores, "
                        f"outside load {run.cpu['outside_cores']:.2f}",
                        flush=True,
                    )
        results.v3_metrics = await v3_metrics(client, stack, files["1min"])
    return results


# -- report -----------------------------------------------------------------------------------------
def _best_stack(results: Results, key: str, concurrency: int) -> StackRun:
    runs = [r for r in results.stack if r.label == key and r.concurrency == concurrency]
    return max(runs, key=lambda r: r.frames_per_s)


def _best_inprocess(results: Results, name: str) -> InProcessRun:
    return max((r for r in results.inprocess if r.file == name), key=lambda r: r.frames_per_s)


def report(results: Results, files: dict[str, Path]) -> dict[str, Any]:
    rows: list[dict[str, Any]] = []
    print()
    header = (
        f"{'what':<40} {'s/video':>7} {'frames/s':>8} {'vs in-proc':>10} {'stack CPU':>9} "
        f"{'outside':>7}   original server"
    )
    print(header)
    print("-" * (len(header) + 12))
    for key, label in (("vtest", "vtest.avi (79.5 s, 768x576)"), ("1min", "60 s 1080p H.264")):
        base = _best_inprocess(results, files[key].name)
        original = {
            ("vtest", 0): "-",
            ("vtest", 1): "HTTP 400",
            ("vtest", 3): "HTTP 400",
            ("1min", 0): f"{ORIGINAL_DECODE_SECONDS} s decoding",
            (
                "1min",
                1,
            ): f"{ORIGINAL_SECONDS_PER_VIDEO} s, {ORIGINAL_FRAMES_PER_S} fr/s",
            ("1min", 3): f"{ORIGINAL_THREE_CONCURRENT_FRAMES_PER_S} fr/s (no gain)",
        }
        print(
            f"{label + ' in-process':<40} {base.seconds:>7.2f} {base.frames_per_s:>8.2f} {'1.00':>10} "
            f"{base.cpu['our_cores']:>9.2f} {base.cpu['outside_cores']:>7.2f}   {original[(key, 0)]}"
        )
        for concurrency in (1, 3):
            run = _best_stack(results, key, concurrency)
            ratio = run.frames_per_s / base.frames_per_s
            noisy = max(run.cpu["outside_cores"], base.cpu["outside_cores"]) > NOISY_CORES
            name = f"{label} stack x{concurrency}"
            print(
                f"{name:<40} {run.seconds_per_video:>7.2f} {run.frames_per_s:>8.2f} {ratio:>10.2f} "
                f"{run.detail['stack_cpu_cores']:>9.2f} {run.cpu['outside_cores']:>7.2f}   "
                f"{original[(key, concurrency)]}" + ("  (noisy)" if noisy else "")
            )
            rows.append(
                {
                    "file": files[key].name,
                    "concurrency": concurrency,
                    "seconds_per_video": round(run.seconds_per_video, 2),
                    "wall_s": round(run.seconds, 2),
                    "frames_per_s": round(run.frames_per_s, 2),
                    "inprocess_frames_per_s": round(base.frames_per_s, 2),
                    "ratio": round(ratio, 3),
                    "outside_cores": max(run.cpu["outside_cores"], base.cpu["outside_cores"]),
                    "noisy": noisy,
                }
            )
    print()
    for key in ("vtest", "1min"):
        base = _best_inprocess(results, files[key].name)
        print(
            f"in-process {files[key].name}: probe {base.probe_s:.2f} s + decode {base.decode_s:.2f} s "
            f"({base.strategy}, {base.decoded_frames} frames decoded) + preprocess {base.preprocess_s:.2f} s "
            f"+ ORT {base.infer_s:.2f} s for {base.samples} samples; CPU ms per sample: "
            + ", ".join(f"{k} {v / base.samples * 1e3:.0f}" for k, v in base.cpu_s_by_step.items())
        )
        for concurrency in (1, 3):
            d = _best_stack(results, key, concurrency).detail
            _, batches, cpu = describe_level(d)
            q = d["triton_ms_per_frame"]
            print(
                f"  stack x{concurrency}: CPU cores [{cpu}]; Triton batches [{batches}], execute "
                f"{fmt(d['batch_exec_ms'])} ms, instance busy {d['ort_instance_busy']:.0%}, queue "
                f"{q['queue']:.0f} ms/frame"
            )
    m1, m10 = results.memory["1min"], results.memory["10min"]
    peak1, peak10 = m1.memory["peak_sum_rss_mib"], m10.memory["peak_sum_rss_mib"]
    difference = peak10 - peak1
    print()
    print(
        f"memory: peak RSS sum {peak1:.0f} MiB tagging the 1-min file ({m1.seconds:.1f} s), {peak10:.0f} MiB "
        f"tagging the 10-min file ({m10.seconds:.1f} s, {m10.frames_per_s:.2f} frames/s): difference "
        f"{difference:+.0f} MiB (Pss {m1.memory['peak_sum_pss_mib']:.0f} -> {m10.memory['peak_sum_pss_mib']:.0f})"
    )
    print(f"  10-min RSS sum by tenth of the run (MiB): {m10.memory['sum_rss_mib_by_tenth_of_phase']}")

    one = _best_stack(results, "1min", 1)
    three = _best_stack(results, "1min", 3)
    speedup = one.frames_per_s / ORIGINAL_FRAMES_PER_S
    ratios = [r["ratio"] for r in rows]
    cores = os.cpu_count() or 1
    gains: dict[str, float] = {}
    headroom: dict[str, float] = {}
    for key in ("vtest", "1min"):
        single = _best_stack(results, key, 1)
        gains[key] = _best_stack(results, key, 3).frames_per_s / single.frames_per_s - 1
        # The most 3 videos could gain if they kept every core busy at the same CPU per frame.
        headroom[key] = cores / single.detail["stack_cpu_cores"] - 1
    targets = {
        "ratio_ge_0.7_everywhere": min(ratios) >= TARGET_RATIO,
        "rss_difference_lt_100_mib": abs(difference) < TARGET_RSS_DIFFERENCE_MIB,
        "speedup_ge_2x_on_60s_1080p": speedup >= TARGET_SPEEDUP,
        # Beyond run-to-run noise: 3 concurrent must beat 1 by more than CONCURRENCY_NOISE.
        "three_concurrent_beat_one_on_60s_1080p": gains["1min"] > CONCURRENCY_NOISE,
        "three_concurrent_beat_one_on_vtest": gains["vtest"] > CONCURRENCY_NOISE,
    }
    print()
    print(
        f"60 s 1080p, 1 request: {one.frames_per_s:.2f} frames/s = {speedup:.2f}x the original's "
        f"{ORIGINAL_FRAMES_PER_S} (target {TARGET_SPEEDUP:.0f}x): "
        f"{verdict(targets['speedup_ge_2x_on_60s_1080p'])}; {one.seconds_per_video:.2f} s per video "
        f"(original {ORIGINAL_SECONDS_PER_VIDEO} s)"
    )
    print(
        f"3 concurrent vs 1 on 60 s 1080p: {three.frames_per_s:.2f} vs {one.frames_per_s:.2f} frames/s "
        f"(stack CPU {three.detail['stack_cpu_cores']:.2f} vs {one.detail['stack_cpu_cores']:.2f} cores): "
        f"{gains['1min']:+.1%} (target > +{CONCURRENCY_NOISE:.0%}, the noise; at most "
        f"{headroom['1min']:+.0%} possible with every core busy): "
        f"{verdict(targets['three_concurrent_beat_one_on_60s_1080p'])}; vtest.avi {gains['vtest']:+.1%} "
        f"(at most {headroom['vtest']:+.0%}): {verdict(targets['three_concurrent_beat_one_on_vtest'])}"
    )
    print(
        f"stack / in-process >= {TARGET_RATIO} (min {min(ratios):.2f}): "
        f"{verdict(targets['ratio_ge_0.7_everywhere'])}; "
        f"peak RSS difference < {TARGET_RSS_DIFFERENCE_MIB:.0f} MiB ({difference:+.0f}): "
        f"{verdict(targets['rss_difference_lt_100_mib'])}"
    )
    if results.v3_metrics:
        print(f"server's own split for one 60 s 1080p video (/v3/ metrics): {results.v3_metrics}")
    return {
        "rows": rows,
        "targets": targets,
        "speedup_vs_original_one_request": round(speedup, 2),
        "three_vs_one_gain": {k: round(v, 3) for k, v in gains.items()},
        "three_vs_one_headroom": {k: round(v, 3) for k, v in headroom.items()},
        "memory": {
            "peak_sum_rss_mib_1min": peak1,
            "peak_sum_rss_mib_10min": peak10,
            "difference_mib": round(difference, 1),
            "rss_before_mib_by_process": results.memory_before_mib,
            "runs": {k: v.as_json() for k, v in results.memory.items()},
        },
        "inprocess_runs": [r.as_json() for r in results.inprocess],
        "stack_runs": [r.as_json() for r in results.stack],
        "server_v3_metrics_60s": results.v3_metrics,
        "original": ORIGINAL,
    }


# -- main -------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    """The options, and the knobs in effect for the stack (set in this process's environment)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_video", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure the throughput phases this many times, keep the best"
    )
    parser.add_argument(
        "--max-outside-cores",
        type=float,
        default=0.5,
        help="besides waiting for other benchmarks, wait (up to 3 min) while outside load exceeds this",
    )
    add_stack_options(parser, ("ort_threads", "decode_threads", "video_decoders"))
    add_what_if_options(parser, ("instances",))
    parser.add_argument(
        "--package",
        type=Path,
        default=None,
        help="the stand-in's YAML (default: <shared>/models/skier233-standin/vivid_galaxy_standin.yaml)",
    )
    parser.add_argument(
        "--no-wait", action="store_true", help="do not wait for a quiet machine (smoke tests only)"
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat needs a positive count")
    return args, apply_stack_options(parser, args)


def inputs(shared: Path) -> tuple[dict[str, Path], dict[str, float | None], dict[str, dict[str, Any]]]:
    """The files (generated ones first generated), their generation times and descriptions."""
    generation: dict[str, float | None] = {}
    files = {
        "vtest": shared / "testdata" / "video" / "vtest.avi",
        "warmup": shared / "testdata" / "video" / "cup.mp4",
    }
    for key, seconds in (("1min", 60), ("10min", 600)):
        files[key], generation[key] = ensure_video(seconds)
    described = {key: describe(path) for key, path in files.items()}
    for key in ("vtest", "1min", "10min"):
        d = described[key]
        print(
            f"{d['file']}: {d['duration_s']} s {d['size']} {d['codec']} {d['mbit_per_s']} Mbit/s, keyframes every "
            f"{d['keyframe_interval_s']} s, B-frames {d['b_frames']}: {d['samples']} samples, {d['strategy']}",
            flush=True,
        )
    return files, generation, described


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == [_GENERATE]:
        write_pattern_video(Path(argv[1]), int(argv[2]))
        return 0
    args, knobs = parse_args(argv)
    quiet = Quiet(args.max_outside_cores, args.no_wait)
    shared = shared_dir()
    package = args.package or shared / "models" / "skier233-standin" / f"{MODEL}.yaml"
    cores = os.cpu_count() or 1

    started = time.monotonic()
    files, generation, described = inputs(shared)
    samples = {key: int(d["samples"]) for key, d in described.items()}
    measuring_from = time.monotonic()
    settings = Settings()  # what the stack will resolve from the same environment
    stack: Stack | None = None
    with work_dir("stash-vision-video-", args.keep) as work:
        data_dir = work / "data"
        try:
            # Not measured, but the import (TorchScript -> ONNX) and the start-up load the cores: wait.
            setup_quiet = quiet.wait("setup")
            print(f"importing {package} into {data_dir}", flush=True)
            t0 = time.perf_counter()
            entry = import_with_variants(package, data_dir, shared)
            import_s = time.perf_counter() - t0
            session = ort_session(entry.weights_path(data_dir / "models"), cores)
            warm = np.zeros((BATCH, 3, entry.input.height, entry.input.width), np.float32)
            session.run(None, {entry.input.tensor: warm})
            session.run(None, {entry.input.tensor: warm[:1]})
            print(
                f"starting stash-vision serve with {MODEL} only (knobs {knobs or 'defaults'}: ORT threads "
                f"{settings.effective_ort_threads}, decode threads {settings.effective_decode_threads}, "
                f"video decoders {settings.effective_video_decoders}, Triton instances {args.instances or 'default'})",
                flush=True,
            )
            t0 = time.perf_counter()
            stack = start_stack(work, shared / "models", MODEL, what_if(args), reuse_results=False)
            startup_s = time.perf_counter() - t0
            print(f"  ready after {startup_s:.0f} s", flush=True)
            results = asyncio.run(bench(stack, session, entry.input, files, samples, args.repeat, quiet))
            result = report(results, files)
            result |= {
                "model": MODEL,
                "frame_interval": FRAME_INTERVAL,
                "files": described,
                "generation_s": {k: None if v is None else round(v, 1) for k, v in generation.items()},
                "import_s": round(import_s, 1),
                "stack_startup_s": round(startup_s, 1),
                "knobs": knobs,
                "triton_instances": args.instances,
                "no_wait": args.no_wait,
                "setup_quiet": setup_quiet,
                "lifetime_peak_rss_mib_by_process": memory_mib(stack.process.pid, "VmHWM"),
                "stack_settings": {
                    "ort_threads": settings.effective_ort_threads,
                    "decode_threads": settings.effective_decode_threads,
                    "video_decoders": settings.effective_video_decoders,
                },
                "wall_s_excluding_generation": round(time.monotonic() - measuring_from, 1),
                "waited_for_quiet_s": round(sum(quiet.waits), 1),
                "active_s": round(time.monotonic() - measuring_from - sum(quiet.waits), 1),
                **run_fields(
                    "bench.bench_video", argv, started, onnxruntime=ort.__version__, pyav=av.__version__
                ),
            }
            out = write_result("video-", result)
            print(
                f"wrote {out} ({result['active_s']:.0f} s of work, "
                f"{result['waited_for_quiet_s']:.0f} s waiting for a quiet machine, generation excluded)"
            )
            return 0
        except (RuntimeError, OSError, httpx.HTTPError, subprocess.SubprocessError) as error:
            return failed(error, stack)
        finally:
            stop_stack(stack)


if __name__ == "__main__":
    raise SystemExit(main())
