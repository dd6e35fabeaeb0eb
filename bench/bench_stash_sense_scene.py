"""Stash Sense scene identification: a 60-frame `POST /stash-sense/identify/scene` for a scene read
from its file here (path mappings) against the same scene streamed from the Stash stand-in with
the key (PyAV over HTTP, seeking with Range), side by side in one run: alternating rounds after
one warm-up call of each, so both see the same machine state. The scene is a 720p MPEG-4 video of
a known performer's held-out photos (tests/integration/stash_sense_world.py), so every frame has a
face to detect, embed and match. Stash Sense itself takes about 5 s for 60 frames on a GTX 1080.

    .venv/bin/python -m bench.bench_stash_sense_scene [--rounds 3] [--seconds 120]

Results go to bench/results/stash-sense-scene-<time>.json; docs/stash-sense.md quotes them."""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.toolkit.results import run_fields, write_result
from tests.integration.stash_sense_world import ALICE, stash_sense_world

FROM_FILE, STREAMED = "10", "11"  # the same video: readable here / only through Stash


def identify(http: httpx.Client, scene_id: str) -> tuple[float, dict[str, Any]]:
    body = {"scene_id": scene_id, "top_k": 5, "scene_performer_stashdb_ids": [ALICE]}
    started = time.perf_counter()
    response = http.post("/stash-sense/identify/scene", json=body)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise RuntimeError(f"scene {scene_id}: HTTP {response.status_code}: {response.text}")
    answer: dict[str, Any] = response.json()
    if answer["frames_analyzed"] != 60:
        raise RuntimeError(
            f"scene {scene_id}: {answer['frames_analyzed']} frames analysed: {answer['errors']}"
        )
    return elapsed, answer


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3, help="measured calls of each, alternating")
    parser.add_argument("--seconds", type=float, default=120.0, help="length of the scene video")
    args = parser.parse_args(argv)
    started = time.monotonic()
    times: dict[str, list[float]] = {FROM_FILE: [], STREAMED: []}
    server_ms: dict[str, list[float]] = {FROM_FILE: [], STREAMED: []}
    with tempfile.TemporaryDirectory() as work:
        print(f"making a {args.seconds:.0f} s 720p scene and starting the stack ...", flush=True)
        with (
            stash_sense_world(
                Path(work), video_seconds=args.seconds, video_size=(1280, 720), fps=25
            ) as world,
            httpx.Client(base_url=world.stack.http, timeout=300) as http,
        ):
            for scene_id in (FROM_FILE, STREAMED):
                identify(http, scene_id)  # warm-up: models loaded, index in memory
            streamed_before = world.stash.traffic.count(f"/scene/{STREAMED}/stream")
            for round_number in range(args.rounds):
                for scene_id in (FROM_FILE, STREAMED) if round_number % 2 == 0 else (STREAMED, FROM_FILE):
                    elapsed, answer = identify(http, scene_id)
                    times[scene_id].append(elapsed)
                    server_ms[scene_id].append(answer["timing"]["total_ms"])
                    best = answer["persons"][0]["best_match"] if answer["persons"] else None
                    print(
                        f"round {round_number + 1} scene {scene_id} ({'file' if scene_id == FROM_FILE else 'stream'}): "
                        f"{elapsed:.2f} s, best match {best and best['name']}",
                        flush=True,
                    )
            stream_requests = world.stash.traffic.count(f"/scene/{STREAMED}/stream") - streamed_before
    file_s, stream_s = statistics.median(times[FROM_FILE]), statistics.median(times[STREAMED])
    print(f"60 frames from the file:   {file_s:.2f} s per request (median of {args.rounds})")
    print(f"60 frames from the stream: {stream_s:.2f} s per request (median of {args.rounds})")
    print(
        f"stream / file: {stream_s / file_s:.2f}x; {stream_requests / args.rounds:.0f} HTTP requests per streamed scene"
    )
    result = {
        "scene": {
            "seconds": args.seconds,
            "size": "1280x720",
            "fps": 25,
            "codec": "mpeg4",
            "frames_sampled": 60,
        },
        "seconds_per_request": {"file": times[FROM_FILE], "stream": times[STREAMED]},
        "server_total_ms": {"file": server_ms[FROM_FILE], "stream": server_ms[STREAMED]},
        "median_s": {"file": round(file_s, 3), "stream": round(stream_s, 3)},
        "stream_over_file": round(stream_s / file_s, 3),
        "stream_http_requests_per_scene": stream_requests / args.rounds,
    }
    result |= run_fields("bench.bench_stash_sense_scene", argv, started)
    print(f"written to {write_result('stash-sense-scene-', result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
