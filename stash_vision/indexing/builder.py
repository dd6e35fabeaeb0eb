"""`stash-vision index build FOLDER`: enrol performers from FOLDER/<performer>/<images> into a new
face index version of the active profile, then publish it as `current`.

The builder is a client of the running server: faces are detected and embedded by the server's
EmbedFaces (so by Triton, with exactly the pipeline that will query the index) and the index files
are written here. Per image it keeps the largest face and applies the profile's enrollment gates
(face size, detector confidence, yaw); a face nearly identical to one already enrolled for the same
performer (the same photo twice, resized or re-encoded) is rejected as a duplicate.

An optional `performer.json` (or `.yaml`) in a performer's folder gives {name, aliases, country,
image_url, stash_ids: [{endpoint, stash_id}]}; the folder name is the name otherwise."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import numpy.typing as npt

from stash_vision.server.faces.index.writer import IndexWriter, publish
from stash_vision.server.faces.matching import fused_distance
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.faces.sources.base import SourceError
from stash_vision.server.faces.sources.folder import scan
from stash_vision.v1 import faces_pb2, faces_pb2_grpc, media_pb2

_CONCURRENT_REQUESTS = 8


class BuildError(RuntimeError):
    """The build cannot start or finish; the message says what to do."""


@dataclass
class BuildReport:
    version: str = ""
    folder: Path | None = None
    performers: int = 0
    faces: int = 0
    images: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    performers_without_faces: list[str] = field(default_factory=list)


async def _embed(
    stub: Any, image: Path, metadata: Sequence[tuple[str, str]], timeout_s: float
) -> faces_pb2.EmbedFacesResponse | str:
    try:
        data = image.read_bytes()
    except OSError as error:
        return f"unreadable: {error.strerror or error}"
    try:
        response: faces_pb2.EmbedFacesResponse = await stub.EmbedFaces(
            faces_pb2.EmbedFacesRequest(
                image=media_pb2.ImageSource(data=data),
                # Gates are applied here, on the largest face; the server only drops tiny specks.
                filter=faces_pb2.FaceFilter(min_confidence=0.3, min_face_size=8),
            ),
            timeout=timeout_s,
            metadata=metadata,
        )
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.RESOURCE_EXHAUSTED):
            return f"rejected by the server: {error.details()}"
        raise
    return response


async def build(
    root: Path,
    profile: FaceProfile,
    indexes_dir: Path,
    server_target: str,
    *,
    m: int,
    ef_construction: int,
    api_key: str | None = None,
    timeout_s: float = 120.0,
    log: Callable[[str], None] = print,
) -> BuildReport:
    try:
        performers = scan(root)
    except SourceError as error:
        raise BuildError(str(error)) from None
    metadata = [("x-api-key", api_key)] if api_key else []
    report = BuildReport()
    async with grpc.aio.insecure_channel(
        server_target, options=[("grpc.max_send_message_length", 64 * 1024 * 1024)]
    ) as channel:
        stub = faces_pb2_grpc.FaceServiceStub(channel)
        try:
            info: faces_pb2.GetFaceIndexResponse = await stub.GetFaceIndex(
                faces_pb2.GetFaceIndexRequest(), timeout=10, metadata=metadata
            )
        except grpc.aio.AioRpcError as error:
            raise BuildError(
                f"cannot reach the stash-vision server at {server_target} ({error.code().name}: "
                f"{error.details()}); start it with `stash-vision serve` (or scripts/serve)"
            ) from None
        if info.answered_by.profile != profile.name:
            raise BuildError(
                f"the server runs face profile {info.answered_by.profile!r} but this build is for "
                f"{profile.name!r}; set STASH_VISION_FACE_PROFILE the same for both"
            )
        writer = IndexWriter(
            {e.name: e.dimensions for e in profile.embedders}, profile.recipe(), m, ef_construction
        )
        gates = profile.enrollment
        weights = profile.weights()
        slots = asyncio.Semaphore(_CONCURRENT_REQUESTS)

        async def embed_one(image: Path) -> faces_pb2.EmbedFacesResponse | str:
            async with slots:
                return await _embed(stub, image, metadata, timeout_s)

        for performer in performers:
            writer.add_performer(performer.record)
            results = await asyncio.gather(*(embed_one(image) for image in performer.images))
            enrolled: list[dict[str, npt.NDArray[np.float32]]] = []
            for image, result in zip(performer.images, results, strict=True):
                report.images += 1
                if isinstance(result, str):
                    report.rejected["unreadable"] += 1
                    log(f"  skip {image}: {result}")
                    continue
                if not result.faces:
                    report.rejected["no face"] += 1
                    continue
                largest = result.faces[0]
                box = largest.face.box
                if min(box.width, box.height) < gates.min_face_size:
                    report.rejected["face too small"] += 1
                    continue
                if largest.face.confidence < gates.min_face_confidence:
                    report.rejected["low detector confidence"] += 1
                    continue
                if abs(largest.face.yaw_degrees) > gates.max_abs_yaw_degrees:
                    report.rejected["turned away (yaw)"] += 1
                    continue
                vectors = {e.embedder: np.asarray(e.values, np.float32) for e in largest.embeddings}
                if any(
                    fused_distance(vectors, seen, weights)[0] < gates.duplicate_distance for seen in enrolled
                ):
                    report.rejected["near duplicate"] += 1
                    continue
                enrolled.append(vectors)
                writer.add_face(
                    performer.record.id,
                    vectors,
                    source=str(image),
                    quality=min(1.0, box.width * box.height / 10000.0 * largest.face.confidence),
                    yaw=largest.face.yaw_degrees,
                    detection_score=largest.face.confidence,
                )
            report.faces += len(enrolled)
            if enrolled:
                report.performers += 1
            else:
                report.performers_without_faces.append(performer.record.name)
            log(f"{performer.record.name}: {len(enrolled)} of {len(performer.images)} images enrolled")
    if report.faces == 0:
        raise BuildError(f"no face passed the enrollment gates in {root}; nothing was written")
    version = dt.datetime.now(dt.UTC).strftime("%Y.%m.%d-%H%M%S")
    target = indexes_dir / profile.name / version
    writer.write(target, version, sources=[str(root)], detector=profile.detector.model)
    publish(indexes_dir / profile.name, target)
    report.version, report.folder = version, target
    return report
