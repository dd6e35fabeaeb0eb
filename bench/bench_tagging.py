"""Image tagging through the AITagger HTTP route against in-process inference, on the skier233
stand-in (TorchScript ResNet-18 @512, 10 tags) that the original server was measured with.

One run:

1. imports the stand-in package into a throw-away data directory (TorchScript -> ONNX, the
   importer a user runs), derives its precision variants on ../shared/testdata (so the stack
   serves what STASH_VISION_PRECISION, default auto, chooses here; `--stack-env
   STASH_VISION_PRECISION=fp32` for fp32) and cycles the shared test photos to `--images` paths;
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
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort

from bench.in_process import ort_session
from bench.toolkit.http import httpx
from bench.toolkit.metrics import describe_level
from bench.toolkit.phase import measure
from bench.toolkit.procs import KIB_PER_MIB, Cores, CpuWindow, memory_mib, outside_cores
from bench.toolkit.results import fmt, rounded, run_fields, shared_dir, write_result
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
from stash_vision.catalog.entries import CatalogEntry
from stash_vision.server.media.images import ImageLimits, decode_image
from stash_vision.server.preprocessing import preprocess
from stash_vision.settings import Settings
from tests.stack import Stack

MODEL = "vivid_galaxy_standin"
BATCH = 8

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
_REQUEST_TIMEOUT_S = 3600.0

Tensor = npt.NDArray[np.float32]


# -- inputs ---------------------------------------------------------------------------------------
def image_paths(shared: Path, count: int) -> tuple[list[Path], int]:
    """`count` real photos (60 KB to 2.4 MB, mixed sizes) cycled; and how many are distinct."""
    files = sorted((shared / "testdata" / "faces" / "deepface").glob("*.jpg"))
    files += sorted(p for p in (shared / "testdata" / "images").iterdir() if p.is_file())
    if not files:
        raise SystemExit(f"no test images under {shared / 'testdata'} (set STASH_VISION_SHARED_DIR)")
    return [files[i % len(files)] for i in range(count)], len(files)


def _cpu(cores: Cores) -> dict[str, float]:
    return {"bench_process_cores": round(cores.own, 3), "foreign_cores": round(cores.outside, 3)}


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
        return tensor

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
    return InProcess(len(paths), seconds, prepare_s, infer_s, _cpu(window.close())), tensors


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
    session = ort_session(onnx_path, threads, spinning=False)
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
    cpu = _cpu(window.close())
    seconds = time.perf_counter() - window.started
    return (
        InProcess(len(paths), seconds, 0.0, ort_s, cpu),
        InProcess(len(paths), seconds, 0.0, torch_s, cpu),
        difference,
    )


# -- the stack --------------------------------------------------------------------------------------
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
            idle_rss = memory_mib(stack.process.pid)
            with measure(stack, MODEL) as phase:
                latencies = await post_all(client, url, names, concurrency)
            seconds, detail = phase.seconds, phase.detail
            stack_cpu_s = detail.pop("stack_cpu_seconds")
            cpu = {key: detail.pop(key) for key in ("bench_process_cores", "foreign_cores")}
            # Robust to outside load on a shared machine: images per CPU-second the stack used.
            detail["images_per_stack_cpu_second"] = len(names) * concurrency / stack_cpu_s
            assert phase.sampler is not None
            memory = {
                "rss_before_mib_by_process": idle_rss,
                "rss_before_sum_gib": round(sum(idle_rss.values()) / KIB_PER_MIB, 3),
                **phase.sampler.summary("GiB"),
            }
            level = Level(concurrency, len(names) * concurrency, seconds, latencies, detail, memory, cpu)
            out.append(level)
            print(
                f"  {concurrency} x {len(names)}: {level.images_per_s:.2f} img/s in {seconds:.1f} s, "
                f"avg Triton batch {fmt(detail['avg_triton_batch'], '.2f')}, peak RSS sum "
                f"{memory['peak_sum_rss_gib']:.2f} GiB, foreign load {cpu['foreign_cores']:.2f} cores",
                flush=True,
            )
    return out


# -- report -----------------------------------------------------------------------------------------
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
            f"{what:<46} {rate:>6.2f} {fmt(ratio, '.2f'):>8} {fmt(vs_ort, '.2f'):>9} "
            f"{fmt(batch, '.1f'):>5} {fmt(rss_gib, '.2f'):>8} {fmt(foreign, '.2f'):>7} {original:>10}"
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
                "detail": rounded(level.detail),
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
        stages, batches, cpu = describe_level(d)
        rss = ", ".join(
            f"{k} {v:.0f} (anon {m['peak_rss_anon_mib_by_process'].get(k, 0):.0f}, "
            f"shm {m['peak_rss_shmem_mib_by_process'].get(k, 0):.0f})"
            for k, v in m["peak_rss_mib_by_process"].items()
        )
        print(
            f"{level.concurrency} x {level.images // level.concurrency}: avg Triton batch "
            f"{fmt(d['avg_triton_batch'], '.2f')} [{batches}], batch exec {fmt(d['batch_exec_ms'])} ms, "
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


# -- main -------------------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, dict[str, str]]:
    """The options, and the knobs in effect for the stack (set in this process's environment)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_tagging", description=(__doc__ or "").split("\n\n")[0]
    )
    parser.add_argument("--images", type=int, default=320, help="paths per request (the plugin sends 320)")
    parser.add_argument("--concurrency", default="1,4", help="comma-separated numbers of requests in flight")
    add_stack_options(parser, ("ort_threads", "decode_threads"))
    add_what_if_options(
        parser, ("max_batch", "instances", "ort_arena", "per_request_in_flight", "global_in_flight")
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
    args = parser.parse_args(argv)
    args.levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    if not args.levels or min(args.levels) < 1 or args.images < 1:
        parser.error("--concurrency needs positive integers, --images a positive count")
    return args, apply_stack_options(parser, args)


def inprocess_baselines(
    args: argparse.Namespace, onnx_path: Path, pt_path: Path, entry: CatalogEntry, paths: list[Path]
) -> tuple[InProcess, InProcess | None, InProcess | None, float | None]:
    """The end-to-end ORT run, then ORT and TorchScript alternately (unless --no-torch)."""
    cores = os.cpu_count() or 1
    print(f"in-process ORT on {len(paths)} paths (batch {BATCH}, {cores} threads)", flush=True)
    first, tensors = run_ort(onnx_path, entry, paths, cores)
    print(
        f"  {first.images_per_s:.2f} img/s end to end ({first.infer_images_per_s:.2f} in ORT), "
        f"foreign load {first.cpu['foreign_cores']:.2f} cores",
        flush=True,
    )
    if args.no_torch:
        return first, None, None, None
    torch_paths = paths[: args.torch_images] if args.torch_images else paths
    print(
        f"in-process ORT and TorchScript alternately on the same {len(torch_paths)} tensors ({cores} threads)",
        flush=True,
    )
    ort_only, torch_run, torch_diff = run_ort_vs_torch(onnx_path, pt_path, torch_paths, tensors, cores)
    print(
        f"  ORT {ort_only.infer_images_per_s:.2f} img/s, TorchScript {torch_run.infer_images_per_s:.2f} img/s",
        flush=True,
    )
    return first, ort_only, torch_run, torch_diff


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args, knobs = parse_args(argv)
    overrides = what_if(args)
    shared = shared_dir()
    package = args.package or shared / "models" / "skier233-standin" / f"{MODEL}.yaml"
    paths, distinct = image_paths(shared, args.images)
    cores = os.cpu_count() or 1
    # What the stack will use (its defaults change between commits).
    settings = Settings()
    effective = {
        "ort_threads": settings.effective_ort_threads,
        "decode_threads": settings.effective_decode_threads,
        **{
            k: overrides.get(k, "default") for k in ("per_request_in_flight", "global_in_flight", "max_batch")
        },
    }

    started = time.monotonic()
    stack: Stack | None = None
    with work_dir("stash-vision-bench-tagging-", args.keep) as work:
        data_dir = work / "data"
        try:
            background = outside_cores()
            print(f"background load before the run: {background:.2f} of {cores} cores", flush=True)
            print(f"importing {package} into {data_dir}", flush=True)
            entry = import_with_variants(package, data_dir, shared)
            onnx_path = entry.weights_path(data_dir / "models")
            print(
                f"  {entry.name}: {entry.input.width}x{entry.input.height}, {entry.input.interpolation}",
                flush=True,
            )
            ort_runs: list[InProcess] = []
            ort_only = torch_run = None
            torch_diff = None
            if not args.no_inprocess:
                pt_path = package.with_name(f"{MODEL}.pt")
                first, ort_only, torch_run, torch_diff = inprocess_baselines(
                    args, onnx_path, pt_path, entry, paths
                )
                ort_runs.append(first)

            print(
                f"starting stash-vision serve with {MODEL} only ({effective}, knobs {knobs or 'defaults'}, "
                f"overrides {overrides or 'none'})",
                flush=True,
            )
            stack = start_stack(work, shared / "models", MODEL, overrides, reuse_results=False)
            print(f"  ready after {time.monotonic() - started:.0f} s since the start", flush=True)
            levels = asyncio.run(bench_stack(stack, paths, args.levels))
            peaks = memory_mib(stack.process.pid, "VmHWM")
            stack.stop()

            if ort_runs and ort_runs[0].cpu["foreign_cores"] >= BASELINE_RETRY_FOREIGN_CORES:
                # Outside load slowed the first baseline: measure it again now the stack is down,
                # and keep the faster of the two.
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
                "background_cores_before": background,
                "lifetime_peak_rss_mib_by_process": peaks,
                **run_fields("bench.bench_tagging", argv, started, onnxruntime=ort.__version__),
            }
            out = write_result("tagging-", result)
            print(f"wrote {out} ({result['wall_s']:.0f} s in all)")
            return 0
        except (RuntimeError, OSError, httpx.HTTPError) as error:
            return failed(error, stack)
        finally:
            stop_stack(stack)


if __name__ == "__main__":
    raise SystemExit(main())
