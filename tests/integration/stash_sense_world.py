"""A connected world for the Stash Sense routes, shared by their integration test and benchmark:
the Stash stand-in (real schema) with scenes made of known faces, a real stack pointed at it with
path mappings, and a face index of three performers who carry stash-box ids as Stash Sense's do.

Who is who (../shared/testdata/faces/deepface, identity_groups.txt): Alice is group00, Bea group01,
Cora group02; each is enrolled from some photos, and the others (held out) are what Stash serves:
image 3 (img5, a file here), image 7 (img6, only through Stash), image 8 (img21, a zip member).
Scenes 10 and 11 are the same video of Alice's held-out photos, 10 readable here (under
/stash-gen, mapped), 11 only as Stash's stream; 12 and 13 have no file here and a stream that
breaks off before its first frame, 13 with a screenshot of Alice."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np

from tests.conftest import shared_dir
from tests.stack import Stack, cli, start_stack
from tests.standins.fixtures import STASH_KEY, stash_schema
from tests.standins.stash import REMOTE_PATH, STASH_PATH, StashStandIn, default_fixtures, make_zip

FACES = "testdata/faces/deepface"
GENERATED_PATH = "/stash-gen"  # where Stash sees the videos a test makes
ALICE, BEA, CORA = "6f6a-alice", "0bea-0000-4000-8000-0000000000be", "6f6a-cora"  # stash-box UUIDs
ENROLMENT = {
    "Alice": (["img1.jpg", "img2.jpg", "img4.jpg"], ALICE),
    "Bea": (["img13.jpg", "img15.jpg"], BEA),
    "Cora": (["img20.jpg"], CORA),
}
SCENE_PHOTOS = ["img7.jpg", "img10.jpg"]  # Alice, held out
SCREENSHOT = "img11.jpg"  # Alice, held out
MODELS = ["scrfd_500m", "mobilefacenet"]  # the default face profile


def photo(name: str) -> Path:
    return shared_dir() / FACES / name


def face_video(path: Path, photos: list[Path], seconds: float, fps: int, size: tuple[int, int]) -> Path:
    """An MPEG-4 video showing the photos in turn (a second-long keyframe spacing, as encoders
    make), each letterboxed into `size`."""
    width, height = size
    frames = []
    for source in photos:
        image = cv2.imread(str(source))
        scale = min(width / image.shape[1], height / image.shape[0])
        resized = cv2.resize(
            image, (int(image.shape[1] * scale) // 2 * 2, int(image.shape[0] * scale) // 2 * 2)
        )
        canvas = np.zeros((height, width, 3), np.uint8)
        top, left = (height - resized.shape[0]) // 2, (width - resized.shape[1]) // 2
        canvas[top : top + resized.shape[0], left : left + resized.shape[1]] = resized
        frames.append(canvas)
    total = int(seconds * fps)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.gop_size = fps
        stream.bit_rate = 2_000_000
        for n in range(total):
            image = frames[(n * len(frames)) // total]
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def broken_stream(path: Path) -> Path:
    """The head of a real AVI: it opens (Stash reports a duration) but gives no frame."""
    path.write_bytes((shared_dir() / "testdata/video/Megamind.avi").read_bytes()[:12_000])
    return path


def enrolment_folder(folder: Path) -> Path:
    for name, (photos, uuid) in ENROLMENT.items():
        person = folder / name.lower()
        person.mkdir(parents=True)
        for source in photos:
            os.symlink(photo(source), person / source)
        metadata = {
            "name": name,
            "stash_ids": [{"endpoint": "https://stashdb.org/graphql", "stash_id": uuid}],
            "image_url": f"https://stashdb.org/images/{uuid}.jpg",
        }
        (person / "performer.json").write_text(json.dumps(metadata))
    return folder


@dataclass
class World:
    stash: StashStandIn
    stack: Stack
    generated: Path


def add_scenes(stash: StashStandIn, generated: Path, video: Path) -> None:
    scenes = stash.fx.scenes
    scenes["10"] = {
        "id": "10",
        "_real": video,
        "_path": f"{GENERATED_PATH}/{video.name}",
        "_performers": ["1"],
    }
    scenes["11"] = {"id": "11", "_real": video, "_path": f"{REMOTE_PATH}/{video.name}", "_performers": ["1"]}
    broken = broken_stream(generated / "broken.avi")
    for scene_id in ("12", "13"):
        scenes[scene_id] = {
            "id": scene_id,
            "_real": broken,
            "_path": f"{REMOTE_PATH}/broken.avi",
            "_performers": [],
        }
    scenes["10"]["_screenshot"] = scenes["13"]["_screenshot"] = photo(SCREENSHOT)


@contextmanager
def stash_sense_world(
    work: Path,
    *,
    video_seconds: float = 12.0,
    video_size: tuple[int, int] = (640, 480),
    fps: int = 10,
    models: list[str] = MODELS,
    extra_env: dict[str, str] | None = None,
) -> Iterator[World]:
    testdata = shared_dir() / "testdata"
    generated = work / "generated"
    generated.mkdir(parents=True)
    zip_path = make_zip(testdata, generated)
    video = face_video(
        generated / "alice.mp4", [photo(p) for p in SCENE_PHOTOS], video_seconds, fps, video_size
    )
    with StashStandIn(stash_schema(), default_fixtures(testdata, zip_path), api_key=STASH_KEY) as stash:
        add_scenes(stash, generated, video)
        mappings = {
            STASH_PATH: str(testdata),
            f"{STASH_PATH}/archive.zip": str(zip_path),
            GENERATED_PATH: str(generated),
        }
        stack = start_stack(
            work / "stack",
            shared_dir() / "models",
            models=models,
            extra_env={
                **(extra_env or {}),
                "STASH_VISION_STASH_URL": stash.url,
                "STASH_VISION_STASH_API_KEY": STASH_KEY,
                "STASH_VISION_PATH_MAPPINGS": json.dumps(mappings),
            },
        )
        try:
            folder = enrolment_folder(work / "enrol")
            built = cli(
                {**stack.env, "STASH_VISION_SERVER_URL": stack.grpc_target}, "index", "build", str(folder)
            )
            if built.returncode != 0:
                raise RuntimeError(f"index build failed:\n{built.stdout}\n{built.stderr}")
            yield World(stash, stack, generated)
        finally:
            stack.stop()
            shutil.rmtree(generated, ignore_errors=True)
