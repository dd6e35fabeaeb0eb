"""Turns a caller's path into a file the server may read: path mappings applied, `..` refused, and
(when library roots are configured) confined to them, symlinks resolved before the check."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from stash_vision.server.errors import AccessDenied, InvalidInput, MediaNotFound


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

    def resolve(self, raw: str) -> Path:
        if not raw or not raw.strip():
            raise InvalidInput("empty path")
        if "\x00" in raw:
            raise InvalidInput("path contains a NUL byte")
        mapped = self.map(raw)
        candidate = Path(mapped)
        if not candidate.is_absolute():
            raise InvalidInput(f"path must be absolute (a path as the server sees it): {raw!r}")
        if ".." in PurePosixPath(mapped).parts:
            raise InvalidInput(f"path must not contain '..': {raw!r}")
        real = candidate.resolve()
        if self.roots and not any(real.is_relative_to(root) for root in self.roots):
            roots = ", ".join(str(r) for r in self.roots)
            raise AccessDenied(
                f"{raw} is outside the library roots ({roots}); see STASH_VISION_LIBRARY_ROOTS"
            )
        if not real.exists():
            hint = " after path mappings" if mapped != raw else ""
            raise MediaNotFound(
                f"file not found: {mapped}{hint} (as the server sees it; if Stash runs on another machine or "
                "in Docker, set STASH_VISION_PATH_MAPPINGS)"
            )
        if real.is_dir():
            raise InvalidInput(f"{raw} is a directory, not a file")
        return real
