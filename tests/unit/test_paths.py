"""Unit tests for stash_vision.server.media.paths.MediaPaths: path mappings, refusal of relative paths,
`..`, directories and missing files, and confinement to library roots with symlinks resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from stash_vision.server.errors import AccessDenied, InvalidInput, MediaNotFound
from stash_vision.server.media.paths import MediaPaths


@pytest.fixture
def library(tmp_path: Path) -> Path:
    root = tmp_path / "library"
    (root / "photos").mkdir(parents=True)
    (root / "photos" / "a.jpg").write_bytes(b"a")
    (root / "b.jpg").write_bytes(b"b")
    return root


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    (folder / "secret.jpg").write_bytes(b"s")
    return folder


# ------------------------------------------------------------------------------------------- mappings


def test_mapping_rewrites_the_prefix(library: Path) -> None:
    paths = MediaPaths([], {"/data": str(library)})
    assert paths.map("/data/b.jpg") == f"{library}/b.jpg"
    assert paths.resolve("/data/b.jpg") == (library / "b.jpg").resolve()


def test_longest_mapping_prefix_wins(tmp_path: Path, library: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "a.jpg").write_bytes(b"other")
    # Insertion order puts the short prefix first; the longer one must still win.
    paths = MediaPaths([], {"/data": str(other), "/data/photos": str(library / "photos")})
    assert paths.map("/data/photos/a.jpg") == f"{library}/photos/a.jpg"
    assert paths.map("/data/a.jpg") == f"{other}/a.jpg"
    assert paths.resolve("/data/photos/a.jpg").read_bytes() == b"a"


def test_mapping_only_matches_whole_path_components(library: Path) -> None:
    # "/data" must not rewrite "/database/...": a prefix mapping is a folder mapping.
    paths = MediaPaths([], {"/data": str(library)})
    assert paths.map("/database/b.jpg") == "/database/b.jpg"
    assert paths.map("/data") == str(library)


def test_unmapped_paths_pass_through(library: Path) -> None:
    paths = MediaPaths([], {"/data": "/mnt/media"})
    assert paths.resolve(str(library / "b.jpg")) == (library / "b.jpg").resolve()


# ------------------------------------------------------------------------------------- invalid paths


def test_relative_path_is_invalid_input(library: Path) -> None:
    with pytest.raises(InvalidInput, match="absolute"):
        MediaPaths([], {}).resolve("photos/a.jpg")


def test_relative_path_made_absolute_by_a_mapping_is_accepted(library: Path) -> None:
    paths = MediaPaths([], {"photos/": f"{library}/photos/"})
    assert paths.resolve("photos/a.jpg") == (library / "photos" / "a.jpg").resolve()


def test_dot_dot_is_refused_even_when_it_stays_inside(library: Path) -> None:
    with pytest.raises(InvalidInput, match=r"\.\."):
        MediaPaths([], {}).resolve(f"{library}/photos/../b.jpg")


def test_dot_dot_introduced_through_a_mapping_is_refused(library: Path) -> None:
    with pytest.raises(InvalidInput, match=r"\.\."):
        MediaPaths([library], {"/data": str(library)}).resolve("/data/../elsewhere/secret.jpg")


def test_directory_is_invalid_input(library: Path) -> None:
    with pytest.raises(InvalidInput, match="directory"):
        MediaPaths([], {}).resolve(str(library / "photos"))


def test_empty_and_nul_paths_are_invalid_input() -> None:
    paths = MediaPaths([], {})
    with pytest.raises(InvalidInput, match="empty"):
        paths.resolve("  ")
    with pytest.raises(InvalidInput, match="NUL"):
        paths.resolve("/tmp/a\x00.jpg")


def test_missing_file_is_not_found_and_mentions_path_mappings(library: Path) -> None:
    with pytest.raises(MediaNotFound) as raised:
        MediaPaths([], {}).resolve(str(library / "nope.jpg"))
    message = str(raised.value)
    assert str(library / "nope.jpg") in message
    assert "STASH_VISION_PATH_MAPPINGS" in message
    assert "after path mappings" not in message


def test_missing_mapped_file_names_the_mapped_path(library: Path) -> None:
    with pytest.raises(MediaNotFound) as raised:
        MediaPaths([], {"/data": str(library)}).resolve("/data/nope.jpg")
    message = str(raised.value)
    assert f"{library}/nope.jpg" in message
    assert "after path mappings" in message
    assert "STASH_VISION_PATH_MAPPINGS" in message


# ------------------------------------------------------------------------------------------ library roots


def test_file_inside_a_root_is_allowed(library: Path) -> None:
    paths = MediaPaths([library], {})
    assert paths.resolve(str(library / "photos" / "a.jpg")) == (library / "photos" / "a.jpg").resolve()


def test_file_outside_every_root_is_refused(library: Path, outside: Path) -> None:
    with pytest.raises(AccessDenied) as raised:
        MediaPaths([library], {}).resolve(str(outside / "secret.jpg"))
    assert "STASH_VISION_LIBRARY_ROOTS" in str(raised.value)
    assert str(library.resolve()) in str(raised.value)


def test_missing_file_outside_roots_is_refused_not_reported_missing(library: Path, outside: Path) -> None:
    # Existence outside the roots must not leak.
    with pytest.raises(AccessDenied):
        MediaPaths([library], {}).resolve(str(outside / "does-not-exist.jpg"))


def test_sibling_folder_sharing_the_root_prefix_is_refused(tmp_path: Path, library: Path) -> None:
    sibling = tmp_path / "library2"
    sibling.mkdir()
    (sibling / "x.jpg").write_bytes(b"x")
    with pytest.raises(AccessDenied):
        MediaPaths([library], {}).resolve(str(sibling / "x.jpg"))


def test_symlink_inside_root_pointing_outside_is_refused(library: Path, outside: Path) -> None:
    link = library / "innocent.jpg"
    link.symlink_to(outside / "secret.jpg")
    with pytest.raises(AccessDenied):
        MediaPaths([library], {}).resolve(str(link))


def test_symlinked_folder_inside_root_pointing_outside_is_refused(library: Path, outside: Path) -> None:
    (library / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(AccessDenied):
        MediaPaths([library], {}).resolve(str(library / "linked" / "secret.jpg"))


def test_symlink_inside_root_pointing_inside_is_allowed_and_resolved(library: Path) -> None:
    link = library / "alias.jpg"
    link.symlink_to(library / "photos" / "a.jpg")
    assert MediaPaths([library], {}).resolve(str(link)) == (library / "photos" / "a.jpg").resolve()


def test_root_given_through_a_symlink_still_contains_its_files(tmp_path: Path, library: Path) -> None:
    root_link = tmp_path / "root-link"
    root_link.symlink_to(library, target_is_directory=True)
    paths = MediaPaths([root_link], {})
    assert paths.resolve(str(root_link / "b.jpg")) == (library / "b.jpg").resolve()


def test_any_of_several_roots_allows(tmp_path: Path, library: Path, outside: Path) -> None:
    paths = MediaPaths([tmp_path / "unrelated", outside, library], {})
    assert paths.resolve(str(outside / "secret.jpg")) == (outside / "secret.jpg").resolve()


# ------------------------------------------------------------------------------------------ directories


def test_resolve_dir_applies_mappings_and_resolves(tmp_path: Path, library: Path) -> None:
    link = tmp_path / "library-link"
    link.symlink_to(library, target_is_directory=True)
    paths = MediaPaths([library], {"/data": str(link)})
    assert paths.resolve_dir("/data/photos") == (library / "photos").resolve()


def test_resolve_dir_refuses_a_file_with_the_callers_hint(library: Path) -> None:
    paths = MediaPaths([library], {"/data": str(library)})
    with pytest.raises(InvalidInput, match=r"^/data/b\.jpg is a file, not a directory; use files$"):
        paths.resolve_dir("/data/b.jpg", file_hint="; use files")


def test_resolve_refuses_a_directory_with_the_callers_hint(library: Path) -> None:
    with pytest.raises(InvalidInput, match=r"photos is a directory, not a file; use folders$"):
        MediaPaths([], {}).resolve(str(library / "photos"), dir_hint="; use folders")


def test_resolve_dir_missing_names_the_mapped_directory(library: Path) -> None:
    with pytest.raises(MediaNotFound, match=rf"^directory not found: {library}/nope after path mappings"):
        MediaPaths([], {"/data": str(library)}).resolve_dir("/data/nope")


def test_resolve_dir_is_confined_and_refuses_dot_dot(library: Path, outside: Path) -> None:
    paths = MediaPaths([library], {})
    with pytest.raises(AccessDenied):
        paths.resolve_dir(str(outside))
    with pytest.raises(AccessDenied):
        paths.resolve_dir(str(outside / "missing"))
    with pytest.raises(InvalidInput, match=r"\.\."):
        paths.resolve_dir(f"{library}/photos/..")


def test_within_roots(library: Path, outside: Path) -> None:
    assert MediaPaths([library], {}).within_roots(library.resolve() / "photos" / "a.jpg")
    assert not MediaPaths([library], {}).within_roots(outside.resolve())
    assert MediaPaths([], {}).within_roots(outside.resolve())
