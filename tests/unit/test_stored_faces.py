"""Faces in the result store (real default-profile models in-process, real photos, real SQLite):
an unchanged photo is embedded once; its faces come back bit for bit; another recipe or gate, or a
changed file, embeds again."""

from __future__ import annotations

import asyncio
import os
import shutil
from pathlib import Path

import numpy as np

from bench.in_process import OrtSession
from stash_vision.server.faces.identification import FaceIdentification
from stash_vision.server.faces.index_holder import IndexHolder
from stash_vision.server.faces.profile import load_profile
from stash_vision.server.faces.stored_faces import decode, encode
from stash_vision.server.image_source import ImageLoader, ImagePath
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.results.cache import ResultCache
from stash_vision.server.results.store import ResultStore
from stash_vision.server.workers import CpuPool
from tests.conftest import shared_file
from tests.unit.test_face_pipeline import RecordingSession, default_files, default_pipeline  # noqa: F401 (fixture)


def test_unchanged_photo_is_embedded_once_and_comes_back_bit_for_bit(
    tmp_path: Path,
    default_files: dict[str, Path],  # noqa: F811 - the fixture imported above
) -> None:
    photo = Path(shutil.copy(shared_file("testdata/faces/deepface/img1.jpg"), tmp_path / "img1.jpg"))
    profile = load_profile("default")

    async def scenario() -> None:
        pool = CpuPool(2)
        session = RecordingSession(OrtSession(default_files, threads=2))
        loader = ImageLoader(MediaPaths([], {}), ImageLimits(10**8, 1 << 28))
        faces = FaceIdentification(
            profile,
            default_pipeline(session, pool),
            "",
            IndexHolder(tmp_path / "indexes", profile, pool),
            loader,
            loader.paths,
            pool,
            query_k=10,
            query_ef=50,
            max_images=10,
            results=ResultCache(ResultStore(tmp_path / "jobs.db", max_bytes=1 << 24)),
        )
        gates = faces.gates(None, None)
        first = await faces.embed(ImagePath(str(photo)), gates, False)
        calls = len(session.calls)
        assert first and calls > 0
        again = await faces.embed(ImagePath(str(photo)), gates, False)
        assert len(session.calls) == calls, "no detection or embedding for a stored photo"
        assert len(again) == len(first)
        for a, b in zip(first, again, strict=True):
            assert np.array_equal(a.face.box, b.face.box) and a.face.confidence == b.face.confidence
            assert all(np.array_equal(a.vectors[n], b.vectors[n]) for n in a.vectors)

        await faces.embed(ImagePath(str(photo)), faces.gates(0.99, None), False)
        assert len(session.calls) > calls, "other gates, other answer"
        calls = len(session.calls)
        os.utime(photo, ns=(1, 10**18))
        await faces.embed(ImagePath(str(photo)), gates, False)
        assert len(session.calls) > calls, "a changed file is embedded again"

    asyncio.run(scenario())


def test_encoding_round_trips_exactly() -> None:
    from stash_vision.server.faces.pipeline import EmbeddedFace
    from tests.unit.test_face_pipeline import synthetic_faces

    rng = np.random.default_rng(3)
    faces = [
        EmbeddedFace(face, {"facenet": rng.standard_normal(512).astype(np.float32)})
        for face in synthetic_faces(2)
    ]
    back = decode(encode(faces))
    assert all(
        np.array_equal(a.vectors["facenet"], b.vectors["facenet"]) for a, b in zip(faces, back, strict=True)
    )
    assert all(np.allclose(a.face.landmarks, b.face.landmarks) for a, b in zip(faces, back, strict=True))
