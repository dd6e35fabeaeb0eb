"""Index versions on real small indexes: list, diff, activate/rollback (links and the live holder),
delete, retention, release export and import (ours and a Stash Sense release)."""

from __future__ import annotations

import asyncio
import json
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stash_vision.server.errors import IndexUnavailable, IndexVersionConflict, IndexVersionNotFound
from stash_vision.server.faces.index import FaceIndex, IndexWriter, PerformerRecord, publish
from stash_vision.server.faces.index.diff import diff_folders
from stash_vision.server.faces.index.errors import (
    ChecksumMismatchError,
    IndexFileMissingError,
    IndexIncompatibleError,
)
from stash_vision.server.faces.index.layout import MANIFEST_FILE
from stash_vision.server.faces.index.release import export_release, import_release
from stash_vision.server.faces.index.versions import (
    VersionConflictError,
    VersionNotFoundError,
    active_version,
    apply_retention,
    delete_version,
    get_version,
    list_versions,
    previous_version,
    publish_version,
    set_active,
)
from stash_vision.server.faces.index_holder import IndexHolder
from stash_vision.server.faces.profile import load_profile
from stash_vision.server.workers import CpuPool

PROFILE = load_profile("default")
DIMS = {e.name: e.dimensions for e in PROFILE.embedders}


def build_version(
    root: Path,
    version: str,
    performers: range,
    *,
    seed: int = 0,
    recipe: dict[str, Any] | None = None,
    created: str | None = None,
    faces: int = 2,
) -> Path:
    """A small real index of the default profile's embedders (random unit vectors)."""
    rng = np.random.default_rng(seed)
    writer = IndexWriter(DIMS, recipe or PROFILE.recipe(), M=8, ef_construction=20)
    for i in performers:
        pid = f"stashdb.org:{i:08d}-0000-0000-0000-000000000000" if i % 2 else f"local:p{i}"
        writer.add_performer(PerformerRecord(id=pid, name=f"P{i}"))
        for j in range(faces):
            vectors = {name: rng.standard_normal(dim) for name, dim in DIMS.items()}
            writer.add_face(pid, vectors, source=f"/img/{i}/{j}.jpg", quality=1, yaw=0, detection_score=0.9)
    folder = root / version
    writer.write(folder, version, sources=["/img"], detector="scrfd")
    if created is not None:
        manifest = json.loads((folder / MANIFEST_FILE).read_text())
        manifest["created_at"] = created
        (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "face_indexes" / PROFILE.name
    build_version(folder, "v1", range(0, 4), created="2026-01-01T00:00:00+00:00")
    build_version(folder, "v2", range(2, 7), seed=1, created="2026-01-02T00:00:00+00:00")
    publish(folder, folder / "v1")
    return folder


def test_list_and_get(root: Path) -> None:
    infos = list_versions(root)
    assert [i.version for i in infos] == ["v2", "v1"]
    v1 = get_version(root, "v1")
    assert v1.active and not v1.previous
    assert (v1.manifest.performer_count, v1.manifest.face_count) == (4, 8)
    assert v1.size_bytes > 0 and v1.recipe["profile"] == "default"
    with pytest.raises(VersionNotFoundError, match="versions: v2, v1"):
        get_version(root, "nope")
    with pytest.raises(VersionNotFoundError, match="not a version name"):
        get_version(root, "../v1")


def test_diff_per_source(root: Path) -> None:
    diff = diff_folders(root / "v1", root / "v2")
    assert diff.added_performer_ids == [
        "local:p4",
        "local:p6",
        "stashdb.org:00000005-0000-0000-0000-000000000000",
    ]
    assert diff.removed_performer_ids == ["local:p0", "stashdb.org:00000001-0000-0000-0000-000000000000"]
    by = {s.source: s for s in diff.sources}
    assert (by["local"].performers_added, by["local"].performers_removed) == (2, 1)
    assert (by["stashdb.org"].performers_added, by["stashdb.org"].performers_removed) == (1, 1)
    # Faces are (performer, image): performers 2 and 3 keep their images.
    assert (diff.faces_added, diff.faces_removed) == (6, 4)
    assert diff_folders(root / "v1", root / "v1").sources == []


def test_activate_rollback_delete_links(root: Path) -> None:
    assert set_active(root, "v2") == "v1"
    assert (active_version(root), previous_version(root)) == ("v2", "v1")
    with pytest.raises(VersionConflictError, match="active"):
        delete_version(root, "v2")
    delete_version(root, "v1")
    assert previous_version(root) is None and [i.version for i in list_versions(root)] == ["v2"]
    assert active_version(root) == "v2"


def test_retention_keeps_active_and_previous(root: Path) -> None:
    for n in range(3, 7):
        build_version(root, f"v{n}", range(n), created=f"2026-01-0{n}T00:00:00+00:00")
    set_active(root, "v2")  # active v2, previous v1: both the oldest
    deleted = apply_retention(root, 2)
    assert sorted(deleted) == ["v3", "v4"]
    assert [i.version for i in list_versions(root)] == ["v6", "v5", "v2", "v1"]
    assert apply_retention(root, 0) == []


def test_publish_version_records_parent(root: Path) -> None:
    folder = build_version(root, "v3", range(3))
    publish_version(root, folder, build_job="job-1")
    info = get_version(root, "v3")
    assert info.active and (info.lineage.parent, info.lineage.build_job) == ("v1", "job-1")
    assert previous_version(root) == "v1"


def _holder(root: Path, pool: CpuPool, keep: int = 0) -> IndexHolder:
    return IndexHolder(root.parent, PROFILE, pool, keep_versions=keep)


def test_holder_activate_is_checked_and_live(root: Path) -> None:
    build_version(root, "other", range(3), recipe={**PROFILE.recipe(), "profile": "stash-sense"})
    pool = CpuPool(2)

    async def scenario() -> None:
        holder = _holder(root, pool)
        first = await holder.get()
        assert first.version == "v1"
        index, replaced = await holder.activate("v2")
        assert (index.version, replaced) == ("v2", "v1")
        assert (await holder.get()) is index
        assert first.performer_count == 4  # the old object still answers for an in-flight query
        with pytest.raises(IndexUnavailable, match=r"cannot be activated.*serving version is unchanged"):
            await holder.activate("other")
        with pytest.raises(IndexVersionNotFound):
            await holder.activate("missing")
        assert (await holder.get()).version == "v2" and active_version(root) == "v2"
        index, replaced = await holder.rollback()
        assert (index.version, replaced) == ("v1", "v2")
        assert previous_version(root) == "v2"

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


def test_holder_picks_up_a_published_build_and_records_previous(root: Path) -> None:
    pool = CpuPool(2)

    async def scenario() -> None:
        holder = _holder(root, pool, keep=1)
        assert (await holder.get()).version == "v1"
        publish(root, root / "v2")  # what a build does
        assert (await holder.get()).version == "v2"
        assert previous_version(root) == "v1"
        assert get_version(root, "v2").lineage.parent == "v1"
        (root / "previous").unlink()
        with pytest.raises(IndexVersionConflict, match="nothing to roll back"):
            await holder.rollback()

    try:
        asyncio.run(scenario())
    finally:
        pool.shutdown()


def test_export_import_round_trip(root: Path, tmp_path: Path) -> None:
    archive = export_release(root / "v1", tmp_path / "out" / "v1.zip")
    with zipfile.ZipFile(archive) as opened:
        assert "lineage.json" not in opened.namelist() and "manifest.json" in opened.namelist()
    fresh = tmp_path / "fresh" / PROFILE.name
    assert import_release(archive, fresh, PROFILE.name, PROFILE.recipe()) == "v1"
    original = FaceIndex.load(root / "v1", PROFILE.embedder_names, PROFILE.recipe())
    imported = FaceIndex.load(fresh / "v1", PROFILE.embedder_names, PROFILE.recipe())
    query = {name: np.random.default_rng(5).standard_normal((3, dim)) for name, dim in DIMS.items()}
    a, b = original.query(query, k=4, query_ef=50), imported.query(query, k=4, query_ef=50)
    for name in DIMS:
        assert np.array_equal(a[name][0], b[name][0]) and np.allclose(a[name][1], b[name][1])
    assert get_version(fresh, "v1").lineage.origin == "import"
    with pytest.raises(VersionConflictError, match="already exists"):
        import_release(archive, fresh, PROFILE.name, PROFILE.recipe())
    with pytest.raises(IndexIncompatibleError, match="profile 'default', not of 'stash-sense'"):
        import_release(archive, tmp_path / "ss", "stash-sense", PROFILE.recipe())


def _rezip(source: Path, target: Path, change: dict[str, bytes | None]) -> Path:
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w") as new:
        for name in old.namelist():
            data = change.get(name, old.read(name)) if name in change else old.read(name)
            if data is not None:
                new.writestr(f"release/{name}", data)
    return target


@pytest.mark.parametrize("damage", ["mismatch", "missing"])
def test_import_refusals_leave_nothing(root: Path, tmp_path: Path, damage: str) -> None:
    archive = export_release(root / "v1", tmp_path / "v1.zip")
    change: dict[str, bytes | None] = (
        {"faces.json": b"[]"} if damage == "mismatch" else {"performers.db": None}
    )
    bad = _rezip(archive, tmp_path / "bad.zip", change)
    fresh = tmp_path / "fresh"
    error = ChecksumMismatchError if damage == "mismatch" else IndexFileMissingError
    with pytest.raises(error):
        import_release(bad, fresh, PROFILE.name, PROFILE.recipe())
    assert list(fresh.iterdir()) == []


def test_stash_sense_release_is_adopted_only_by_stash_sense(root: Path, tmp_path: Path) -> None:
    stash_sense = load_profile("stash-sense")
    folder = tmp_path / "ss-build"
    writer = IndexWriter(
        {e.name: e.dimensions for e in stash_sense.embedders}, {"x": 1}, M=8, ef_construction=20
    )
    writer.add_performer(PerformerRecord(id="stashdb.org:a", name="A"))
    rng = np.random.default_rng(0)
    for _ in range(3):
        vectors = {e.name: rng.standard_normal(e.dimensions) for e in stash_sense.embedders}
        writer.add_face("stashdb.org:a", vectors, source="stashdb.org", quality=1, yaw=0, detection_score=1)
    writer.write(folder, "2026.01.15", sources=["stashdb.org"], detector="retinaface")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    del manifest["recipe"], manifest["voyager"]  # as Stash Sense writes it
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    archive = export_release(folder, tmp_path / "stash-sense.zip")
    with pytest.raises(IndexIncompatibleError, match="only be imported into the stash-sense"):
        import_release(archive, tmp_path / "d", "default", PROFILE.recipe())
    target = tmp_path / "s"
    assert import_release(archive, target, "stash-sense", stash_sense.recipe()) == "2026.01.15"
    index = FaceIndex.load(target / "2026.01.15", stash_sense.embedder_names, stash_sense.recipe())
    assert index.face_count == 3
