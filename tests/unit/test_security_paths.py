"""No path escapes the library roots: each way out is tried on the real code that guards it
(MediaPaths for every caller's path, Stash's answers and job roots; the job listing's walk; a
release zip's members; a video's `.AI.json` sidecar; a folder face source), with real files and
symlinks in a temporary folder."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import pytest

from stash_vision.server.connections import StashConnection
from stash_vision.server.errors import AccessDenied, InvalidInput, StashVisionError
from stash_vision.server.faces.index.errors import FaceIndexError
from stash_vision.server.faces.index.release import unpack_release
from stash_vision.server.faces.index.versions import VersionNotFoundError, check_version_name
from stash_vision.server.faces.sources.folder import scan
from stash_vision.server.jobs.kinds.tag_library import _read_sidecar, _write_sidecar
from stash_vision.server.jobs.listing import ListedItem, ListingProblem, ListingRequest, iter_media
from stash_vision.server.media.paths import MediaPaths

JPEG_BYTES = b"\xff\xd8\xff\xe0not-really-a-jpeg"


@pytest.fixture
def world(tmp_path: Path) -> tuple[Path, Path]:
    """A library root with ordinary media and links out, and a folder outside it with secrets."""
    library, outside = tmp_path / "library", tmp_path / "outside"
    (library / "photos").mkdir(parents=True)
    (outside / "private").mkdir(parents=True)
    (library / "photos" / "ok.jpg").write_bytes(JPEG_BYTES)
    (outside / "secret.jpg").write_bytes(JPEG_BYTES)
    (outside / "private" / "deep.jpg").write_bytes(JPEG_BYTES)
    with zipfile.ZipFile(outside / "gallery.zip", "w") as archive:
        archive.writestr("a.jpg", JPEG_BYTES)
    (library / "photos" / "file-link.jpg").symlink_to(outside / "secret.jpg")
    (library / "photos" / "folder-link").symlink_to(outside / "private")
    (library / "photos" / "zip-link.zip").symlink_to(outside / "gallery.zip")
    (tmp_path / "library-evil").mkdir()  # a sibling whose name starts like the root
    (tmp_path / "library-evil" / "x.jpg").write_bytes(JPEG_BYTES)
    return library, outside


def test_media_paths_refuse_every_way_out(world: tuple[Path, Path]) -> None:
    library, outside = world
    paths = MediaPaths([library], {"/stash/media/": f"{outside}/"})
    assert paths.resolve(f"{library}/photos/ok.jpg") == library / "photos" / "ok.jpg"
    refused: dict[str, type[StashVisionError]] = {
        f"{library}/../outside/secret.jpg": InvalidInput,
        f"{library}/photos/../../outside/secret.jpg": InvalidInput,
        "photos/ok.jpg": InvalidInput,  # relative
        f"{library}/photos/ok.jpg\x00.png": InvalidInput,
        f"{outside}/secret.jpg": AccessDenied,
        f"{library}/photos/file-link.jpg": AccessDenied,
        f"{library}/photos/folder-link/deep.jpg": AccessDenied,
        f"{library.parent}/library-evil/x.jpg": AccessDenied,
        "/stash/media/secret.jpg": AccessDenied,  # a mapping (Stash's path) that leads outside
        f"{library}/photos/zip-link.zip/a.jpg": AccessDenied,  # a member of an archive outside
        f"{library}/photos/x.zip/../../../outside/gallery.zip/a.jpg": InvalidInput,
    }
    for raw, error in refused.items():
        with pytest.raises(error):
            paths.locate(raw)
        with pytest.raises(error):
            paths.resolve(raw)
    with pytest.raises(AccessDenied):
        paths.resolve_dir(f"{library}/photos/folder-link")
    with pytest.raises(AccessDenied):
        paths.resolve_dir(str(outside))


def test_the_listing_lists_nothing_outside_the_roots(world: tuple[Path, Path]) -> None:
    library, _ = world
    paths = MediaPaths([library], {})
    listed = list(iter_media(ListingRequest(roots=(str(library),)), paths))
    items = [entry.path for entry in listed if isinstance(entry, ListedItem)]
    problems = [entry for entry in listed if isinstance(entry, ListingProblem)]
    assert items == [str(library / "photos" / "ok.jpg")]
    assert any("outside the library roots" in p.error for p in problems)  # the file link, said plainly
    for request in (
        ListingRequest(roots=(f"{library}/photos/folder-link",)),
        ListingRequest(paths=(f"{library}/photos/file-link.jpg",)),
    ):
        (only,) = list(iter_media(request, paths))
        assert isinstance(only, ListingProblem) and "outside the library roots" in only.error


@pytest.mark.parametrize(
    "names",
    [
        ["../../evil.txt", "../../manifest.json"],
        ["/abs/evil.txt", "/abs/manifest.json"],
        ["../evil.txt", "../manifest.json"],
        ["sub/../../evil.txt", "manifest.json"],
    ],
)
def test_a_release_zip_writes_nothing_outside_its_staging_folder(tmp_path: Path, names: list[str]) -> None:
    source, staging = tmp_path / "zips" / "release.zip", tmp_path / "a" / "b" / "staging"
    source.parent.mkdir()
    staging.mkdir(parents=True)
    with zipfile.ZipFile(source, "w") as archive:
        for name in names:
            archive.writestr(zipfile.ZipInfo(name), b"{}")
    before = {p for p in tmp_path.rglob("*") if not p.is_relative_to(staging)}
    with pytest.raises(FaceIndexError):  # these are not releases; what matters is where bytes went
        unpack_release(source, staging)
    after = {p for p in tmp_path.rglob("*") if not p.is_relative_to(staging)}
    assert after == before
    assert not Path("/abs").exists()


def test_a_version_name_cannot_name_a_folder_elsewhere() -> None:
    for name in ("../x", "..", "a/b", "/etc", ".hidden", "x\x00"):
        with pytest.raises(VersionNotFoundError):
            check_version_name(name)


def test_a_sidecar_symlink_is_neither_read_nor_written_through(world: tuple[Path, Path]) -> None:
    library, outside = world
    video, target = library / "photos" / "clip.mp4", outside / "target.AI.json"
    video.write_bytes(b"")
    target.write_text(json.dumps({"secret": True}))
    sidecar = Path(f"{video}.AI.json")
    sidecar.symlink_to(target)
    assert _read_sidecar(sidecar) is None
    assert _write_sidecar(sidecar, '{"tags": []}', time.time() - 60) == "written"
    assert json.loads(target.read_text()) == {"secret": True}
    assert not sidecar.is_symlink() and json.loads(sidecar.read_text()) == {"tags": []}


def test_a_folder_face_source_skips_links_out_of_the_roots(world: tuple[Path, Path]) -> None:
    library, outside = world
    faces = library / "faces"
    (faces / "alice").mkdir(parents=True)
    (faces / "alice" / "a.jpg").write_bytes(JPEG_BYTES)
    (faces / "alice" / "leak.jpg").symlink_to(outside / "secret.jpg")
    (faces / "bob").symlink_to(outside / "private")
    (faces / "carol").mkdir()
    (faces / "carol" / "c.jpg").symlink_to(library / "photos" / "ok.jpg")  # inside the roots: fine
    paths = MediaPaths([library], {})
    found = {p.record.name: [i.name for i in p.images] for p in scan(faces, paths.within_roots)}
    assert found == {"alice": ["a.jpg"], "carol": ["c.jpg"]}


def test_a_path_stash_answers_is_read_here_only_inside_the_roots(world: tuple[Path, Path]) -> None:
    """Outside the roots (after the mappings) the file is not read here: it goes through Stash."""
    library, outside = world
    mappings = {"/stash/outside": str(outside), "/stash/library": str(library)}
    stash = StashConnection("http://stash.invalid:9999", None, MediaPaths([library], mappings))
    assert stash.local("/stash/outside/secret.jpg") is None
    assert stash.local("/stash/library/photos/file-link.jpg") is None
    assert stash.local("/stash/library/../outside/secret.jpg") is None
    inside = stash.local("/stash/library/photos/ok.jpg")
    assert inside is not None and inside.path == library / "photos" / "ok.jpg"
