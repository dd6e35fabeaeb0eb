"""Unit tests for stash_vision.catalog.fetcher: mirror folders, file:// and http:// bases, archive
members, checksum and size verification, atomic writes and progress reporting.

The real-weights tests fetch the smallest catalogued model (yunet, 238 kB) from the shared mirror;
a missing mirror fails the test. The rest use small synthetic weights and CatalogEntry objects
built in code, served from tmp_path folders, zip archives and a real http.server on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import itertools
import os
import threading
import zipfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.catalog.fetcher import FetchError, fetch, is_fetched, mirror_source

# --------------------------------------------------------------------------------------------- helpers


def synthetic_weights(size: int = 4096, seed: int = 7) -> bytes:
    """Deterministic pseudo-random bytes (not compressible, so zip members are realistic)."""
    out = bytearray()
    counter = 0
    while len(out) < size:
        out += hashlib.sha256(f"{seed}:{counter}".encode()).digest()
        counter += 1
    return bytes(out[:size])


def synthetic_entry(
    tmp_path: Path,
    payload: bytes,
    name: str = "tiny_model",
    mirror_path: str = "synthetic/tiny_model.onnx",
    url: str = "https://invalid.example/tiny_model.onnx",
    member: str | None = None,
) -> CatalogEntry:
    source: dict[str, object] = {"url": url}
    if member is not None:
        source["member"] = member
    return CatalogEntry.model_validate(
        {
            "name": name,
            "version": 1,
            "task": "test",
            "licence": "test",
            "weights": {
                "file": "model.onnx",
                "sha256": hashlib.sha256(payload).hexdigest(),
                "size": len(payload),
                "mirror_path": mirror_path,
                "sources": [source],
            },
            "input": {
                "tensor": "x",
                "layout": "NCHW",
                "color_order": "RGB",
                "width": 8,
                "height": 8,
                "resize": "stretch",
            },
            "folder": tmp_path,
        }
    )


def write_mirror(root: Path, entry: CatalogEntry, payload: bytes) -> Path:
    path = root / entry.weights.mirror_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return path


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.fixture
def yunet() -> CatalogEntry:
    return Catalog.load().get("yunet")


@pytest.fixture
def shared_models(shared: Path) -> Path:
    models = shared / "models"
    yunet_file = models / Catalog.load().get("yunet").weights.mirror_path
    if not yunet_file.is_file():
        pytest.fail(f"shared mirror file missing: {yunet_file} (set STASH_VISION_SHARED_DIR)", pytrace=False)
    return models


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_root(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a tmp folder: (folder, base URL)."""
    root = tmp_path / "www"
    root.mkdir()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(QuietHandler, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


# ----------------------------------------------------------------------------------- real mirror folder


def test_fetch_real_weights_from_mirror_folder(
    tmp_path: Path, yunet: CatalogEntry, shared_models: Path
) -> None:
    models_dir = tmp_path / "models"
    result = fetch(yunet, models_dir, mirror=str(shared_models), allow_upstream=False)
    destination = models_dir / "yunet" / "1" / "model.onnx"
    assert result.status == "fetched"
    assert result.name == "yunet"
    assert result.path == destination
    assert result.source == (shared_models.resolve() / yunet.weights.mirror_path).as_uri()
    assert destination.read_bytes() == (shared_models / yunet.weights.mirror_path).read_bytes()
    assert is_fetched(yunet, models_dir, verify=True)
    assert leftovers(destination.parent) == ["model.onnx"]


def test_fetch_real_weights_from_file_url_base(
    tmp_path: Path, yunet: CatalogEntry, shared_models: Path
) -> None:
    models_dir = tmp_path / "models"
    base = shared_models.resolve().as_uri()
    result = fetch(yunet, models_dir, mirror=base, allow_upstream=False)
    assert result.status == "fetched"
    assert result.source == f"{base}/{yunet.weights.mirror_path}"
    assert hashlib.sha256(result.path.read_bytes()).hexdigest() == yunet.weights.sha256


def test_second_fetch_is_present_and_does_not_rewrite(
    tmp_path: Path, yunet: CatalogEntry, shared_models: Path
) -> None:
    models_dir = tmp_path / "models"
    first = fetch(yunet, models_dir, mirror=str(shared_models), allow_upstream=False)
    before = first.path.stat()
    second = fetch(yunet, models_dir, mirror=str(shared_models), allow_upstream=False)
    after = second.path.stat()
    assert second.status == "present"
    assert second.source is None
    assert second.path == first.path
    assert (after.st_mtime_ns, after.st_ino) == (before.st_mtime_ns, before.st_ino)


def test_present_check_needs_no_source_at_all(
    tmp_path: Path, yunet: CatalogEntry, shared_models: Path
) -> None:
    models_dir = tmp_path / "models"
    fetch(yunet, models_dir, mirror=str(shared_models), allow_upstream=False)
    # No mirror and no upstream: verified weights on disk are enough.
    assert fetch(yunet, models_dir, mirror=None, allow_upstream=False).status == "present"


# ------------------------------------------------------------------------------------ failure handling


def test_checksum_mismatch_raises_and_leaves_nothing_behind(tmp_path: Path) -> None:
    payload = synthetic_weights()
    entry = synthetic_entry(tmp_path, payload)
    corrupted = bytearray(payload)
    corrupted[100] ^= 0xFF  # same size, different content
    mirror = tmp_path / "mirror"
    write_mirror(mirror, entry, bytes(corrupted))
    models_dir = tmp_path / "models"
    with pytest.raises(FetchError) as raised:
        fetch(entry, models_dir, mirror=str(mirror), allow_upstream=False)
    message = str(raised.value)
    assert "tiny_model" in message
    assert "checksum" in message
    assert entry.weights.sha256 in message
    assert leftovers(entry.weights_path(models_dir).parent) == []


def test_checksum_mismatch_of_real_model_copy_names_the_model(
    tmp_path: Path, yunet: CatalogEntry, shared_models: Path
) -> None:
    data = bytearray((shared_models / yunet.weights.mirror_path).read_bytes())
    data[len(data) // 2] ^= 0x01
    mirror = tmp_path / "mirror"
    (mirror / yunet.weights.mirror_path).parent.mkdir(parents=True)
    (mirror / yunet.weights.mirror_path).write_bytes(bytes(data))
    models_dir = tmp_path / "models"
    with pytest.raises(FetchError, match="checksum") as raised:
        fetch(yunet, models_dir, mirror=str(mirror), allow_upstream=False)
    assert "model yunet" in str(raised.value)
    assert leftovers(models_dir / "yunet" / "1") == []


def test_size_mismatch_raises_and_leaves_nothing_behind(tmp_path: Path) -> None:
    payload = synthetic_weights()
    entry = synthetic_entry(tmp_path, payload)
    mirror = tmp_path / "mirror"
    write_mirror(mirror, entry, payload + b"extra")
    models_dir = tmp_path / "models"
    with pytest.raises(FetchError, match="size mismatch"):
        fetch(entry, models_dir, mirror=str(mirror), allow_upstream=False)
    assert leftovers(entry.weights_path(models_dir).parent) == []


def test_missing_mirror_file_without_upstream_names_model_and_mirror_setting(tmp_path: Path) -> None:
    entry = synthetic_entry(tmp_path, synthetic_weights())
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    models_dir = tmp_path / "models"
    with pytest.raises(FetchError) as raised:
        fetch(entry, models_dir, mirror=str(empty_mirror), allow_upstream=False)
    message = str(raised.value)
    assert "tiny_model" in message
    assert "STASH_VISION_MODEL_MIRROR" in message
    assert "not found" in message
    assert entry.weights.mirror_path in message
    assert leftovers(entry.weights_path(models_dir).parent) == []


def test_no_mirror_and_upstream_disabled_raises(tmp_path: Path) -> None:
    entry = synthetic_entry(tmp_path, synthetic_weights())
    with pytest.raises(FetchError, match="tiny_model"):
        fetch(entry, tmp_path / "models", mirror=None, allow_upstream=False)


def test_mirror_failure_falls_back_to_upstream(tmp_path: Path) -> None:
    payload = synthetic_weights()
    upstream = tmp_path / "upstream.onnx"
    upstream.write_bytes(payload)
    entry = synthetic_entry(tmp_path, payload, url=upstream.as_uri())
    empty_mirror = tmp_path / "mirror"
    empty_mirror.mkdir()
    result = fetch(entry, tmp_path / "models", mirror=str(empty_mirror), allow_upstream=True)
    assert result.status == "fetched"
    assert result.source == upstream.as_uri()
    assert result.path.read_bytes() == payload


def test_corrupt_file_at_destination_is_replaced(tmp_path: Path) -> None:
    payload = synthetic_weights()
    entry = synthetic_entry(tmp_path, payload)
    mirror = tmp_path / "mirror"
    write_mirror(mirror, entry, payload)
    models_dir = tmp_path / "models"
    destination = entry.weights_path(models_dir)
    destination.parent.mkdir(parents=True)
    destination.write_bytes(b"\0" * len(payload))  # right size, wrong content
    assert not is_fetched(entry, models_dir, verify=True)
    assert is_fetched(entry, models_dir, verify=False)
    result = fetch(entry, models_dir, mirror=str(mirror), allow_upstream=False)
    assert result.status == "fetched"
    assert destination.read_bytes() == payload


# ------------------------------------------------------------------------------------------------ HTTP


def test_http_mirror_success(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    payload = synthetic_weights(300_000)
    entry = synthetic_entry(tmp_path, payload, mirror_path="sub dir/tiny model.onnx")
    write_mirror(root, entry, payload)
    # The mirror path is URL-quoted (spaces here).
    assert mirror_source(base, entry).url == f"{base}/sub%20dir/tiny%20model.onnx"
    result = fetch(entry, tmp_path / "models", mirror=base + "/", allow_upstream=False)
    assert result.status == "fetched"
    assert result.path.read_bytes() == payload


def test_http_404_raises_fetch_error_with_status(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    _root, base = http_root
    entry = synthetic_entry(tmp_path, synthetic_weights())
    models_dir = tmp_path / "models"
    with pytest.raises(FetchError) as raised:
        fetch(entry, models_dir, mirror=base, allow_upstream=False)
    message = str(raised.value)
    assert "HTTP 404" in message
    assert "tiny_model" in message
    assert f"{base}/{entry.weights.mirror_path}" in message
    assert leftovers(entry.weights_path(models_dir).parent) == []


# --------------------------------------------------------------------------------------- archive member


def build_wheel(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_fetch_member_from_zip_archive(tmp_path: Path) -> None:
    payload = synthetic_weights(50_000)
    wheel = build_wheel(
        tmp_path / "pkg-1.0-py3-none-any.whl",
        {"pkg/__init__.py": b"", "pkg/weights/model.onnx": payload, "pkg/other.onnx": b"decoy"},
    )
    entry = synthetic_entry(tmp_path, payload, url=wheel.as_uri(), member="pkg/weights/model.onnx")
    models_dir = tmp_path / "models"
    result = fetch(entry, models_dir, mirror=None, allow_upstream=True)
    assert result.status == "fetched"
    assert result.source == wheel.as_uri()
    assert result.path.read_bytes() == payload
    # The downloaded archive and the temp file are gone.
    assert leftovers(result.path.parent) == ["model.onnx"]


def test_fetch_member_from_zip_archive_over_http(tmp_path: Path, http_root: tuple[Path, str]) -> None:
    root, base = http_root
    payload = synthetic_weights(20_000, seed=3)
    build_wheel(root / "pkg.whl", {"pkg/model.onnx": payload})
    entry = synthetic_entry(tmp_path, payload, url=f"{base}/pkg.whl", member="pkg/model.onnx")
    result = fetch(entry, tmp_path / "models", allow_upstream=True)
    assert result.path.read_bytes() == payload


def test_missing_archive_member_raises_clear_error(tmp_path: Path) -> None:
    payload = synthetic_weights()
    wheel = build_wheel(tmp_path / "pkg.whl", {"pkg/something_else.onnx": payload})
    entry = synthetic_entry(tmp_path, payload, url=wheel.as_uri(), member="pkg/model.onnx")
    models_dir = tmp_path / "models"
    with pytest.raises(FetchError) as raised:
        fetch(entry, models_dir, allow_upstream=True)
    message = str(raised.value)
    assert "tiny_model" in message
    assert "no member pkg/model.onnx" in message
    assert leftovers(entry.weights_path(models_dir).parent) == []


def test_archive_that_is_not_a_zip_raises_clear_error(tmp_path: Path) -> None:
    payload = synthetic_weights()
    not_zip = tmp_path / "pkg.whl"
    not_zip.write_bytes(b"this is not a zip file")
    entry = synthetic_entry(tmp_path, payload, url=not_zip.as_uri(), member="pkg/model.onnx")
    models_dir = tmp_path / "models"
    with pytest.raises(FetchError, match="not a zip archive"):
        fetch(entry, models_dir, allow_upstream=True)
    assert leftovers(entry.weights_path(models_dir).parent) == []


# --------------------------------------------------------------------------------------------- progress


def test_progress_callback_receives_increasing_byte_counts(tmp_path: Path) -> None:
    payload = synthetic_weights(3 * (1 << 20) + 12345)  # several 1 MiB chunks
    entry = synthetic_entry(tmp_path, payload)
    mirror = tmp_path / "mirror"
    write_mirror(mirror, entry, payload)
    calls: list[tuple[str, int, int | None]] = []
    fetch(
        entry,
        tmp_path / "models",
        mirror=str(mirror),
        allow_upstream=False,
        progress=lambda name, done, total: calls.append((name, done, total)),
    )
    assert len(calls) >= 4
    assert {name for name, _, _ in calls} == {"tiny_model"}
    done = [d for _, d, _ in calls]
    assert all(later > earlier for earlier, later in itertools.pairwise(done))
    assert done[-1] == len(payload)
    assert {total for _, _, total in calls} == {len(payload)}


def test_mirror_source_of_a_folder_is_an_absolute_file_uri(tmp_path: Path) -> None:
    entry = synthetic_entry(tmp_path, synthetic_weights())
    relative = os.path.relpath(tmp_path / "m", Path.cwd())
    source = mirror_source(relative, entry)
    assert source.url == (tmp_path / "m" / entry.weights.mirror_path).resolve().as_uri()
    assert source.member is None
