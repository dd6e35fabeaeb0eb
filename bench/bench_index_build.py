"""Index-build benchmark: a first `build-face-index` job against a second one with one new
performer added, on the real stack (SCRFD + MobileFaceNet in Triton).

The first build enrols a folder of the 64 photos of testdata/faces/deepface: one performer per
identity group (identity_groups.txt) and one single-photo performer per other photo. The second
build is the same folder plus one new performer whose photos no build has seen (mirrored copies of
img34-37, so new bytes): the embedding cache answers every other image, so only the new
performer's images reach Triton; it is repeated `--rounds` times (another new performer each
time) and the median counts. A last build with nothing changed is measured too.

Wall times are the jobs' own (created_at -> finished_at from the job records); Triton's
`nv_inference_count` (per model) before and after each build says how much inference it ran.
Target (issue 12): the second build at least 10x faster than the first. Writes
bench/results/index-build-<UTC>.json.

    .venv/bin/python -m bench.bench_index_build [--rounds 5] [--keep]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2

from bench.toolkit.http import httpx
from bench.toolkit.metrics import metric, scrape
from bench.toolkit.results import run_fields, shared_dir, verdict, write_result
from bench.toolkit.stack import start_stack, stop_stack, work_dir
from tests.stack import Stack

SHARED = shared_dir()
FACES = SHARED / "testdata" / "faces" / "deepface"
MODELS = ["scrfd_500m", "mobilefacenet"]
NEWCOMER = ["img34.jpg", "img35.jpg", "img36.jpg", "img37.jpg"]
TARGET = 10.0


def groups() -> dict[str, list[str]]:
    found = {}
    for line in (FACES / "identity_groups.txt").read_text().splitlines():
        name, _, files = line.partition(":")
        if files.split():
            found[name.strip()] = files.split()
    return found


def enrol_folder(root: Path) -> int:
    """FOLDER/<performer>/<photos> over the 64 photos; returns the number of performers."""
    grouped = groups()
    in_groups = {f for files in grouped.values() for f in files}
    performers = dict(grouped) | {
        f"single-{p.stem}": [p.name] for p in sorted(FACES.glob("*.jpg")) if p.name not in in_groups
    }
    for name, files in performers.items():
        (root / name).mkdir(parents=True)
        for file in files:
            os.symlink(FACES / file, root / name / file)
    assert sum(len(f) for f in performers.values()) == len(list(FACES.glob("*.jpg")))
    return len(performers)


def add_newcomer(root: Path, round_: int) -> None:
    """One new performer: mirrored copies of its photos, encoded at a quality of this round's own
    (bytes no build has seen)."""
    folder = root / f"Newcomer {round_}"
    folder.mkdir()
    quality = [cv2.IMWRITE_JPEG_QUALITY, 95 - round_]
    for name in NEWCOMER:
        cv2.imwrite(str(folder / name), cv2.flip(cv2.imread(str(FACES / name)), 1), quality)


def inferences(stack: Stack) -> dict[str, float]:
    samples = scrape(stack.triton_metrics_port)
    return {model: metric(samples, "nv_inference_count", model=model) for model in MODELS}


def build(stack: Stack, folder: Path) -> dict[str, Any]:
    """One build-face-index job: its own wall time, the inferences it caused, its statistics."""
    before = inferences(stack)
    params = {"sources": [{"kind": "folder", "path": str(folder)}]}
    job = httpx.post(
        f"{stack.http}/jobs", json={"kind": "build-face-index", "params": params}, timeout=60
    ).json()
    while True:
        time.sleep(1.0)  # each poll costs the server CPU the build would otherwise use
        record = httpx.get(f"{stack.http}/jobs/{job['id']}", timeout=60).json()
        if record["state"] in ("succeeded", "failed", "cancelled"):
            break
    if record["state"] != "succeeded":
        raise RuntimeError(f"build-face-index {record['state']}: {record}")
    page = httpx.get(f"{stack.http}/jobs/{job['id']}/results", timeout=60).json()
    result = page["items"][0]["result"]
    after = inferences(stack)
    [stats] = result["sources"].values()
    return {
        "wall_s": round(float(record["finished_at"]) - float(record["created_at"]), 3),
        "queued_s": round(float(record["started_at"]) - float(record["created_at"]), 3),
        "inferences": {m: after[m] - before[m] for m in MODELS},
        "performers": result["performers"],
        "faces": result["faces"],
        "images": stats["images"],
        "cached": stats["cached"],
        "version": result["version"],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=5, help="builds with one new performer each")
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory and logs")
    args = parser.parse_args(argv)
    started = time.monotonic()
    stack = None
    with work_dir("bench-index-build-", args.keep) as work:
        folder = work / "enrol"
        performers = enrol_folder(folder)
        try:
            stack = start_stack(work / "stack", SHARED / "models", MODELS)
            first = build(stack, folder)
            seconds = []
            for round_ in range(args.rounds):
                add_newcomer(folder, round_)
                seconds.append(build(stack, folder))
            unchanged = build(stack, folder)
        finally:
            stop_stack(stack)
    second = sorted(seconds, key=lambda row: float(row["wall_s"]))[len(seconds) // 2]  # the median
    ratio = first["wall_s"] / second["wall_s"]
    result: dict[str, Any] = {
        "photos": len(list(FACES.glob("*.jpg"))),
        "performers_first": performers,
        "new_performer_images": len(NEWCOMER),
        "first": first,
        "one_new_performer": seconds,
        "one_new_performer_median_s": second["wall_s"],
        "third_unchanged": unchanged,
        "first_vs_second": round(ratio, 2),
        "target": f">= {TARGET:g}",
        "met": ratio >= TARGET,
    }
    result |= run_fields("bench.bench_index_build", list(argv or []), started)
    out = write_result("index-build-", result)
    rows = [("first", first)] + [(f"+1 performer ({n + 1})", row) for n, row in enumerate(seconds)]
    for name, row in [*rows, ("unchanged", unchanged)]:
        print(
            f"{name:>18}: {row['wall_s']:.2f} s ({row['queued_s']:.2f} queued), {row['images']} images ({row['cached']} cached), "
            f"Triton inferences {sum(row['inferences'].values()):.0f} {row['inferences']}"
        )
    print(f"first vs +1 performer (median): {ratio:.1f}x  [{verdict(result['met'])}]")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
