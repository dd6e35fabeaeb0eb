"""fp32 against every reduced-precision variant, per shipped model and the imported skier233
stand-in, on this machine: the accuracy guard's agreement figures and images/s in-process, and
through the stack what `STASH_VISION_PRECISION=auto` serves against fp32.

One run:

1. fetches the shipped models from the mirror and imports the stand-in into a throw-away data
   directory, then derives each model's variants as `stash-vision models precision` does, with
   ../shared/testdata as the calibration set (71 real images; faces for the embedders);
2. in-process: ONNX Runtime sessions of fp32 and of every variant built (refused ones included,
   so their speed is known), `--threads` intra-op threads, batches of `--batch` calibration
   inputs; `--rounds` rounds, each running every file once in turn (alternating, so outside load
   on a shared machine hits all alike); images/s = median over the rounds;
3. `--stack`: for the stand-in, `stash-vision serve` with precision fp32 and then auto, each
   POSTed /process_images/ with `--images` real paths (bench_tagging's request), unless auto
   serves fp32 here, which is then said instead of measured twice.

    .venv/bin/python -m bench.bench_precision [--models open_nsfw,...] [--rounds 5] [--stack]

Prints a table and writes JSON to bench/results/precision-<UTC timestamp>.json; figures:
docs/precision.md."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.toolkit.http import httpx
from bench.toolkit.results import rounded, run_fields, shared_dir, write_result
from bench.toolkit.stack import failed, start_stack, work_dir
from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.catalog.fetcher import fetch
from stash_vision.catalog.importers import import_skier233
from stash_vision.precision.calibration import calibration_images, role_for
from stash_vision.precision.cpu_features import cpu_flags
from stash_vision.precision.manifest import precision_dir
from stash_vision.precision.selection import Precision, choose
from stash_vision.precision.variants import derive_variants, measure_speeds
from tests.stack import Stack

STANDIN = "vivid_galaxy_standin"
SHIPPED = ["open_nsfw", "nudenet_320n", "scrfd_500m", "yunet", "mobilefacenet"]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_precision", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--models", default=",".join([*SHIPPED, STANDIN]), help="comma-separated")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8, help="inputs per ONNX Runtime call (batching models)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ORT intra-op threads")
    parser.add_argument("--stack", action="store_true", help="also through the stack (the stand-in)")
    parser.add_argument("--images", type=int, default=160, help="paths per request through the stack")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


def prepare(names: list[str], data_dir: Path, shared: Path) -> dict[str, CatalogEntry]:
    models_dir = data_dir / "models"
    if STANDIN in names:
        import_skier233(
            shared / "models" / "skier233-standin" / f"{STANDIN}.yaml",
            data_dir / "model_repository",
            models_dir,
        )
    catalog = Catalog.load(extra=[data_dir / "model_repository"])
    entries = {name: catalog.get(name) for name in catalog.names()}
    # The embedders are calibrated on faces the default profile's detector finds.
    for name in {*names, "scrfd_500m"} - {STANDIN}:
        fetch(entries[name], models_dir, str(shared / "models"), allow_upstream=False)
    return entries


async def images_per_s(stack: Stack, paths: list[Path]) -> float:
    from bench.bench_tagging import post_all

    url = f"{stack.http}/process_images/"
    async with httpx.AsyncClient(timeout=httpx.Timeout(3600.0, connect=10.0)) as client:
        await post_all(client, url, [str(p) for p in paths[:16]], 1)  # warm-up
        started = time.perf_counter()
        await post_all(client, url, [str(p) for p in paths], 1)
        return len(paths) / (time.perf_counter() - started)


def through_the_stack(
    work: Path, shared: Path, entry: CatalogEntry, args: argparse.Namespace
) -> dict[str, Any]:
    from bench.bench_tagging import image_paths

    served = choose(entry, work / "data" / "models", Precision.AUTO)
    result: dict[str, Any] = {"auto_serves": served.variant, "why": served.reason}
    paths, _ = image_paths(shared, args.images)
    settings = ["fp32"] if served.variant == "fp32" else ["fp32", "auto"]
    for precision in settings:
        os.environ["STASH_VISION_PRECISION"] = precision
        stack = start_stack(work, shared / "models", entry.name, reuse_results=False)
        try:
            result[f"{precision}_images_per_s"] = asyncio.run(images_per_s(stack, paths))
        finally:
            stack.stop()
        print(
            f"  stack, precision {precision}: {result[f'{precision}_images_per_s']:.2f} images/s", flush=True
        )
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    names = [n for n in args.models.split(",") if n]
    shared = shared_dir()
    started = time.monotonic()
    flags = cpu_flags()
    rows: dict[str, Any] = {}
    with work_dir("stash-vision-bench-precision-", args.keep) as work:
        data_dir = work / "data"
        models_dir = data_dir / "models"
        try:
            entries = prepare(names, data_dir, shared)
            images = calibration_images(shared / "testdata")
            for name in names:
                entry = entries[name]
                print(f"{name}: deriving and judging variants", flush=True)
                manifest = derive_variants(
                    entry, models_dir, shared / "testdata", entries, args.threads, force=True
                )
                feeds = role_for(entry, images, models_dir, entries).feeds
                speeds = measure_speeds(
                    entry,
                    entry.weights_path(models_dir),
                    precision_dir(entry, models_dir),
                    manifest,
                    feeds,
                    args.threads,
                    rounds=args.rounds,
                    batch_size=args.batch,
                )
                rows[name] = {
                    "inputs": len(feeds),
                    "fp32_images_per_s": speeds["fp32"],
                    "auto_serves": choose(entry, models_dir, Precision.AUTO, flags=flags).variant,
                    "variants": {
                        v.name: {
                            "target": v.target.value,
                            "passed": v.passed,
                            "reason": v.reason,
                            "agreement": v.agreement,
                            "images_per_s": speeds.get(v.name),
                            "speedup": speeds[v.name] / speeds["fp32"] if v.name in speeds else None,
                        }
                        for v in manifest.variants
                    },
                }
                for v in manifest.variants:
                    row = rows[name]["variants"][v.name]
                    speed = f"{row['speedup']:.2f}x fp32" if row["speedup"] else "not timed on this CPU"
                    verdict = "passed" if v.passed else f"{v.refusal}: {v.reason}"
                    print(f"  {v.name} ({row['target']}): {speed}; {verdict}", flush=True)
            stack = None
            if args.stack and STANDIN in names:
                stack = through_the_stack(work, shared, entries[STANDIN], args)
        except (RuntimeError, OSError, ValueError) as error:
            return failed(error, None)
    result = {
        **run_fields("bench.bench_precision", argv or sys.argv[1:], started),
        "cpu_flags": sorted(f for f in flags if f.startswith(("avx512", "avx_vnni", "amx"))),
        "rounds": args.rounds,
        "batch": args.batch,
        "threads": args.threads,
        "models": rows,
        "stack": stack,
    }
    print(f"wrote {write_result('precision-', rounded(result, 4))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
