"""Face benchmark: faces detected+embedded per second through the stack (gRPC EmbedFaces -> server
-> Triton) against the same domain code calling ONNX Runtime in-process (bench/in_process.py), side
by side in one run; seconds for a 60-frame scene identification; and the calibration that chose the
default profile's detector and threshold (--calibrate).

    .venv/bin/python -m bench.bench_faces            # throughput + scene
    .venv/bin/python -m bench.bench_faces --calibrate

Results go to bench/results/faces-<time>.json; docs/faces.md quotes them."""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import grpc
import numpy as np
import onnxruntime as ort

from bench.in_process import OrtSession
from bench.toolkit.results import run_fields, shared_dir, write_result
from stash_vision.catalog.entries import Catalog
from stash_vision.server.faces.matching import fused_distance
from stash_vision.server.faces.pipeline import FacePipeline
from stash_vision.server.faces.profile import DetectorSpec, FaceProfile, load_profile
from stash_vision.server.workers import CpuPool
from stash_vision.v1 import faces_pb2, faces_pb2_grpc, media_pb2
from tests.stack import start_stack

SHARED = shared_dir()
FACES = SHARED / "testdata" / "faces" / "deepface"

YUNET = DetectorSpec.model_validate(
    {
        "model": "yunet",
        "kind": "yunet",
        "input": {
            "tensor": "input",
            "layout": "NCHW",
            "color_order": "BGR",
            "width": 640,
            "height": 640,
            "resize": "letterbox",
        },
        "nms_iou": 0.3,
        "decode_threshold": 0.3,
    }
)


def photos() -> list[Path]:
    return sorted(FACES.glob("*.jpg"))


def in_process_pipeline(profile: FaceProfile, threads: int = 0) -> FacePipeline:
    catalog = Catalog.load()
    files = {m: SHARED / "models" / str(catalog.get(m).weights.mirror_path) for m in profile.models}
    entries = {m: catalog.get(m) for m in profile.models}
    return FacePipeline(profile, entries, OrtSession(files, threads), CpuPool(os.cpu_count() or 2))


async def in_process_throughput(images: list[bytes], concurrency: int, rounds: int) -> tuple[float, int]:
    pipeline = in_process_pipeline(load_profile("default"))
    slots = asyncio.Semaphore(concurrency)
    faces = 0

    def decode(data: bytes) -> np.ndarray[Any, Any]:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)

    async def one(data: bytes) -> None:
        nonlocal faces
        async with slots:
            # Decoded inside the timing, on the pool, as the server decodes what it receives.
            image = await pipeline.pool.run(decode, data)
            found, _ = await pipeline.detect(image)
            embedded = await pipeline.embed(image, found)
            faces += len(embedded)

    await asyncio.gather(*(one(images[0]) for _ in range(concurrency)))  # warm-up
    faces = 0
    started = time.perf_counter()
    for _ in range(rounds):
        await asyncio.gather(*(one(data) for data in images))
    return faces / (time.perf_counter() - started), faces


async def stack_throughput(
    target: str, images: list[bytes], concurrency: int, rounds: int
) -> tuple[float, int]:
    async with grpc.aio.insecure_channel(target, options=[("grpc.max_send_message_length", 64 << 20)]) as ch:
        stub = faces_pb2_grpc.FaceServiceStub(ch)
        slots = asyncio.Semaphore(concurrency)
        faces = 0

        async def one(data: bytes) -> None:
            nonlocal faces
            async with slots:
                response = await stub.EmbedFaces(
                    faces_pb2.EmbedFacesRequest(image=media_pb2.ImageSource(data=data)), timeout=120
                )
            faces += len(response.faces)

        await asyncio.gather(*(one(images[0]) for _ in range(concurrency)))
        faces = 0
        started = time.perf_counter()
        for _ in range(rounds):
            await asyncio.gather(*(one(data) for data in images))
        return faces / (time.perf_counter() - started), faces


async def scene_seconds(target: str, video: Path, frames: int, repeats: int) -> list[float]:
    async with grpc.aio.insecure_channel(target) as ch:
        stub = faces_pb2_grpc.FaceServiceStub(ch)
        # An index is needed: a tiny one is built by the caller.
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            async for _event in stub.IdentifyVideo(
                faces_pb2.IdentifyVideoRequest(path=str(video), num_frames=frames), timeout=600
            ):
                pass
            timings.append(time.perf_counter() - started)
        return timings


def build_small_index(env: dict[str, str], target: str) -> None:
    from tests.stack import cli

    folder = Path(tempfile.mkdtemp(prefix="bench-faces-enrol-"))
    for i, name in enumerate(["img1.jpg", "img13.jpg", "img20.jpg", "img16.jpg"]):
        (folder / f"p{i}").mkdir()
        os.symlink(FACES / name, folder / f"p{i}" / name)
    result = cli({**env, "STASH_VISION_SERVER_URL": target}, "index", "build", str(folder))
    if result.returncode != 0:
        raise SystemExit(result.stdout + result.stderr)


def run_throughput(args: argparse.Namespace) -> dict[str, Any]:
    images = [p.read_bytes() for p in photos()]
    workdir = Path(tempfile.mkdtemp(prefix="bench-faces-"))
    stack = start_stack(workdir, SHARED / "models", ["scrfd_500m", "mobilefacenet"])
    try:
        rows = []
        for concurrency in args.concurrency:
            stack_rate, stack_faces = asyncio.run(
                stack_throughput(stack.grpc_target, images, concurrency, args.rounds)
            )
            local_rate, local_faces = asyncio.run(in_process_throughput(images, concurrency, args.rounds))
            rows.append(
                {
                    "concurrency": concurrency,
                    "stack_faces_per_s": round(stack_rate, 1),
                    "in_process_faces_per_s": round(local_rate, 1),
                    "ratio": round(stack_rate / local_rate, 3),
                    "faces": [stack_faces, local_faces],
                }
            )
            print(rows[-1], flush=True)
        build_small_index(stack.env, stack.grpc_target)
        scene = asyncio.run(
            scene_seconds(stack.grpc_target, SHARED / "testdata/video/Megamind.avi", 60, args.scene_repeats)
        )
        print({"scene_60_frames_s": scene}, flush=True)
    finally:
        stack.stop()
    return {
        "throughput": rows,
        "scene_60_frames_seconds": [round(s, 2) for s in scene],
        "images": len(images),
    }


def auc(positives: np.ndarray[Any, Any], negatives: np.ndarray[Any, Any]) -> float:
    return float(
        np.mean(positives[:, None] > negatives[None, :])
        + 0.5 * np.mean(positives[:, None] == negatives[None, :])
    )


def read_image(path: Path) -> np.ndarray[Any, Any]:
    image: np.ndarray[Any, Any] = cv2.imread(str(path))
    return image


async def calibrate_one(profile: FaceProfile) -> dict[str, Any]:
    pipeline = in_process_pipeline(profile)
    vectors = {}
    for path in photos():
        image = read_image(path)
        faces, _ = await pipeline.detect(image)
        if faces:
            vectors[path.name] = (await pipeline.embed(image, faces[:1]))[0].vectors
    weights = profile.weights()
    sims, same = [], []
    for row in csv.DictReader((FACES / "master.csv").open()):
        a, b = vectors[row["file_x"]], vectors[row["file_y"]]
        sims.append(1.0 - fused_distance(a, b, weights)[0])
        same.append(row["Decision"] == "Yes")
    s, labels = np.array(sims), np.array(same)
    negatives_with_faces = 0
    for path in sorted((SHARED / "testdata" / "images").iterdir()):
        found, _ = await pipeline.detect(read_image(path))
        negatives_with_faces += bool(found)
    return {
        "detector": profile.detector.model,
        "auc": round(auc(s[labels], s[~labels]), 4),
        "same_person_max_distance": round(float(1 - s[labels].min()), 3),
        "different_people_min_distance": round(float(1 - s[~labels].max()), 3),
        "same_person_mean_similarity": round(float(s[labels].mean()), 3),
        "accuracy_at_profile_threshold": round(
            float(np.mean(((1 - s) <= profile.thresholds.max_distance) == labels)), 4
        ),
        "face_free_images_with_a_face": negatives_with_faces,
    }


def run_calibration() -> dict[str, Any]:
    default = load_profile("default")
    with_yunet = FaceProfile.model_validate({**default.model_dump(), "detector": YUNET.model_dump()})
    return {"calibration": [asyncio.run(calibrate_one(p)) for p in (default, with_yunet)]}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--calibrate", action="store_true", help="detector/threshold calibration only")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scene-repeats", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.monotonic()
    result = run_calibration() if args.calibrate else run_throughput(args)
    argv = sys.argv[1:] if argv is None else list(argv)
    result |= run_fields("bench.bench_faces", argv, started, onnxruntime=ort.__version__)
    out = write_result(f"faces-{'calibration-' if args.calibrate else ''}", result)
    print(json.dumps(result, indent=2))
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
