"""Face index: write -> load -> query with real Voyager and SQLite, and every refusal on load."""

from __future__ import annotations

import json
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from stash_vision.server.faces.index import (
    ChecksumMismatchError,
    FaceIndex,
    FaceIndexError,
    IndexBuildError,
    IndexCorruptError,
    IndexFileMissingError,
    IndexIncompatibleError,
    IndexManifest,
    IndexNotFoundError,
    IndexQueryError,
    IndexWriter,
    PerformerRecord,
    RecipeMismatchError,
    current_index_folder,
    publish,
    read_manifest,
)
from stash_vision.server.faces.index import writer as writer_module
from stash_vision.server.faces.index.layout import sha256_file

DIMS = {"facenet": 32, "arcface": 24}
EMBEDDERS = ["facenet", "arcface"]
RECIPE: dict[str, Any] = {
    "detector": {"model": "scrfd_500m", "det_size": 640, "min_score": 0.8},
    "alignment": "norm_crop_112",
    "facenet": {"input": [160, 160], "mean": 127.5, "scale": 127.5, "flip_average": True},
    "arcface": {"input": [112, 112], "mean": 127.5, "scale": 128.0, "flip_average": True},
}
PERFORMERS = 12
FACES_PER_PERFORMER = 3


def _unit(v: npt.NDArray[np.floating[Any]]) -> npt.NDArray[np.float32]:
    return np.asarray(v / np.linalg.norm(v, axis=-1, keepdims=True), dtype=np.float32)


class Gallery:
    """Synthetic faces: a centre per performer and embedder, faces = centre + noise."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.ids = [f"stashdb.org:{i:08d}-0000-0000-0000-000000000000" for i in range(PERFORMERS)]
        self.centres = {
            name: _unit(self.rng.standard_normal((PERFORMERS, dim))) for name, dim in DIMS.items()
        }
        self.vectors: dict[str, list[npt.NDArray[np.float32]]] = {name: [] for name in DIMS}
        self.row_performer: list[int] = []

    def face(self, performer: int) -> dict[str, npt.NDArray[np.float32]]:
        return {
            name: _unit(self.centres[name][performer] + 0.3 * self.rng.standard_normal(dim) / np.sqrt(dim))
            for name, dim in DIMS.items()
        }


def _record(gallery: Gallery, i: int) -> PerformerRecord:
    return PerformerRecord(
        id=gallery.ids[i],
        name=f"Performer {i}",
        aliases=(f"Alias {i}", f"Other {i}"),
        stash_ids=(("https://stashdb.org/graphql", gallery.ids[i].split(":", 1)[1]),),
        country="DE" if i % 2 else None,
        image_url=f"https://example.org/{i}.jpg",
    )


def _build(
    folder: Path, gallery: Gallery | None = None, *, faces: bool = True, version: str = "2026.11.21"
) -> Gallery:
    gallery = gallery or Gallery()
    writer = IndexWriter(DIMS, RECIPE, M=12, ef_construction=100)
    for i in range(PERFORMERS):
        writer.add_performer(_record(gallery, i))
    if faces:
        for _ in range(FACES_PER_PERFORMER):
            for i in range(PERFORMERS):
                face = gallery.face(i)
                row = writer.add_face(
                    gallery.ids[i], face, source="stashdb", quality=0.9, yaw=-3.5, detection_score=0.95
                )
                assert row == len(gallery.row_performer)
                gallery.row_performer.append(i)
                for name in DIMS:
                    gallery.vectors[name].append(face[name])
    writer.write(folder, version=version, sources=["stashdb.org"], detector="scrfd_500m")
    return gallery


def _load(
    folder: Path, recipe: dict[str, Any] | None = None, embedders: list[str] | None = None
) -> FaceIndex:
    return FaceIndex.load(
        folder, embedders or EMBEDDERS, RECIPE if recipe is None else recipe, profile="stash-sense"
    )


def _rewrite(folder: Path, name: str, data: Any) -> None:
    """Replace a file and refresh its checksum, as a consistent (but different) build would have it."""
    (folder / name).write_text(json.dumps(data), encoding="utf-8")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["checksums"][name] = sha256_file(folder / name)
    (folder / "manifest.json").write_text(json.dumps(manifest))


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Gallery]:
    folder = tmp_path_factory.mktemp("index") / "v1"
    return folder, _build(folder)


# -- round trip ---------------------------------------------------------------------------------
def test_round_trip_finds_the_right_rows(built: tuple[Path, Gallery]) -> None:
    folder, gallery = built
    index = _load(folder)
    rows = len(gallery.row_performer)
    assert (index.version, index.face_count, index.performer_count) == ("2026.11.21", rows, PERFORMERS)
    assert index.embedders == ("facenet", "arcface")
    assert dict(index.dims) == DIMS

    stored = np.stack(gallery.vectors["facenet"])
    results = index.query({"facenet": stored}, k=5, query_ef=50)
    ids, distances = results["facenet"]
    assert ids.shape == distances.shape == (rows, 5)
    assert ids.dtype == np.int64 and distances.dtype == np.float32
    assert (ids[:, 0] == np.arange(rows)).all()
    assert np.allclose(distances[:, 0], 0.0, atol=1e-5)
    assert (distances >= 0.0).all()  # clamped: Voyager returns about -2e-7 for an exact match
    assert (np.diff(distances, axis=1) >= -1e-6).all()

    # A new face of each performer: its nearest rows belong to that performer; distance is 1 - cos.
    fresh = [gallery.face(i) for i in range(PERFORMERS)]
    ids, distances = index.query({"facenet": np.stack([f["facenet"] for f in fresh])}, k=3, query_ef=50)[
        "facenet"
    ]
    for i in range(PERFORMERS):
        record = index.performer_of_row(int(ids[i, 0]))
        assert record is not None and record.id == gallery.ids[i]
        expected = 1.0 - float(fresh[i]["facenet"] @ gallery.vectors["facenet"][int(ids[i, 0])])
        assert distances[i, 0] == pytest.approx(expected, abs=1e-5)


def test_performer_records_and_manifest(built: tuple[Path, Gallery]) -> None:
    folder, gallery = built
    index = _load(folder)
    record = index.performer(gallery.ids[3])
    assert record == PerformerRecord(
        id=gallery.ids[3],
        name="Performer 3",
        aliases=("Alias 3", "Other 3"),
        stash_ids=(("https://stashdb.org/graphql", gallery.ids[3].split(":", 1)[1]),),
        country="DE",
        image_url="https://example.org/3.jpg",
        face_count=FACES_PER_PERFORMER,
    )
    assert index.performer("stashdb.org:nobody") is None
    manifest = index.manifest
    assert manifest.recipe == RECIPE
    assert manifest.voyager is not None
    assert (manifest.voyager.space, manifest.voyager.M, manifest.voyager.ef_construction) == (
        "cosine",
        12,
        100,
    )
    assert manifest.voyager.embedders == EMBEDDERS
    assert manifest.models == {"detector": "scrfd_500m", "facenet_dim": 32, "arcface_dim": 24}
    assert set(manifest.checksums) == {
        "face_facenet.voy",
        "face_arcface.voy",
        "faces.json",
        "performers.json",
        "performers.db",
    }
    assert all(value.startswith("sha256:") for value in manifest.checksums.values())
    # The performers.json layout is Stash Sense's, plus aliases and stash_ids.
    entry = json.loads((folder / "performers.json").read_text())[gallery.ids[3]]
    assert {"name", "country", "image_url", "face_count", "aliases", "stash_ids"} <= set(entry)


def test_ids_line_up_across_embedders(built: tuple[Path, Gallery]) -> None:
    folder, gallery = built
    index = _load(folder)
    queries = {name: np.stack(gallery.vectors[name]) for name in DIMS}
    results = index.query(queries, k=1, query_ef=20)
    assert (results["facenet"][0][:, 0] == results["arcface"][0][:, 0]).all()
    assert (results["arcface"][0][:, 0] == np.arange(len(gallery.row_performer))).all()

    with sqlite3.connect(folder / "performers.db") as db:
        faces = db.execute(
            "SELECT f.row, f.facenet_index, f.arcface_index, p.universal_id, f.source_endpoint, f.yaw, "
            "f.detection_score FROM faces f JOIN performers p ON p.id = f.performer_id ORDER BY f.row"
        ).fetchall()
        assert [row[0] for row in faces] == list(range(len(gallery.row_performer)))
        assert all(row[0] == row[1] == row[2] for row in faces)
        assert [row[3] for row in faces] == [gallery.ids[i] for i in gallery.row_performer]
        assert faces[0][4:] == ("stashdb", -3.5, 0.95)
        aliases = db.execute("SELECT count(*) FROM aliases").fetchone()[0]
        stash_ids = db.execute("SELECT count(*) FROM stashbox_ids").fetchone()[0]
        assert (aliases, stash_ids) == (2 * PERFORMERS, PERFORMERS)


def test_loading_a_subset_of_embedders(built: tuple[Path, Gallery]) -> None:
    folder, _ = built
    index = _load(folder, embedders=["arcface"])
    assert index.embedders == ("arcface",)
    with pytest.raises(IndexQueryError, match="facenet"):
        index.query({"facenet": np.ones((1, 32), np.float32)}, k=1, query_ef=10)


def test_query_validation_and_small_k(built: tuple[Path, Gallery]) -> None:
    folder, gallery = built
    index = _load(folder)
    rows = len(gallery.row_performer)
    ids, _ = index.query({"arcface": np.ones((2, 24), np.float32)}, k=rows + 50, query_ef=5)["arcface"]
    assert ids.shape == (2, rows)  # k' = min(k, rows); query_ef is raised to k'
    assert sorted(ids[0].tolist()) == list(range(rows))
    empty = index.query({"arcface": np.empty((0, 24), np.float32)}, k=3, query_ef=10)["arcface"]
    assert empty[0].shape == (0, 3)
    good = np.ones((1, 24), np.float32)
    bad_calls: list[tuple[dict[str, npt.NDArray[np.float32]], int, int]] = [
        ({"arcface": np.ones((1, 23), np.float32)}, 1, 10),
        ({"arcface": np.ones(24, np.float32)}, 1, 10),
        ({"arcface": np.full((1, 24), np.nan, np.float32)}, 1, 10),
        ({"arcface": good}, 0, 10),
        ({"arcface": good}, 1, 0),
        ({"adaface": good}, 1, 10),
    ]
    for vectors, k, query_ef in bad_calls:
        with pytest.raises(IndexQueryError):
            index.query(vectors, k=k, query_ef=query_ef)


def test_concurrent_queries_match_sequential(built: tuple[Path, Gallery]) -> None:
    folder, gallery = built
    index = _load(folder)
    queries = [gallery.face(i % PERFORMERS) for i in range(64)]

    def one(face: dict[str, npt.NDArray[np.float32]]) -> dict[str, tuple[Any, Any]]:
        return index.query({name: vector[None, :] for name, vector in face.items()}, k=4, query_ef=30)

    sequential = [one(face) for face in queries]
    with ThreadPoolExecutor(8) as pool:
        concurrent = list(pool.map(one, queries))
    for a, b in zip(sequential, concurrent, strict=True):
        for name in DIMS:
            assert (a[name][0] == b[name][0]).all() and (a[name][1] == b[name][1]).all()


# -- gaps, empty index --------------------------------------------------------------------------
def test_null_rows_are_gaps(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    gallery = _build(folder)
    faces = json.loads((folder / "faces.json").read_text())
    faces[4] = None
    faces.append(None)  # faces.json may be longer than the indices
    _rewrite(folder, "faces.json", faces)
    index = _load(folder)
    assert index.performer_of_row(4) is None
    assert index.performer_of_row(len(faces) - 1) is None
    assert index.performer_of_row(len(faces) + 10) is None
    assert index.performer_of_row(-1) is None
    record = index.performer_of_row(5)
    assert record is not None and record.id == gallery.ids[gallery.row_performer[5]]
    # The row's vector is still searchable; the caller skips it because it maps to no performer.
    ids, _ = index.query({"facenet": gallery.vectors["facenet"][4][None, :]}, k=1, query_ef=20)["facenet"]
    assert ids[0, 0] == 4


def test_faces_json_shorter_than_the_indices_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    _build(folder)
    faces = json.loads((folder / "faces.json").read_text())
    _rewrite(folder, "faces.json", faces[:-1])
    with pytest.raises(IndexCorruptError, match=r"faces\.json maps"):
        _load(folder)


def test_empty_index_loads_and_queries(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    _build(folder, faces=False)
    index = _load(folder)
    assert (index.face_count, index.performer_count) == (0, PERFORMERS)
    results = index.query(
        {"facenet": np.ones((3, 32), np.float32), "arcface": np.ones((1, 24), np.float32)}, k=10, query_ef=50
    )
    assert results["facenet"][0].shape == results["facenet"][1].shape == (3, 0)
    assert results["arcface"][0].shape == (1, 0)
    assert index.performer_of_row(0) is None

    nobody = tmp_path / "nobody"
    IndexWriter(DIMS, RECIPE).write(nobody, version="0", sources=[], detector="scrfd_500m")
    assert _load(nobody).performer_count == 0


# -- refusals -----------------------------------------------------------------------------------
def test_checksum_tamper_names_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    _build(folder)
    path = folder / "face_arcface.voy"
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ChecksumMismatchError, match=r"face_arcface\.voy") as caught:
        _load(folder)
    assert caught.value.file == "face_arcface.voy"
    assert isinstance(caught.value, FaceIndexError)

    folder2 = tmp_path / "v2"
    _build(folder2)
    (folder2 / "faces.json").write_text((folder2 / "faces.json").read_text().replace("stashdb", "fansdb", 1))
    with pytest.raises(ChecksumMismatchError, match=r"checksum mismatch for faces\.json"):
        _load(folder2)


def test_recipe_mismatch_names_the_differing_keys(built: tuple[Path, Gallery]) -> None:
    folder, _ = built
    other = json.loads(json.dumps(RECIPE))
    other["detector"]["det_size"] = 320
    other["arcface"]["scale"] = 127.5
    other["channel_order"] = "bgr"
    del other["alignment"]
    with pytest.raises(RecipeMismatchError) as caught:
        _load(folder, recipe=other)
    error = caught.value
    assert error.differing_keys == ("alignment", "arcface.scale", "channel_order", "detector.det_size")
    message = str(error)
    assert "detector.det_size: index 640, profile 320" in message
    assert "alignment: only in the index" in message
    assert "channel_order: only in the profile" in message
    assert "rebuild the index with `stash-vision index build` for profile stash-sense" in message
    # Exact: an int where the index has a float is a different recipe.
    exact = json.loads(json.dumps(RECIPE))
    exact["arcface"]["scale"] = 128
    with pytest.raises(RecipeMismatchError, match=r"arcface\.scale"):
        _load(folder, recipe=exact)
    # Without profile=, the recipe's own "profile" key names it.
    with pytest.raises(RecipeMismatchError, match=r"for profile custom$"):
        FaceIndex.load(folder, EMBEDDERS, {**RECIPE, "profile": "custom"})
    # Tuples compare as the JSON lists they are written as.
    same = json.loads(json.dumps(RECIPE))
    same["facenet"]["input"] = (160, 160)
    assert _load(folder, recipe=same).face_count > 0


def test_missing_voy_file(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    _build(folder)
    (folder / "face_facenet.voy").unlink()
    with pytest.raises(IndexFileMissingError, match=r"face_facenet\.voy"):
        _load(folder)


def test_embedder_not_in_index(built: tuple[Path, Gallery]) -> None:
    folder, _ = built
    with pytest.raises(IndexIncompatibleError, match="adaface"):
        FaceIndex.load(folder, ["adaface"], RECIPE)


def test_missing_folder_and_manifest(tmp_path: Path) -> None:
    with pytest.raises(IndexNotFoundError, match="does not exist"):
        _load(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    with pytest.raises(IndexNotFoundError, match=r"manifest\.json"):
        _load(tmp_path / "half")


def test_corrupt_json(tmp_path: Path) -> None:
    folder = tmp_path / "v1"
    _build(folder)
    (folder / "performers.json").write_text("{not json")
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["checksums"]["performers.json"] = sha256_file(folder / "performers.json")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCorruptError, match=r"performers\.json is not readable JSON"):
        _load(folder)
    (folder / "manifest.json").write_text('{"version": ')
    with pytest.raises(IndexCorruptError, match=r"manifest\.json is not readable JSON"):
        _load(folder)
    (folder / "manifest.json").write_text('{"version": "1"}')
    with pytest.raises(IndexCorruptError, match="not a valid index manifest"):
        _load(folder)


def test_stash_sense_manifest_parses_but_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "stash-sense"
    folder.mkdir()
    for name in ("face_facenet.voy", "face_arcface.voy", "faces.json", "performers.json", "performers.db"):
        (folder / name).write_bytes(b"x")
    stash_sense = {
        "version": "2026.02.09",
        "created_at": "2026-02-09T12:00:00Z",
        "performer_count": 93521,
        "face_count": 277097,
        "sources": ["stashdb", "theporndb"],
        "models": {"detector": "retinaface", "facenet_dim": 512, "arcface_dim": 512},
        "checksums": {"faces.json": "sha256:" + "0" * 64, "face_facenet.voy": "sha256:" + "1" * 64},
        "tattoo_index": {"dim": 1280},
    }
    (folder / "manifest.json").write_text(json.dumps(stash_sense))
    manifest = read_manifest(folder)
    assert isinstance(manifest, IndexManifest)
    assert manifest.recipe is None and manifest.voyager is None
    assert manifest.dim("facenet") == 512
    assert manifest.model_extra == {"tattoo_index": {"dim": 1280}}
    with pytest.raises(IndexIncompatibleError, match="lacks a recipe") as caught:
        FaceIndex.load(folder, ["facenet", "arcface"], RECIPE, profile="stash-sense")
    assert "stash-vision index build` for profile stash-sense" in str(caught.value)


# -- writing and publishing ---------------------------------------------------------------------
def test_writer_refuses_bad_input(tmp_path: Path) -> None:
    writer = IndexWriter(DIMS, RECIPE)
    gallery = Gallery()
    with pytest.raises(IndexBuildError, match="add_performer first"):
        writer.add_face(gallery.ids[0], gallery.face(0), source="s", quality=1, yaw=0, detection_score=1)
    writer.add_performer(_record(gallery, 0))
    with pytest.raises(IndexBuildError, match="already added"):
        writer.add_performer(_record(gallery, 0))
    with pytest.raises(IndexBuildError, match="universal id"):
        writer.add_performer(PerformerRecord(id="no-namespace", name="x"))
    face = gallery.face(0)
    with pytest.raises(IndexBuildError, match="one vector per embedder"):
        writer.add_face(
            gallery.ids[0], {"facenet": face["facenet"]}, source="s", quality=1, yaw=0, detection_score=1
        )
    with pytest.raises(IndexBuildError, match="shape"):
        writer.add_face(
            gallery.ids[0], {**face, "arcface": np.ones(5)}, source="s", quality=1, yaw=0, detection_score=1
        )
    with pytest.raises(IndexBuildError, match="all zeros"):
        writer.add_face(
            gallery.ids[0], {**face, "arcface": np.zeros(24)}, source="s", quality=1, yaw=0, detection_score=1
        )
    with pytest.raises(IndexBuildError, match="embedder name"):
        IndexWriter({"Face Net": 4}, RECIPE)
    with pytest.raises(IndexBuildError, match="JSON"):
        IndexWriter(DIMS, {"bad": object()})
    assert writer.face_count == 0
    existing = tmp_path / "exists"
    existing.mkdir()
    with pytest.raises(IndexBuildError, match="already exists"):
        writer.write(existing, version="1", sources=[], detector="d")


def test_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: Path) -> str:
        raise OSError("disk on fire")

    monkeypatch.setattr(writer_module, "sha256_file", broken)
    writer = IndexWriter(DIMS, RECIPE)
    gallery = Gallery()
    writer.add_performer(_record(gallery, 0))
    writer.add_face(gallery.ids[0], gallery.face(0), source="s", quality=1, yaw=0, detection_score=1)
    with pytest.raises(OSError, match="disk on fire"):
        writer.write(tmp_path / "v1", version="1", sources=[], detector="d")
    assert list(tmp_path.iterdir()) == []


def test_publish_swaps_current(tmp_path: Path) -> None:
    root = tmp_path / "indices"
    assert current_index_folder(root) is None
    _build(root / "v1", version="1")
    _build(root / "v2", version="2")
    publish(root, root / "v1")
    assert current_index_folder(root) == (root / "v1").resolve()
    assert os.readlink(root / "current") == "v1"  # relative: the root can move
    assert _load(root / "current").version == "1"
    publish(root, root / "v2")
    current = current_index_folder(root)
    assert current == (root / "v2").resolve()
    assert _load(current).version == "2"
    assert sorted(p.name for p in root.iterdir()) == ["current", "v1", "v2"]  # no temporary links left

    (root / "unfinished").mkdir()
    with pytest.raises(IndexNotFoundError):
        publish(root, root / "unfinished")
    assert current_index_folder(root) == (root / "v2").resolve()

    outside = tmp_path / "elsewhere"
    _build(outside, version="3")
    publish(root, outside)
    assert os.readlink(root / "current") == str(outside.resolve())
    outside.rename(tmp_path / "moved")
    assert current_index_folder(root) is None  # dangling


def test_publish_refuses_to_replace_a_real_folder(tmp_path: Path) -> None:
    root = tmp_path / "indices"
    _build(root / "v1")
    (root / "current").mkdir()
    with pytest.raises(IndexBuildError, match="not a symlink"):
        publish(root, root / "v1")
