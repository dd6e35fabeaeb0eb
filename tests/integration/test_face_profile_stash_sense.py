"""The stash-sense profile on the real stack: SCRFD (real) plus synthetic FaceNet512 and ArcFace
stand-ins with the real models' signatures (the real weights cannot be fetched here). Proves the
plumbing: NHWC inputs at 160 and 112, flip averaging, two embedders fused per index row, an index
with both .voy files, and refusal of an index built with another profile's recipe."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from stash_vision.server.faces.index.records import PerformerRecord
from stash_vision.server.faces.index.writer import IndexWriter, publish
from stash_vision.server.faces.profile import load_profile
from stash_vision.v1 import faces_pb2, faces_pb2_grpc, media_pb2
from tests.conftest import shared_dir, shared_file
from tests.integration.grpc_helpers import channel
from tests.stack import Stack, cli, start_stack
from tests.synthetic_models import install_stash_sense_standins

pytestmark = pytest.mark.integration

FACES = "testdata/faces/deepface"


@pytest.fixture(scope="module")
def stash_sense_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("stash-sense")
    install_stash_sense_standins(workdir / "data")
    stack = start_stack(
        workdir,
        shared_dir() / "models",
        ["scrfd_500m", "facenet512", "arcface"],
        extra_env={"STASH_VISION_FACE_PROFILE": "stash-sense"},
        fetch=["scrfd_500m"],
    )
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def stub(stash_sense_stack: Stack) -> faces_pb2_grpc.FaceServiceStub:
    return faces_pb2_grpc.FaceServiceStub(channel(stash_sense_stack.grpc_target))


def image(name: str) -> media_pb2.ImageSource:
    return media_pb2.ImageSource(path=str(shared_file(f"{FACES}/{name}")))


def test_identification_without_an_index_says_how_to_build_one(stub: faces_pb2_grpc.FaceServiceStub) -> None:
    # This stack's own data dir: no index until a later test builds one (module order).
    info = stub.GetFaceIndex(faces_pb2.GetFaceIndexRequest(), timeout=30)
    assert not info.index_loaded and "index build" in info.index_problem
    with pytest.raises(grpc.RpcError) as raised:
        stub.IdentifyImage(faces_pb2.IdentifyImageRequest(image=image("img1.jpg")), timeout=30)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "stash-vision index build" in raised.value.details()


def test_two_embedders_with_their_own_layouts(stub: faces_pb2_grpc.FaceServiceStub) -> None:
    response = stub.EmbedFaces(faces_pb2.EmbedFacesRequest(image=image("couple.jpg")), timeout=60)
    assert response.answered_by.profile == "stash-sense"
    assert len(response.faces) == 2
    for face in response.faces:
        assert [e.embedder for e in face.embeddings] == ["facenet", "arcface"]
        for embedding in face.embeddings:
            assert len(embedding.values) == 512
            assert np.linalg.norm(embedding.values) == pytest.approx(1.0, abs=1e-4)


def test_compare_fuses_both_embedders(stub: faces_pb2_grpc.FaceServiceStub) -> None:
    response = stub.CompareFaces(
        faces_pb2.CompareFacesRequest(first=image("img1.jpg"), second=image("img1.jpg")), timeout=60
    )
    best = response.pairs[0]
    assert best.distance == pytest.approx(0.0, abs=1e-4)
    distances = {d.embedder: d.distance for d in best.embedder_distances}
    assert set(distances) == {"facenet", "arcface"}
    assert best.distance == pytest.approx(0.5 * distances["facenet"] + 0.5 * distances["arcface"], abs=1e-6)
    assert response.same_person_distance == pytest.approx(0.5)


def test_index_with_both_embedders_identifies(
    stash_sense_stack: Stack, stub: faces_pb2_grpc.FaceServiceStub, tmp_path: Path
) -> None:
    for group, names in {"alpha": ["img1.jpg", "img2.jpg"], "beta": ["img13.jpg", "img14.jpg"]}.items():
        (tmp_path / group).mkdir()
        for name in names:
            os.symlink(shared_file(f"{FACES}/{name}"), tmp_path / group / name)
    env = {**stash_sense_stack.env, "STASH_VISION_SERVER_URL": stash_sense_stack.grpc_target}
    built = cli(env, "index", "build", str(tmp_path))
    assert built.returncode == 0, built.stdout + built.stderr
    current = stash_sense_stack.data_dir / "face_indexes" / "stash-sense" / "current"
    assert sorted(p.name for p in current.resolve().glob("*.voy")) == ["face_arcface.voy", "face_facenet.voy"]
    response = stub.IdentifyImage(faces_pb2.IdentifyImageRequest(image=image("img1.jpg")), timeout=60)
    best = response.faces[0].matches[0]
    assert best.performer.id == "local:alpha"
    assert best.distance == pytest.approx(0.0, abs=1e-3)
    assert {d.embedder for d in best.embedder_distances} == {"facenet", "arcface"}
    assert response.answered_by.index_version


def test_index_of_another_profile_is_refused(
    stash_sense_stack: Stack, stub: faces_pb2_grpc.FaceServiceStub
) -> None:
    default = load_profile("default")
    writer = IndexWriter({"mobilefacenet": 128}, default.recipe(), 16, 200)
    writer.add_performer(PerformerRecord("local:x", "X", (), (), "", "", 0))
    vector = np.ones(128, np.float32) / np.sqrt(128)
    writer.add_face(
        "local:x", {"mobilefacenet": vector}, source="x.jpg", quality=1.0, yaw=0.0, detection_score=0.9
    )
    root = stash_sense_stack.data_dir / "face_indexes" / "stash-sense"
    target = root / "foreign"
    writer.write(target, "foreign", sources=["test"], detector="scrfd_500m")
    publish(root, target)
    info = stub.GetFaceIndex(faces_pb2.GetFaceIndexRequest(), timeout=30)
    assert not info.index_loaded
    assert "recipe" in info.index_problem or "embedder" in info.index_problem
    assert "index build" in info.index_problem
