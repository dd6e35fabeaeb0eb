"""Face identification end to end on the real stack (SCRFD + MobileFaceNet in Triton), with the
real photos of ../shared/testdata/faces/deepface: the issue's accuracy proofs, the index builder,
galleries, a real video, and bad input."""

from __future__ import annotations

import csv
import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import grpc
import numpy as np
import pytest

from stash_vision.v1 import faces_pb2, faces_pb2_grpc, media_pb2
from tests.conftest import shared_dir, shared_file
from tests.integration.grpc_helpers import channel
from tests.stack import Stack, cli

pytestmark = pytest.mark.integration

FACES = "testdata/faces/deepface"


def identity_groups() -> dict[str, list[str]]:
    groups = {}
    for line in shared_file(f"{FACES}/identity_groups.txt").read_text().splitlines():
        name, _, files = line.partition(":")
        if files.split():
            groups[name.strip()] = files.split()
    return groups


def same_person() -> Callable[[str], str]:
    """Photo -> a representative photo of its person, from the labelled pairs of the pivot CSV and
    master.csv (the pivot CSV labels more pairs: e.g. img53-56 are group04's person)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    pairs = [
        (r["file_x"].rsplit("/", 1)[-1], r["file_y"].rsplit("/", 1)[-1], r["decision"] == "Yes")
        for r in csv.DictReader(shared_file(f"{FACES}/face-recognition-pivot.csv").open())
    ] + [
        (r["file_x"], r["file_y"], r["Decision"] == "Yes")
        for r in csv.DictReader(shared_file(f"{FACES}/master.csv").open())
    ]
    for a, b, same in pairs:
        find(a), find(b)
        if same:
            parent[find(a)] = find(b)
    return find


def people_not_in_groups() -> list[str]:
    """Photos whose person is in no identity group. Photos the labelled pairs tie to a group
    member are left out, so only truly unknown people remain."""
    enrolled = {f for files in identity_groups().values() for f in files}
    find = same_person()
    enrolled_roots = {find(f) for f in enrolled}
    photos = sorted(p.name for p in shared_dir().joinpath(FACES).glob("img*.jpg"))
    return [p for p in photos if p not in enrolled and find(p) not in enrolled_roots and "_" not in p]


@pytest.fixture(scope="module")
def stub(stack: Stack) -> faces_pb2_grpc.FaceServiceStub:
    return faces_pb2_grpc.FaceServiceStub(channel(stack.grpc_target))


def image(name: str) -> media_pb2.ImageSource:
    return media_pb2.ImageSource(path=str(shared_file(f"{FACES}/{name}")))


def build_index(stack: Stack, folder: Path) -> str:
    env = {**stack.env, "STASH_VISION_SERVER_URL": stack.grpc_target}
    result = cli(env, "index", "build", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def left_out(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Index of every identity group minus one photo per group of two or more; returns the
    left-out photo -> group."""
    folder = tmp_path_factory.mktemp("enrol")
    held_out = {}
    for group, files in identity_groups().items():
        (folder / group).mkdir()
        if len(files) >= 2:
            held_out[files[-1]] = group
            files = files[:-1]
        for name in files:
            os.symlink(shared_file(f"{FACES}/{name}"), folder / group / name)
    (folder / "group00" / "performer.json").write_text(
        '{"name": "Group Zero", "aliases": ["G0"], "stash_ids": [{"endpoint": "stashdb.org", "stash_id": "0000-aaaa"}]}'
    )
    output = build_index(stack, folder)
    assert "published as current" in output
    return held_out


def test_compare_faces_over_the_labelled_pairs(stub: faces_pb2_grpc.FaceServiceStub) -> None:
    """ROC AUC >= 0.99 and accuracy >= 0.97 at the profile's own threshold, over all 300 pairs."""
    rows = list(csv.DictReader(shared_file(f"{FACES}/master.csv").open()))
    assert len(rows) == 300
    similarities, same = [], []
    threshold = None
    for row in rows:
        response = stub.CompareFaces(
            faces_pb2.CompareFacesRequest(first=image(row["file_x"]), second=image(row["file_y"])), timeout=60
        )
        assert response.answered_by.profile == "default"
        assert response.pairs, f"no face pair for {row}"
        # The largest face of each photo (faces are listed largest first).
        pair = next(p for p in response.pairs if p.first_face == 0 and p.second_face == 0)
        similarities.append(pair.similarity)
        same.append(row["Decision"] == "Yes")
        threshold = response.same_person_distance
        assert pair.same_person == (pair.distance <= threshold)
    sims, labels = np.array(similarities), np.array(same)
    positives, negatives = sims[labels], sims[~labels]
    auc = float(
        np.mean(positives[:, None] > negatives[None, :])
        + 0.5 * np.mean(positives[:, None] == negatives[None, :])
    )
    accuracy = float(np.mean(((1 - sims) <= threshold) == labels))
    assert auc >= 0.99, auc
    assert accuracy >= 0.97, accuracy


def test_leave_one_out_identification(stub: faces_pb2_grpc.FaceServiceStub, left_out: dict[str, str]) -> None:
    info = stub.GetFaceIndex(faces_pb2.GetFaceIndexRequest(), timeout=30)
    assert info.index_loaded, info.index_problem
    assert info.performer_count == len(identity_groups())
    correct = 0
    for photo, group in left_out.items():
        response = stub.IdentifyImage(faces_pb2.IdentifyImageRequest(image=image(photo)), timeout=60)
        assert response.answered_by.index_version == info.answered_by.index_version
        assert response.faces
        matches = response.faces[0].matches
        expected = "stashdb.org:0000-aaaa" if group == "group00" else f"local:{group}"
        if matches and matches[0].performer.id == expected:
            correct += 1
        for match in matches:
            assert match.distance <= info.max_distance
    assert correct / len(left_out) >= 0.95, f"{correct} of {len(left_out)}"


def test_unknown_people_are_answered_unknown(
    stub: faces_pb2_grpc.FaceServiceStub, left_out: dict[str, str]
) -> None:
    unknown = people_not_in_groups()
    assert len(unknown) >= 20
    answered_unknown = 0
    for photo in unknown:
        response = stub.IdentifyImage(faces_pb2.IdentifyImageRequest(image=image(photo)), timeout=60)
        if all(not face.matches for face in response.faces):
            answered_unknown += 1
    assert answered_unknown / len(unknown) >= 0.9, f"{answered_unknown} of {len(unknown)}"


def test_images_without_people_have_no_faces(stub: faces_pb2_grpc.FaceServiceStub) -> None:
    for path in sorted(shared_dir().joinpath("testdata/images").iterdir()):
        response = stub.DetectFaces(
            faces_pb2.DetectFacesRequest(image=media_pb2.ImageSource(path=str(path))), timeout=60
        )
        assert len(response.faces) == 0, path.name


def test_performer_metadata_and_one_performer_per_face(
    stub: faces_pb2_grpc.FaceServiceStub, left_out: dict[str, str]
) -> None:
    response = stub.IdentifyImage(faces_pb2.IdentifyImageRequest(image=image("img2.jpg")), timeout=60)
    best = response.faces[0].matches[0].performer
    assert (best.name, list(best.aliases)) == ("Group Zero", ["G0"])
    assert [(s.endpoint, s.stash_id) for s in best.stash_ids] == [("stashdb.org", "0000-aaaa")]
    # Many people in one picture: no performer is given to two faces.
    crowd = stub.IdentifyImage(
        faces_pb2.IdentifyImageRequest(image=image("selfie-many-people.jpg")), timeout=60
    )
    assert len(crowd.faces) >= 5
    firsts = [face.matches[0].performer.id for face in crowd.faces if face.matches]
    assert len(firsts) == len(set(firsts))


def test_gallery_votes_for_the_person_it_shows(
    stub: faces_pb2_grpc.FaceServiceStub, left_out: dict[str, str]
) -> None:
    photos = ["img1.jpg", "img2.jpg", "img4.jpg", "baboon.jpg", "missing.jpg"]
    sources = [image(p) for p in photos[:3]] + [
        media_pb2.ImageSource(path=str(shared_file("testdata/images/baboon.jpg"))),
        media_pb2.ImageSource(path="/nonexistent/missing.jpg"),
    ]
    response = stub.IdentifyGallery(faces_pb2.IdentifyGalleryRequest(images=sources), timeout=120)
    assert response.total_images == 5
    assert response.images_processed == 4
    assert [e.image_index for e in response.errors] == [4]
    assert "not found" in response.errors[0].message
    top = response.performers[0]
    assert top.best_match.performer.id == "stashdb.org:0000-aaaa"
    assert top.image_count == 3 and list(top.image_indexes) == [0, 1, 2]
    assert top.vote_share == pytest.approx(1.0)


def test_video_frames_clusters_and_time_ranges(
    stub: faces_pb2_grpc.FaceServiceStub, left_out: dict[str, str]
) -> None:
    video = shared_file("testdata/video/Megamind.avi")
    events = list(
        stub.IdentifyVideo(faces_pb2.IdentifyVideoRequest(path=str(video), num_frames=30), timeout=300)
    )
    assert events[-1].WhichOneof("event") == "result"
    assert any(e.WhichOneof("event") == "progress" for e in events[:-1])
    result = events[-1].result
    assert result.frames_requested == 30 and result.frames_analyzed == 30 and not result.partial
    assert 11.0 < result.duration < 11.6
    assert result.faces_after_filter <= result.faces_detected
    assert result.persons, "Megamind shows animated faces: at least one person"
    sightings = 0
    for person in result.persons:
        frames = sorted({s.frame_index for s in person.sightings})
        assert person.frame_count == len(frames)
        # One face per person per frame is not required, but each sighting is inside a range.
        for s in person.sightings:
            assert 0.05 * result.duration - 0.1 <= s.time_seconds <= 0.95 * result.duration + 0.1
            assert any(r.start - 1e-6 <= s.time_seconds <= r.end + 1e-6 for r in person.time_ranges)
        assert all(r.start <= r.end for r in person.time_ranges)
        # Nobody in Megamind is in the index: no match may be invented.
        assert not person.HasField("best_match")
        sightings += len(person.sightings)
    assert sightings == result.faces_after_filter


def test_truncated_video_is_a_partial_result(
    stub: faces_pb2_grpc.FaceServiceStub, left_out: dict[str, str], tmp_path: Path
) -> None:
    # The first 40 % of Megamind.avi: the header still announces 11.3 s, the frames stop early.
    data = shared_file("testdata/video/Megamind.avi").read_bytes()
    truncated = tmp_path / "truncated.avi"
    truncated.write_bytes(data[: len(data) * 4 // 10])
    events = list(
        stub.IdentifyVideo(faces_pb2.IdentifyVideoRequest(path=str(truncated), num_frames=20), timeout=300)
    )
    result = events[-1].result
    assert result.partial and "of 20 planned frames" in result.partial_reason
    assert 0 < result.frames_analyzed < 20


def test_damaged_video_answers_with_what_decodes(
    stub: faces_pb2_grpc.FaceServiceStub, left_out: dict[str, str]
) -> None:
    # tree.avi has damaged packets all through; frames around them still decode, and each sighting
    # carries the time of the frame actually used.
    video = shared_file("testdata/video/tree.avi")
    events = list(
        stub.IdentifyVideo(faces_pb2.IdentifyVideoRequest(path=str(video), num_frames=20), timeout=300)
    )
    result = events[-1].result
    assert result.frames_analyzed > 0
    assert result.partial == (result.frames_analyzed < result.frames_requested)


def test_not_a_video_is_a_clear_error(stub: faces_pb2_grpc.FaceServiceStub, left_out: dict[str, str]) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        list(
            stub.IdentifyVideo(
                faces_pb2.IdentifyVideoRequest(path=str(shared_file(f"{FACES}/img1.jpg"))), timeout=60
            )
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as missing:
        list(stub.IdentifyVideo(faces_pb2.IdentifyVideoRequest(path="/nope/scene.mp4"), timeout=60))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("request_factory", "code", "text"),
    [
        (
            lambda: faces_pb2.IdentifyImageRequest(image=media_pb2.ImageSource(data=b"not an image")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "not an image",
        ),
        (
            lambda: faces_pb2.IdentifyImageRequest(image=media_pb2.ImageSource(path="/nope/x.jpg")),
            grpc.StatusCode.NOT_FOUND,
            "not found",
        ),
        (lambda: faces_pb2.IdentifyImageRequest(), grpc.StatusCode.INVALID_ARGUMENT, "image is required"),
        (
            lambda: faces_pb2.IdentifyImageRequest(
                image=image("img1.jpg"), options=faces_pb2.IdentifyOptions(top_k=99)
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "top_k",
        ),
    ],
)
def test_bad_image_requests(
    stub: faces_pb2_grpc.FaceServiceStub,
    left_out: dict[str, str],
    request_factory: object,
    code: grpc.StatusCode,
    text: str,
) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        stub.IdentifyImage(request_factory(), timeout=30)  # type: ignore[operator]
    assert raised.value.code() == code
    assert text in raised.value.details().lower()


def test_odd_images_still_work(stub: faces_pb2_grpc.FaceServiceStub, tmp_path: Path) -> None:
    photo = cv2.imread(str(shared_file(f"{FACES}/img1.jpg")))
    gray = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)
    rgba = cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA)
    tiny = cv2.resize(photo, (24, 24))
    for name, pixels, faces in (("gray.png", gray, 1), ("rgba.png", rgba, 1), ("tiny.png", tiny, 0)):
        ok, encoded = cv2.imencode(".png", pixels)
        assert ok
        response = stub.DetectFaces(
            faces_pb2.DetectFacesRequest(image=media_pb2.ImageSource(data=encoded.tobytes())), timeout=60
        )
        assert len(response.faces) == faces, name


def faces_of(stub: faces_pb2_grpc.FaceServiceStub, name: str) -> Iterator[faces_pb2.Face]:
    yield from stub.DetectFaces(faces_pb2.DetectFacesRequest(image=image(name)), timeout=60).faces


def test_embeddings_are_normalised_and_landmarks_inside_boxes(stub: faces_pb2_grpc.FaceServiceStub) -> None:
    response = stub.EmbedFaces(faces_pb2.EmbedFacesRequest(image=image("couple.jpg")), timeout=60)
    assert len(response.faces) == 2
    for face in response.faces:
        (embedding,) = face.embeddings
        assert embedding.embedder == "mobilefacenet" and len(embedding.values) == 128
        assert np.linalg.norm(embedding.values) == pytest.approx(1.0, abs=1e-4)
        box = face.face.box
        for point in face.face.landmarks:
            assert box.x <= point.x <= box.x + box.width and box.y <= point.y <= box.y + box.height
    areas = [f.face.box.width * f.face.box.height for f in response.faces]
    assert areas == sorted(areas, reverse=True)
    assert list(itertools.islice(faces_of(stub, "couple.jpg"), 3))


def test_cancelled_scene_stops_and_the_server_goes_on(
    stack: Stack, stub: faces_pb2_grpc.FaceServiceStub, left_out: dict[str, str]
) -> None:
    video = shared_file("testdata/video/vtest.avi")
    call = stub.IdentifyVideo(faces_pb2.IdentifyVideoRequest(path=str(video), num_frames=600), timeout=300)
    first = next(call)
    assert first.WhichOneof("event") == "progress"
    call.cancel()
    # The server is still healthy and answers the next scene in full.
    events = list(
        stub.IdentifyVideo(
            faces_pb2.IdentifyVideoRequest(
                path=str(shared_file("testdata/video/Megamind.avi")), num_frames=10
            ),
            timeout=300,
        )
    )
    assert events[-1].result.frames_analyzed == 10
    assert "generator already executing" not in stack.log()
    assert "Traceback" not in stack.log()
