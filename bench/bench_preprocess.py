"""Decode and preprocessing per image for the skier233 stand-in's input (512x512 stretch, Pillow
bicubic with antialias, RGB, CLIP mean/std, NCHW): the implementation before issue 16 part 4
(tests/preprocessing_reference.py) against today's (server/preprocessing.py), stage by stage.

Sets: `images` (../shared/testdata/images, 0.2-0.5 MP), `photos` (testdata/faces/deepface, up to
14 MP: with `images`, the files bench_tagging's requests cycle through) and `frames-1080p` (a
1920x1080 BGR array per photo, as a video decoder hands frames over; no decode). Each round runs
every file through old then new (new then old on odd rounds, so outside load on a shared machine
hits both alike); a stage's figure is the median over the rounds of its mean ms per image. Decode
(server/media/images.decode_image, from bytes in memory) is the same code on both sides.

    .venv/bin/python -m bench.bench_preprocess [--rounds 5] [--photos 0 (all)]

Prints a table and writes JSON to bench/results/preprocess-<UTC timestamp>.json; figures:
docs/preprocessing-speed.md."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import PIL

from bench import original_path
from bench.toolkit.results import fmt, rounded, run_fields, shared_dir, write_result
from stash_vision.catalog.entries import InputContract, ResizeMode
from stash_vision.server.arrays import BgrImage, FloatTensor
from stash_vision.server.media.images import ImageLimits, decode_image
from stash_vision.server.preprocessing import fit, to_tensor
from tests.preprocessing_reference import exact_cubic_antialias, reference_to_tensor

# The skier233 importer's contract for the stand-in (catalog/importers/skier233.py).
STANDIN_INPUT = InputContract.model_validate(
    {
        "tensor": "INPUT__0",
        "layout": "NCHW",
        "color_order": "RGB",
        "width": 512,
        "height": 512,
        "resize": ResizeMode.STRETCH,
        "interpolation": "cubic_antialias",
        "scale": 1 / 255,
        "mean": (0.48145466, 0.4578275, 0.40821073),
        "std": (0.26862954, 0.26130258, 0.27577711),
    }
)
LIMITS = ImageLimits(max_pixels=100_000_000, max_file_bytes=1 << 28)
# The original server's own decode and preprocessing per image, measured through its stack in
# another run (issue 16, bench_tagging's image set, torchvision's decoder and resize).
ORIGINAL_MS = 15.7
STAGES = ("decode", "fit", "tensor")


@dataclass(frozen=True)
class Side:
    """One implementation: decode (bytes to its image type), a decoded video frame in its image
    type (untimed: what the frame decoder hands over), fit and tensor."""

    decode: Callable[[bytes], Any]
    from_frame: Callable[[BgrImage], Any]
    fit: Callable[[Any], Any]
    tensor: Callable[[Any], FloatTensor]


SIDES = {
    # The original server's path as bench/original_path.py reproduces it on the CPU: libjpeg-turbo
    # decode to RGB, torchvision's antialiased bicubic on uint8 (torch's interpolate), float math.
    "original": Side(
        decode=original_path.decode_rgb,
        from_frame=lambda frame: np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)),
        fit=original_path.resize,
        tensor=original_path.normalise,
    ),
    "old": Side(
        decode=lambda data: decode_image(data, LIMITS),
        from_frame=lambda frame: frame,
        fit=lambda image: exact_cubic_antialias(image, STANDIN_INPUT.width, STANDIN_INPUT.height),
        tensor=lambda fitted: reference_to_tensor(fitted, STANDIN_INPUT),
    ),
    "new": Side(
        decode=lambda data: decode_image(data, LIMITS),
        from_frame=lambda frame: frame,
        fit=lambda image: fit(image, STANDIN_INPUT)[0],
        tensor=lambda fitted: to_tensor(fitted, STANDIN_INPUT),
    ),
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.bench_preprocess", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--photos", type=int, default=0, help="first N deepface photos (0: all)")
    return parser.parse_args(argv)


def load_sets(shared: Path, photos: int) -> dict[str, list[tuple[bytes | None, BgrImage]]]:
    """Per set: (encoded bytes or None for frames, decoded BGR image)."""
    testdata = shared / "testdata"
    small = sorted(p for p in (testdata / "images").iterdir() if p.is_file())
    large = sorted((testdata / "faces" / "deepface").glob("*.jpg"))[: photos or None]
    if not small or not large:
        raise SystemExit(f"no test images under {testdata} (set STASH_VISION_SHARED_DIR)")
    sets: dict[str, list[tuple[bytes | None, BgrImage]]] = {}
    for name, paths in (("images", small), ("photos", large)):
        encoded = [p.read_bytes() for p in paths]
        sets[name] = [(data, decode_image(data, LIMITS)) for data in encoded]
    sets["frames-1080p"] = [
        (None, cv2.resize(image, (1920, 1080), interpolation=cv2.INTER_AREA)) for _, image in sets["photos"]
    ]
    return sets


def one_round(items: list[tuple[bytes | None, BgrImage]], order: list[str]) -> dict[str, dict[str, float]]:
    """Mean ms per image of each side's stages over the set."""
    totals = {side: dict.fromkeys(STAGES, 0.0) for side in order}
    for data, image in items:
        for name in order:
            side = SIDES[name]
            frame = side.from_frame(image) if data is None else None
            started = time.perf_counter()
            decoded = side.decode(data) if data is not None else frame
            decoded_at = time.perf_counter()
            fitted = side.fit(decoded)
            fitted_at = time.perf_counter()
            side.tensor(fitted)
            done = time.perf_counter()
            spent = (decoded_at - started, fitted_at - decoded_at, done - fitted_at)
            for stage, seconds in zip(STAGES, spent, strict=True):
                totals[name][stage] += seconds
    return {side: {s: v * 1000 / len(items) for s, v in stages.items()} for side, stages in totals.items()}


def parity(items: list[tuple[bytes | None, BgrImage]]) -> dict[str, float]:
    """New against old: the fitted uint8 images and the tensors."""
    old, new = SIDES["old"], SIDES["new"]
    worst_pixel, mean_pixel, worst_tensor = 0, 0.0, 0.0
    for _, image in items:
        exact, fitted = old.fit(image), new.fit(image)
        difference = np.abs(exact.astype(np.int16) - fitted)
        worst_pixel = max(worst_pixel, int(difference.max()))
        mean_pixel += float(difference.mean()) / len(items)
        worst_tensor = max(worst_tensor, float(np.abs(new.tensor(fitted) - old.tensor(fitted)).max()))
    return {"fit_max_abs": worst_pixel, "fit_mean_abs": mean_pixel, "tensor_max_abs": worst_tensor}


def measure(items: list[tuple[bytes | None, BgrImage]], rounds: int) -> list[dict[str, dict[str, float]]]:
    """Per round, per side, per stage: mean ms per image; the order reversed every other round."""
    order = list(SIDES)
    return [one_round(items, order if r % 2 == 0 else order[::-1]) for r in range(rounds)]


def summary(samples: list[dict[str, dict[str, float]]], files: int, par: dict[str, float]) -> dict[str, Any]:
    result: dict[str, Any] = {"files": files}
    for side in SIDES:
        ms = {stage: statistics.median(s[side][stage] for s in samples) for stage in STAGES}
        ms["total"] = statistics.median(sum(s[side].values()) for s in samples)
        result[f"{side}_ms"] = ms
    result["parity"] = par
    return result


def pooled(parts: list[tuple[int, list[dict[str, dict[str, float]]]]]) -> list[dict[str, dict[str, float]]]:
    """Round by round, the mean ms per image over several sets (weighted by their file counts)."""
    files = sum(count for count, _ in parts)
    return [
        {
            side: {
                stage: sum(count * samples[r][side][stage] for count, samples in parts) / files
                for stage in STAGES
            }
            for side in SIDES
        }
        for r in range(len(parts[0][1]))
    ]


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    """ms per image, each stage as original / old / new; then new against old: the fitted pixels'
    largest difference (of 255) and the tensors' (0.0: bit-identical)."""
    columns = [*STAGES, "total"]
    print(
        f"{'ms per image':<13} {'files':>5} | "
        + " | ".join(f"{c + ' orig/old/new':>20}" for c in columns)
        + " | fit max|d| tensor max|d|"
    )
    for name, row in rows.items():
        cells = ["/".join(fmt(row[f"{side}_ms"][column], ".2f") for side in SIDES) for column in columns]
        parity_ = row["parity"]
        print(
            f"{name:<13} {row['files']:>5} | "
            + " | ".join(f"{cell:>20}" for cell in cells)
            + f" | {parity_['fit_max_abs']:>10} {parity_['tensor_max_abs']:>12}"
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    started = time.monotonic()
    sets = load_sets(shared_dir(), args.photos)
    samples = {name: measure(items, args.rounds) for name, items in sets.items()}
    parities = {name: parity(items) for name, items in sets.items()}
    rows = {name: summary(samples[name], len(sets[name]), parities[name]) for name in sets}
    # bench_tagging's requests cycle through the small images and the photos alike.
    mixed = ["images", "photos"]
    rows["tagging-set"] = summary(
        pooled([(len(sets[name]), samples[name]) for name in mixed]),
        sum(len(sets[name]) for name in mixed),
        {key: max(parities[name][key] for name in mixed) for key in ("fit_max_abs", "tensor_max_abs")},
    )
    print_table(rows)
    new_total = rows["tagging-set"]["new_ms"]["total"]
    print(
        f"tagging set, new: {new_total:.1f} ms per image; the original server itself measured "
        f"{ORIGINAL_MS} ms in another run (issue 16), its Pillow reproduction above is the same-run one"
    )
    result = {
        **run_fields(
            "bench.bench_preprocess",
            sys.argv[1:] if argv is None else argv,
            started,
            numpy=np.__version__,
            opencv=cv2.__version__,
            pillow=PIL.__version__,
        ),
        "contract": STANDIN_INPUT.model_dump(mode="json"),
        "rounds": args.rounds,
        "original_ms_per_image": ORIGINAL_MS,
        "sets": rounded(rows),
    }
    print(f"wrote {write_result('preprocess-', result)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
