"""Lists the media a `tag-library` job works through: explicit files, then library folders walked.

Choices, and why:

* Kinds by extension, case-insensitive, limited to what this server decodes. Images go through
  Pillow (header, GIF) and OpenCV (pixels), which read JPEG, PNG, GIF, WebP, BMP and TIFF; AVIF only
  when the installed Pillow has its AVIF plugin (Pillow >= 11.2 wheels do; OpenCV here has none), so
  `.avif` is listed only then. HEIC/HEIF is left out: neither library reads it without pillow-heif,
  which is not a dependency. Videos are opened with PyAV, whose bundled FFmpeg demuxes every
  container Stash knows (MP4/MOV/M4V/3GP, Matroska/WebM, AVI, ASF/WMV, FLV/F4V, RealMedia, MPEG
  program and transport streams, Ogg). Galleries are `.zip` archives, one item each; not `.cbz`
  (which Stash also treats as a zip gallery), because `MediaPaths.locate`, through which a gallery's
  members are read, recognises only `.zip` archives today.
* Globs (`include`, `exclude`) are fnmatch patterns, case-insensitive, each tried against the path
  relative to its root (POSIX `/`) and against the base name; either match counts. `*` also matches
  `/`, so `**` is accepted but means no more than `*`. `exclude` wins over `include`, and an excluded
  folder is not descended into; an empty `include` takes every file. The filters (globs, `kinds`,
  `modified_since`, which keeps files with `st_mtime >= modified_since`) narrow the walk of roots
  only: an explicit path is listed because the caller named it, and must be media of a wanted kind.
* Order is deterministic so a resumed job lists the same sequence: explicit paths as given, then each
  root depth-first, entries of a folder sorted by name (code point order, files and folders mixed).
* Streaming: the walk holds one sorted `os.scandir` list per folder on the current chain, nothing
  else that grows with the tree, except small sets of explicit paths and symlink targets listed.
* Hidden names (leading `.`, `.AI.json` sidecars included) are skipped in the walk. Folder symlinks
  are not followed (no loops); a file symlink is listed under its target's real path when the
  target is a regular file inside the library roots (else a `ListingProblem`), and skipped when the
  walk reaches that target anyway. A root inside another root's walk is not walked twice.
* Listed paths are the server's real paths (mappings applied, symlinks resolved, as
  `MediaPaths.resolve` returns them). A problem met while listing (a folder that cannot be read, a
  file gone, a root or path that no longer validates when a job resumes) is yielded as a
  `ListingProblem`, never raised: one bad folder must not end a library-wide job.
"""

from __future__ import annotations

import enum
import fnmatch
import math
import os
import re
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import features

from stash_vision.server.errors import InvalidInput, StashVisionError
from stash_vision.server.media.paths import MediaPaths


class MediaKind(enum.StrEnum):
    IMAGE = "image"
    VIDEO = "video"
    GALLERY = "gallery"


def _pillow_reads_avif() -> bool:
    return "avif" in features.modules and bool(features.check_module("avif"))


IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"}
    | ({".avif"} if _pillow_reads_avif() else set())
)
VIDEO_EXTENSIONS = frozenset(
    {".m4v", ".mp4", ".mov", ".wmv", ".avi", ".mpg", ".mpeg", ".rmvb", ".rm", ".flv", ".asf", ".mkv"}
    | {".webm", ".f4v", ".ts", ".m2ts", ".mts", ".3gp", ".vob", ".ogv"}
)
GALLERY_EXTENSIONS = frozenset({".zip"})  # not .cbz: see the module docstring

_KIND_BY_EXTENSION = {
    **dict.fromkeys(IMAGE_EXTENSIONS, MediaKind.IMAGE),
    **dict.fromkeys(VIDEO_EXTENSIONS, MediaKind.VIDEO),
    **dict.fromkeys(GALLERY_EXTENSIONS, MediaKind.GALLERY),
}

_FILE_ROOT_HINT = "; pass it in paths"
_FOLDER_PATH_HINT = "; pass it in roots"


def media_kind(path: str) -> MediaKind | None:
    """The kind of media a file is by its extension (any case), or None when it is not media."""
    return _KIND_BY_EXTENSION.get(os.path.splitext(path)[1].lower())


@dataclass(frozen=True)
class ListingRequest:
    roots: tuple[str, ...] = ()  # folders to walk, as the caller (Stash) sees them
    paths: tuple[str, ...] = ()  # single files, listed first
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    modified_since: float | None = None  # seconds since the epoch
    kinds: frozenset[MediaKind] = frozenset(MediaKind)


@dataclass(frozen=True, slots=True)
class ListedItem:
    path: str  # the server-side real path
    kind: MediaKind


@dataclass(frozen=True, slots=True)
class ListingProblem:
    path: str  # server-side path; for a root or explicit path that fails, as the caller wrote it
    error: str


Listed = ListedItem | ListingProblem


def validate(request: ListingRequest, paths: MediaPaths) -> None:
    """Raises InvalidInput, MediaNotFound or AccessDenied for a request that cannot be listed."""
    _check_shape(request)
    for raw in request.roots:
        paths.resolve_dir(raw, file_hint=_FILE_ROOT_HINT)
    for raw in request.paths:
        _explicit(raw, request, paths)


def iter_media(request: ListingRequest, paths: MediaPaths) -> Iterator[Listed]:
    """The request's media, streamed (see the module docstring). A malformed request raises
    InvalidInput here; what goes wrong on disk comes out as `ListingProblem`s."""
    _check_shape(request)
    return _Lister(request, paths).run()


def _check_shape(request: ListingRequest) -> None:
    if not request.roots and not request.paths:
        raise InvalidInput("nothing to list: give at least one root folder or path")
    if not request.kinds:
        raise InvalidInput("kinds is empty: nothing would be listed")
    for field, patterns in (("include", request.include), ("exclude", request.exclude)):
        for number, pattern in enumerate(patterns, start=1):
            if not pattern.strip():
                raise InvalidInput(f"{field} pattern {number} is empty")
    since = request.modified_since
    if since is not None and not (math.isfinite(since) and since >= 0):
        raise InvalidInput(
            f"modified_since must be a finite, non-negative time in seconds since the epoch, not {since}"
        )


def _explicit(raw: str, request: ListingRequest, paths: MediaPaths) -> ListedItem:
    real = paths.resolve(raw, dir_hint=_FOLDER_PATH_HINT)
    kind = media_kind(real.name)
    if kind is None:
        raise InvalidInput(f"{raw} is not an image, video or zip gallery (judged by its extension)")
    if kind not in request.kinds:
        wanted = ", ".join(sorted(request.kinds))
        raise InvalidInput(f"{raw} is a {kind}, but the request lists only: {wanted}")
    return ListedItem(str(real), kind)


def _compile(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("|".join(fnmatch.translate(pattern) for pattern in patterns), re.IGNORECASE)


class _Lister:
    def __init__(self, request: ListingRequest, paths: MediaPaths) -> None:
        self.request = request
        self.paths = paths
        self.include = _compile(request.include)
        self.exclude = _compile(request.exclude)
        self.explicit: set[str] = set()  # real paths of explicit files: the walk skips them
        self.linked: set[str] = set()  # real targets already listed through a symlink
        self.roots: list[Path] = []

    def run(self) -> Iterator[Listed]:
        for raw in self.request.paths:
            try:
                item = _explicit(raw, self.request, self.paths)
            except StashVisionError as error:
                yield ListingProblem(raw, str(error))
                continue
            if item.path not in self.explicit:
                self.explicit.add(item.path)
                yield item
        for raw in self.request.roots:
            try:
                self.roots.append(self.paths.resolve_dir(raw, file_hint=_FILE_ROOT_HINT))
            except StashVisionError as error:
                yield ListingProblem(raw, str(error))
        for index, root in enumerate(self.roots):
            if not self._walked_by_another(index):
                yield from self._walk(root)

    def _walked_by_another(self, index: int) -> bool:
        """Whether another root's walk reaches this root (for equal roots, the first one walks)."""
        root = self.roots[index]
        return (
            any(
                other != root and root.is_relative_to(other) and self._reaches(other, root)
                for other in self.roots
            )
            or root in self.roots[:index]
        )

    def _reaches(self, root: Path, target: Path) -> bool:
        """Whether walking `root` gets to `target` below it: no hidden or excluded name on the way."""
        parts = target.relative_to(root).parts
        for depth, name in enumerate(parts, start=1):
            if name.startswith(".") or self._excluded("/".join(parts[:depth]), name):
                return False
        return True

    def _excluded(self, relative: str, name: str) -> bool:
        return self.exclude is not None and bool(self.exclude.match(relative) or self.exclude.match(name))

    def _included(self, relative: str, name: str) -> bool:
        return self.include is None or bool(self.include.match(relative) or self.include.match(name))

    def _walk(self, root: Path) -> Iterator[Listed]:
        listing = _sorted_entries(str(root))
        if isinstance(listing, ListingProblem):
            yield listing
            return
        # The current folder chain: (relative prefix, the folder's remaining entries).
        chain: list[tuple[str, Iterator[os.DirEntry[str]]]] = [("", iter(listing))]
        while chain:
            prefix, entries = chain[-1]
            entry = next(entries, None)
            if entry is None:
                chain.pop()
                continue
            relative = prefix + entry.name
            if entry.name.startswith(".") or self._excluded(relative, entry.name):
                continue
            if entry.is_dir(follow_symlinks=False):
                listing = _sorted_entries(entry.path)
                if isinstance(listing, ListingProblem):
                    yield listing
                else:
                    chain.append((relative + "/", iter(listing)))
                continue
            found = self._linked(entry, relative) if entry.is_symlink() else self._file(entry, relative)
            if found is not None:
                yield found

    def _file(self, entry: os.DirEntry[str], relative: str) -> Listed | None:
        kind = media_kind(entry.name)
        if (
            kind is None
            or kind not in self.request.kinds
            or not entry.is_file(follow_symlinks=False)  # a FIFO or device named like media
            or not self._included(relative, entry.name)
            or entry.path in self.explicit
        ):
            return None
        if self.request.modified_since is not None:
            try:
                mtime = entry.stat(follow_symlinks=False).st_mtime
            except OSError as error:
                return ListingProblem(entry.path, f"gone or unreadable while listing: {_reason(error)}")
            if mtime < self.request.modified_since:
                return None
        return ListedItem(entry.path, kind)

    def _linked(self, entry: os.DirEntry[str], relative: str) -> Listed | None:
        target = Path(os.path.realpath(entry.path))
        kind = media_kind(target.name)
        if kind is None or kind not in self.request.kinds or not self._included(relative, entry.name):
            return None  # also every link to a folder whose name is not media-like
        if not self.paths.within_roots(target):
            return ListingProblem(entry.path, f"links to {target}, outside the library roots; not listed")
        try:
            info = target.stat()
        except OSError as error:
            return ListingProblem(entry.path, f"broken symlink to {target}: {_reason(error)}")
        real = str(target)
        if (
            not stat.S_ISREG(info.st_mode)  # folder links are not followed
            or real in self.explicit
            or real in self.linked
            or self._walk_lists(target)
        ):
            return None
        since = self.request.modified_since
        if since is not None and info.st_mtime < since:
            return None
        self.linked.add(real)
        return ListedItem(real, kind)

    def _walk_lists(self, target: Path) -> bool:
        """Whether some root's walk lists this real file itself (so a link to it adds nothing)."""
        return any(
            target.is_relative_to(root)
            and self._reaches(root, target)
            and self._included(target.relative_to(root).as_posix(), target.name)
            for root in self.roots
        )


def _sorted_entries(folder: str) -> list[os.DirEntry[str]] | ListingProblem:
    try:
        with os.scandir(folder) as entries:
            return sorted(entries, key=lambda entry: entry.name)
    except OSError as error:
        return ListingProblem(folder, f"cannot list this folder: {_reason(error)}")


def _reason(error: OSError) -> str:
    return error.strerror or str(error)
