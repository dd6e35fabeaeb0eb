"""Turns a caller's path into a file the server may read: path mappings applied, `..` refused, and
(when library roots are configured) confined to them, symlinks resolved before the check."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from stash_vision.server.errors import AccessDenied, InvalidInput, MediaNotFound


@dataclass(frozen=True)
class MediaLocation:
    path: Path
    # Set for `archive.zip/inner/path`: the member inside the archive at `path`.
    member: str | None = None


class MediaPaths:
    def __init__(self, library_roots: list[Path], path_mappings: dict[str, str]) -> None:
        self.roots = [root.expanduser().resolve() for root in library_roots]
        # Longest prefix first, so a mapping for /data/photos wins over one for /data.
        self.mappings = sorted(path_mappings.items(), key=lambda item: len(item[0]), reverse=True)

    def map(self, raw: str) -> str:
        for prefix, replacement in self.mappings:
            # Whole path components only: a mapping for /data must not rewrite /database.
            if raw == prefix or (
                raw.startswith(prefix) and (prefix.endswith(("/", "\\")) or raw[len(prefix)] in "/\\")
            ):
                return replacement + raw[len(prefix) :]
        return raw

    def resolve(self, raw: str, *, dir_hint: str = "") -> Path:
        """A plain file the server may read. `dir_hint` is added to the refusal of a directory."""
        mapped = self._validated(raw)
        return self._confined_file(Path(mapped), raw, mapped, dir_hint)

    def resolve_dir(self, raw: str, *, file_hint: str = "") -> Path:
        """A directory the server may list, under the same rules as `resolve`. `file_hint` is added to
        the refusal of a file (what the caller should do with one instead)."""
        mapped = self._validated(raw)
        real = self._confined(Path(mapped), raw, mapped, "directory")
        if not real.is_dir():
            raise InvalidInput(f"{raw} is a file, not a directory{file_hint}")
        return real

    def within_roots(self, real: Path) -> bool:
        """Whether a resolved path lies inside a library root (any path does when none is configured)."""
        return not self.roots or any(real.is_relative_to(root) for root in self.roots)

    def locate(self, raw: str) -> MediaLocation:
        """A file, or a member of a zip archive written as `archive.zip/inner/path` (the original
        server's convention for images inside zip galleries)."""
        mapped = self._validated(raw)
        try:
            return MediaLocation(self._confined_file(Path(mapped), raw, mapped))
        except MediaNotFound:
            parts = PurePosixPath(mapped).parts
            for cut in range(len(parts) - 1, 1, -1):
                archive = PurePosixPath(*parts[:cut])
                if archive.suffix.lower() == ".zip" and Path(archive).is_file():
                    real = self._confined_file(Path(archive), raw, str(archive))
                    return MediaLocation(real, "/".join(parts[cut:]))
            raise

    def _validated(self, raw: str) -> str:
        if not raw or not raw.strip():
            raise InvalidInput("empty path")
        if "\x00" in raw:
            raise InvalidInput("path contains a NUL byte")
        mapped = self.map(raw)
        if not Path(mapped).is_absolute():
            raise InvalidInput(f"path must be absolute (a path as the server sees it): {raw!r}")
        if ".." in PurePosixPath(mapped).parts:
            raise InvalidInput(f"path must not contain '..': {raw!r}")
        return mapped

    def _confined_file(self, candidate: Path, raw: str, mapped: str, dir_hint: str = "") -> Path:
        real = self._confined(candidate, raw, mapped, "file")
        if real.is_dir():
            raise InvalidInput(f"{raw} is a directory, not a file{dir_hint}")
        return real

    def _confined(self, candidate: Path, raw: str, mapped: str, what: str) -> Path:
        real = candidate.resolve()
        if not self.within_roots(real):
            roots = ", ".join(str(r) for r in self.roots)
            raise AccessDenied(
                f"{raw} is outside the library roots ({roots}); see STASH_VISION_LIBRARY_ROOTS"
            )
        if not real.exists():
            hint = " after path mappings" if mapped != raw else ""
            raise MediaNotFound(
                f"{what} not found: {mapped}{hint} (as the server sees it; if Stash runs on another machine or "
                "in Docker, set STASH_VISION_PATH_MAPPINGS)"
            )
        return real
