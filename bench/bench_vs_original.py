"""Issue 16's targets, measured side by side: stash-vision's stack against the original AITagger
server's compute path reproduced in-process (bench/original_path.py), on the skier233 stand-in,
with the same requests, in alternating rounds of one run.

One run:

1. imports the stand-in into a throw-away data directory and derives its precision variants with
   ../shared/testdata as the calibration set (what `stash-vision models precision` does), then
   prints what each `--precision` setting serves and why;
2. per setting (default `auto`), starts `stash-vision serve` with STASH_VISION_PRECISION set to it
   and the result store off (every request does the work), then `--rounds` rounds of:
   the original's path on `--images` real photos; the stack with one /process_images/ request of
   the same paths (the AITagger plugin's request); the original's path on the 60 s 1080p30 H.264
   file of bench_video; the stack with one /process_video/ request for it (frame_interval 2);
3. medians over the rounds; images/s and sampled frames/s against the original's in the same
   rounds. Targets: >= 1.5x the images/s, >= 2x the sampled frames/s.

    .venv/bin/python -m bench.bench_vs_original [--rounds 3] [--images 320] [--precision auto,fp32]

Prints a table and writes JSON to bench/results/vs-original-<UTC timestamp>.json; figures and
method: docs/precision.md."""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

from bench.bench_tagging import image_paths, post_all
from bench.bench_video import FRAME_INTERVAL, ensure_video, tag_concurrently
from bench.original_path import AutocastModel, OriginalRun, image_tensors, run_pipeline, video_tensors
from bench.toolkit.http import httpx
from bench.toolkit.results import rounded, run_fields, shared_dir, write_result
from bench.toolkit.stack import failed, start_stack, work_dir
from bench.toolkit.standin import import_with_variants
from stash_vision.precision.selection import Precision, choose

MODEL = "vivid_galaxy_standin"
TARGET_IMAGES = 1.5
TARGET_FRAMES = 2.0
VIDEO_SECONDS = 60
_TIMEOUT = httpx.Timeout(3600.0, connect=10.0)


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_vs_original", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--images", type=int, default=320, help="paths per request (the plugin sends 320)")
    parser.add_argument("--precision", default="auto", help="comma-separated STASH_VISION_PRECISION values")
    parser.add_argument(
        "--threads", type=int, default=os.cpu_count() or 1, help="the original's torch threads"
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser.parse_args(argv)


async def stack_images(url: str, paths: list[Path]) -> float:
    async with httpx.AsyncClient(timeout=_TIMEOUT) as client:
        started = time.perf_counter()
        await post_all(client, url, [str(p) for p in paths], 1)
        return len(paths) / (time.perf_counter() - started)


async def stack_video(url: str, video: Path, frames: int) -> float:
    async with httpx.AsyncClient(timeout=_TIMEOUT) as client:
        (seconds,) = await tag_concurrently(client, url, video, 1)
        return frames / seconds


def one_setting(
    precision: str,
    work: Path,
    shared: Path,
    model: AutocastModel,
    paths: list[Path],
    video: Path,
    rounds: int,
) -> dict[str, Any]:
    os.environ["STASH_VISION_PRECISION"] = precision
    stack = start_stack(work, shared / "models", MODEL, reuse_results=False)
    images_url, video_url = f"{stack.http}/process_images/", f"{stack.http}/process_video/"
    original: dict[str, list[OriginalRun]] = {"images": [], "video": []}
    ours: dict[str, list[float]] = {"images": [], "video": []}
    try:
        asyncio.run(stack_images(images_url, paths[:16]))  # warm-up: connections, first batches
        for index in range(rounds):
            original["images"].append(run_pipeline(model, partial(image_tensors, paths)))
            ours["images"].append(asyncio.run(stack_images(images_url, paths)))
            original["video"].append(run_pipeline(model, partial(video_tensors, video, FRAME_INTERVAL)))
            frames = original["video"][-1].items
            ours["video"].append(asyncio.run(stack_video(video_url, video, frames)))
            print(
                f"  round {index + 1}: images/s original {original['images'][-1].per_s:.2f}, "
                f"stash-vision {ours['images'][-1]:.2f}; sampled frames/s original "
                f"{original['video'][-1].per_s:.2f}, stash-vision {ours['video'][-1]:.2f}",
                flush=True,
            )
    finally:
        stack.stop()
    result: dict[str, Any] = {}
    for work_kind, target in (("images", TARGET_IMAGES), ("video", TARGET_FRAMES)):
        theirs = statistics.median(run.per_s for run in original[work_kind])
        mine = statistics.median(ours[work_kind])
        result[work_kind] = {
            "original_per_s": theirs,
            "stash_vision_per_s": mine,
            "ratio": mine / theirs,
            "target": target,
            "met": mine / theirs >= target,
            "original_rounds": [run.as_json() for run in original[work_kind]],
            "stash_vision_rounds": ours[work_kind],
        }
    return result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    shared = shared_dir()
    started = time.monotonic()
    settings = [p.strip() for p in args.precision.split(",") if p.strip()]
    rows: dict[str, Any] = {}
    with work_dir("stash-vision-bench-vs-original-", args.keep) as work:
        try:
            print(f"importing the stand-in and deriving its variants under {work}", flush=True)
            package = shared / "models" / "skier233-standin" / f"{MODEL}.yaml"
            entry = import_with_variants(package, work / "data", shared)
            served = {p: choose(entry, work / "data" / "models", Precision(p)) for p in settings}
            for precision, choice in served.items():
                print(f"  {precision} serves {choice.variant}: {choice.reason}", flush=True)
            paths, _ = image_paths(shared, args.images)
            video, _ = ensure_video(VIDEO_SECONDS)
            model = AutocastModel(shared / "models" / "skier233-standin" / f"{MODEL}.pt", args.threads)
            for precision in settings:
                print(
                    f"precision {precision}: the stack against the original's path, {args.rounds} rounds",
                    flush=True,
                )
                rows[precision] = {
                    "serves": served[precision].variant,
                    "why": served[precision].reason,
                    **one_setting(precision, work, shared, model, paths, video, args.rounds),
                }
        except (RuntimeError, OSError, ValueError) as error:
            return failed(error, None)
    print()
    print(f"{'precision':<10} {'serves':<24} {'work':<30} {'original':>9} {'ours':>7} {'ratio':>6} target")
    for precision, row in rows.items():
        for work_kind, unit in (("images", "images/s"), ("video", "sampled frames/s (60 s 1080p)")):
            r = row[work_kind]
            print(
                f"{precision:<10} {row['serves']:<24} {unit:<30} {r['original_per_s']:>9.2f} "
                f"{r['stash_vision_per_s']:>7.2f} {r['ratio']:>6.2f} >= {r['target']:g}x "
                f"{'met' if r['met'] else 'MISSED'}"
            )
    print(
        "(original: its compute path in-process: OpenCV decode, torch's antialiased bicubic on uint8 "
        "(torchvision's Resize), PyAV decode of every frame, TorchScript under autocast bf16, batch 1: "
        "bench/original_path.py)"
    )
    result = {
        **run_fields("bench.bench_vs_original", argv or sys.argv[1:], started),
        "images_per_request": args.images,
        "rounds": args.rounds,
        "settings": rows,
    }
    print(f"wrote {write_result('vs-original-', rounded(result, 3))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
