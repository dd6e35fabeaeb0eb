"""Jobs benchmark: a tag-library job against the plugin's own calls, on the real stack.

(a) **Throughput**: a `tag-library` job over N videos vs the same videos (other copies, so the
    result store cannot help either side) as N concurrent `/process_video/` calls. Target: the job
    reaches at least 1.0x the calls' sampled frames per second.
(b) **Interactive first**: `/process_images/` latency of 20 images, idle vs while a `tag-library`
    job over videos runs. Target: p50 under the job at most 1.5x idle.
(c) **A library already tagged**: the AITagger plugin's pass (images in requests of 320 paths,
    one `/process_video/` per video, the plugin's parameters) over a library a job tagged, vs the
    same pass over a copy nobody tagged. Target: at least 100x faster.

Each measured side runs on fresh file copies; CPU timings are noisy, so the figures are ratios
measured side by side in one run. Writes bench/results/jobs-<UTC>.json.

    .venv/bin/python -m bench.bench_jobs [--videos N] [--rounds R] [--model vivid_galaxy_standin]

The default model is the skier233 stand-in (ResNet-18 at 512, what an AITagger user runs),
imported from the shared folder as a user would; `--model open_nsfw` serves a catalog model.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.toolkit.http import httpx
from bench.toolkit.results import run_fields, shared_dir, verdict, write_result
from bench.toolkit.stack import start_stack, stop_stack
from stash_vision.catalog.importers import import_skier233
from tests.stack import Stack

SHARED = shared_dir()
VIDEOS = ["box.mp4", "cup.mp4", "Megamind.avi", "vtest.avi"]
IMAGES = ["baboon.jpg", "basketball1.png", "building.jpg", "fruits.jpg", "messi5.jpg", "squirrel_cls.jpg"]
PLUGIN_VIDEO = {"frame_interval": 2, "threshold": 0.3, "return_confidence": True, "vr_video": False}
PLUGIN_IMAGES = {"threshold": 0.5, "return_confidence": False}


STANDIN = "vivid_galaxy_standin"


def copies(sources: list[Path], folder: Path, count: int) -> list[Path]:
    """`count` files cycling through `sources`, each a distinct path (own result-store key)."""
    folder.mkdir(parents=True, exist_ok=True)
    made = []
    for i in range(count):
        source = sources[i % len(sources)]
        target = folder / f"{i:04d}-{source.name}"
        shutil.copy(source, target)
        made.append(target)
    return made


def submit_and_wait(stack: Stack, params: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """The job's own time, from its record (created -> finished), so the client's polling (once a
    second: each poll costs the server CPU the job would otherwise use) does not round it."""
    job = httpx.post(f"{stack.http}/jobs", json={"kind": "tag-library", "params": params}, timeout=60).json()
    while True:
        time.sleep(1.0)
        state = httpx.get(f"{stack.http}/jobs/{job['id']}", timeout=60).json()
        if state["state"] in ("succeeded", "failed", "cancelled"):
            return float(state["finished_at"]) - float(state["created_at"]), state


def job_frames(stack: Stack, job_id: str) -> int:
    frames, token = 0, ""
    while True:
        page = httpx.get(
            f"{stack.http}/jobs/{job_id}/results", params={"page_size": 100, "page_token": token}, timeout=60
        ).json()
        frames += sum(int(item["result"].get("frames", 0)) for item in page["items"] if item["result"])
        token = page["next_page_token"]
        if not token:
            return frames


async def concurrent_videos(stack: Stack, videos: list[Path]) -> float:
    async with httpx.AsyncClient(timeout=3600) as client:

        async def one(path: Path) -> None:
            response = await client.post(
                f"{stack.http}/process_video/", json={"path": str(path), **PLUGIN_VIDEO}
            )
            response.raise_for_status()

        started = time.perf_counter()
        await asyncio.gather(*(one(v) for v in videos))
        return time.perf_counter() - started


def throughput(stack: Stack, work: Path, count: int, rounds: int) -> dict[str, Any]:
    sources = [SHARED / "testdata" / "video" / name for name in VIDEOS]
    rows = []
    for round_ in range(rounds):
        calls = copies(sources, work / f"calls-{round_}", count)
        call_s = asyncio.run(concurrent_videos(stack, calls))
        library = work / f"job-{round_}"
        copies(sources, library, count)
        job_s, job = submit_and_wait(stack, {"roots": [str(library)]})
        frames = job_frames(stack, job["id"])
        # The same videos, the same sampling: the ratio of wall times is the ratio of frames/s.
        rows.append(
            {
                "calls_s": call_s,
                "job_s": job_s,
                "sampled_frames": frames,
                "calls_frames_per_s": frames / call_s,
                "job_frames_per_s": frames / job_s,
                "ratio": call_s / job_s,
            }
        )
    ratio = statistics.median(r["ratio"] for r in rows)
    return {"videos": count, "rounds": rows, "job_vs_calls": ratio, "target": ">= 1.0", "met": ratio >= 1.0}


def image_latencies(stack: Stack, folder: Path, requests: int) -> list[float]:
    sources = [SHARED / "testdata" / "images" / name for name in IMAGES]
    seconds = []
    for r in range(requests):
        batch = copies(sources, folder / f"request-{r}", 20)  # fresh paths: no store hits
        started = time.perf_counter()
        response = httpx.post(
            f"{stack.http}/process_images/",
            json={"paths": [str(p) for p in batch], **PLUGIN_IMAGES},
            timeout=600,
        )
        response.raise_for_status()
        seconds.append(time.perf_counter() - started)
    return seconds


def interactive_first(stack: Stack, work: Path, requests: int) -> dict[str, Any]:
    idle = image_latencies(stack, work / "idle", requests)
    library = work / "background"
    copies([SHARED / "testdata" / "video" / name for name in VIDEOS], library, 40)
    # A fine interval makes the job long enough to outlast the measurement.
    params = {"roots": [str(library)], "frame_interval": 0.5}
    job = httpx.post(f"{stack.http}/jobs", json={"kind": "tag-library", "params": params}, timeout=60).json()
    while httpx.get(f"{stack.http}/jobs/{job['id']}", timeout=60).json()["state"] != "running":
        time.sleep(0.1)
    time.sleep(2.0)  # the job's items are in full flow
    busy = image_latencies(stack, work / "busy", requests)
    still_running = httpx.get(f"{stack.http}/jobs/{job['id']}", timeout=60).json()["state"] == "running"
    httpx.post(f"{stack.http}/jobs/{job['id']}/cancel", timeout=60)
    ratio = statistics.median(busy) / statistics.median(idle)
    return {
        "idle_p50_s": statistics.median(idle),
        "busy_p50_s": statistics.median(busy),
        "idle_s": idle,
        "busy_s": busy,
        "job_ran_throughout": still_running,
        "busy_vs_idle": ratio,
        "target": "<= 1.5",
        "met": ratio <= 1.5 and still_running,
    }


def plugin_pass(stack: Stack, images: list[Path], videos: list[Path]) -> float:
    started = time.perf_counter()
    for start in range(0, len(images), 320):
        chunk = [str(p) for p in images[start : start + 320]]
        httpx.post(f"{stack.http}/process_images/", json={"paths": chunk, **PLUGIN_IMAGES}, timeout=3600)
    for video in videos:
        response = httpx.post(
            f"{stack.http}/process_video/", json={"path": str(video), **PLUGIN_VIDEO}, timeout=3600
        )
        response.raise_for_status()
    return time.perf_counter() - started


def already_tagged(stack: Stack, work: Path, image_count: int, video_count: int) -> dict[str, Any]:
    image_sources = [SHARED / "testdata" / "images" / name for name in IMAGES]
    video_sources = [SHARED / "testdata" / "video" / name for name in VIDEOS]
    tagged = work / "tagged"
    tagged_images = copies(image_sources, tagged / "images", image_count)
    tagged_videos = copies(video_sources, tagged / "videos", video_count)
    job_s, _ = submit_and_wait(stack, {"roots": [str(tagged)]})
    warm = plugin_pass(stack, tagged_images, tagged_videos)
    cold_images = copies(image_sources, work / "cold" / "images", image_count)
    cold_videos = copies(video_sources, work / "cold" / "videos", video_count)
    cold = plugin_pass(stack, cold_images, cold_videos)
    return {
        "images": image_count,
        "videos": video_count,
        "job_s": job_s,
        "plugin_pass_after_job_s": warm,
        "plugin_pass_cold_s": cold,
        "cold_vs_after_job": cold / warm,
        "target": ">= 100",
        "met": cold / warm >= 100,
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--model", default=STANDIN)
    parser.add_argument("--videos", type=int, default=8, help="videos in (a)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds of (a)")
    parser.add_argument("--requests", type=int, default=8, help="/process_images/ requests per side in (b)")
    parser.add_argument("--library-images", type=int, default=320, help="images in (c)")
    parser.add_argument("--library-videos", type=int, default=4, help="videos in (c)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-jobs-") as temporary:
        work = Path(temporary)
        if args.model == STANDIN:
            data = work / "stack" / "data"
            package = SHARED / "models" / "skier233-standin" / f"{STANDIN}.yaml"
            import_skier233(package, data / "model_repository", data / "models")
        stack = start_stack(work / "stack", SHARED / "models", args.model)
        try:
            result: dict[str, Any] = {
                "model": args.model,
                "throughput": throughput(stack, work / "a", args.videos, args.rounds),
                "interactive_first": interactive_first(stack, work / "b", args.requests),
                "already_tagged": already_tagged(stack, work / "c", args.library_images, args.library_videos),
            }
        finally:
            stop_stack(stack)
    result |= run_fields("bench.bench_jobs", list(argv or []), started)
    out = write_result("jobs-", result)
    a, b, c = result["throughput"], result["interactive_first"], result["already_tagged"]
    print(
        f"(a) tag-library job vs concurrent /process_video/: {a['job_vs_calls']:.2f}x  [{verdict(a['met'])}]"
    )
    print(
        f"(b) /process_images/ p50 idle {b['idle_p50_s']:.2f} s, during a job {b['busy_p50_s']:.2f} s: "
        f"{b['busy_vs_idle']:.2f}x  [{verdict(b['met'])}]"
    )
    print(
        f"(c) plugin pass cold {c['plugin_pass_cold_s']:.1f} s, after a job {c['plugin_pass_after_job_s']:.2f} s: "
        f"{c['cold_vs_after_job']:.0f}x  [{verdict(c['met'])}]"
    )
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
