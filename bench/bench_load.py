"""Load benchmark: a mixed population of clients (bench/toolkit/load.py: AITagger image batches of
320 paths and videos, face identification of photos and scenes, tag-library jobs, dashboard pages)
against the real stack on loopback for a while, with bounded concurrency.

Reports throughput and p50/p99 per route, the errors (target: 0) and the RSS of every process over
time (target: flat after the warm-up, by the criterion of bench/toolkit/rss_timeline.py). Writes
bench/results/load-<UTC>.json; exits 1 when a target is missed.

    .venv/bin/python -m bench.bench_load [--duration 600] [--warmup 60] [--keep]

The stack serves open_nsfw (the tagger), scrfd_500m and mobilefacenet (faces), with a face index
built at start from the shared deepface photos. tests/integration/test_load_mixed.py runs the same
for 60 seconds."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

from bench.toolkit.load import ERROR, RETRYABLE, Library, LoadRun, errors, per_route
from bench.toolkit.results import run_fields, shared_dir, verdict, write_result
from bench.toolkit.rss_timeline import RssTimeline
from bench.toolkit.stack import failed, start_stack, stop_stack, work_dir
from tests.stack import Stack, cli

MODELS = ["open_nsfw", "scrfd_500m", "mobilefacenet"]
# Performers of the face index: a folder per person, photos of the shared deepface set.
PEOPLE = {
    "alpha": ["img1.jpg", "img2.jpg", "img4.jpg"],
    "beta": ["img13.jpg", "img14.jpg"],
    "gamma": ["img20.jpg"],
}


def write_enrolment(folder: Path, shared: Path) -> Path:
    """A folder per performer of `PEOPLE`, their photos linked from the shared deepface set."""
    for person, names in PEOPLE.items():
        (folder / person).mkdir(parents=True)
        for name in names:
            os.symlink(shared / "testdata" / "faces" / "deepface" / name, folder / person / name)
    return folder


def build_face_index(stack: Stack, folder: Path, shared: Path) -> None:
    """`stash-vision index build` over a folder per performer, as a user enrols."""
    write_enrolment(folder, shared)
    built = cli({**stack.env, "STASH_VISION_SERVER_URL": stack.grpc_target}, "index", "build", str(folder))
    if built.returncode != 0:
        raise RuntimeError(f"index build failed:\n{built.stdout}{built.stderr}")


def run_load(stack: Stack, work: Path, duration_s: float, warmup_s: float) -> dict[str, Any]:
    """The population for `duration_s` against `stack`; the report (routes, errors, memory)."""
    library = Library(shared_dir(), work / "load-library")
    started = time.monotonic()
    with RssTimeline(stack.process.pid) as memory:
        outcomes = LoadRun(stack.http, library, duration_s).run()
    wall = time.monotonic() - started
    memory_verdicts = memory.flat(warmup_s)
    return {
        "duration_s": duration_s,
        "wall_s": round(wall, 1),
        "warmup_s": warmup_s,
        "requests": len(outcomes),
        "per_route": per_route(outcomes, wall),
        "errors": sum(o.kind == ERROR for o in outcomes),
        "retryable": sum(o.kind == RETRYABLE for o in outcomes),
        "first_errors": errors(outcomes) + errors(outcomes, RETRYABLE),
        "rss_mib_tenths_by_role": memory.tenths(),
        "memory_flat": memory_verdicts,
        "memory_criterion": "after the warm-up, per role: max of the last third <= max of the first third x 1.1 + 50 MiB",
        "targets_met": {
            "no_errors": not any(o.kind != "ok" for o in outcomes),
            "memory_flat": all(v["flat"] for v in memory_verdicts.values()),
        },
    }


def print_report(report: dict[str, Any]) -> None:
    print(f"{report['requests']} requests in {report['wall_s']} s")
    print(f"{'route':26} {'requests':>8} {'/min':>7} {'p50 s':>7} {'p99 s':>7} {'errors':>6}")
    for route, row in report["per_route"].items():
        print(
            f"{route:26} {row['requests']:>8} {row['per_minute']:>7} {row['p50_s'] or '-':>7} "
            f"{row['p99_s'] or '-':>7} {row['errors'] + row['retryable']:>6}"
        )
    for line in report["first_errors"]:
        print(f"  {line}")
    print(f"RSS (MiB) by role, at each tenth; {report['memory_criterion']}:")
    for role, values in report["rss_mib_tenths_by_role"].items():
        flat = report["memory_flat"][role]
        print(f"  {role:14} {values}  {flat['last_third_max_mib']} <= {flat['limit_mib']}: {flat['flat']}")
    for target, met in report["targets_met"].items():
        print(f"{target}: {verdict(met)}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=600.0, help="seconds of load (default 600)")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds left out of the memory criterion")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory and logs")
    args = parser.parse_args(argv)
    started = time.monotonic()
    stack = None
    with work_dir("stash-vision-bench-load-", args.keep) as work:
        try:
            stack = start_stack(work, shared_dir() / "models", MODELS)
            build_face_index(stack, work / "enrol", shared_dir())
            report = run_load(stack, work, args.duration, args.warmup)
        except (RuntimeError, OSError, ValueError) as error:
            return failed(error, stack)
        finally:
            stop_stack(stack)
    print_report(report)
    print(f"written to {write_result('load-', {**run_fields('bench.bench_load', argv, started), **report})}")
    return 0 if all(report["targets_met"].values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
