"""`stash-vision index list|show|diff|activate|rollback|delete|export|import` against a real
IndexService (real holder and small real indexes) served from a thread; import on a fresh data dir."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from stash_vision import cli
from stash_vision.server.api.index_servicer import IndexServicer
from stash_vision.server.faces.index import publish
from stash_vision.server.faces.index.versions import active_version, list_versions
from stash_vision.server.faces.index_holder import IndexHolder
from stash_vision.server.workers import CpuPool
from stash_vision.v1 import indexes_pb2_grpc
from tests.unit.test_index_versions import PROFILE, build_version


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """IndexService over $DATA/face_indexes/default with v1 (active) and v2, on its own loop."""
    data = tmp_path / "data"
    root = data / "face_indexes" / PROFILE.name
    build_version(root, "v1", range(0, 4), created="2026-01-01T00:00:00+00:00")
    build_version(root, "v2", range(2, 7), seed=1, created="2026-01-02T00:00:00+00:00")
    publish(root, root / "v1")
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    pool = CpuPool(2)

    async def start() -> tuple[grpc.aio.Server, int]:
        server = grpc.aio.server()
        servicer = IndexServicer(IndexHolder(root.parent, PROFILE, pool), pool)
        indexes_pb2_grpc.add_IndexServiceServicer_to_server(servicer, server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return server, port

    server, port = asyncio.run_coroutine_threadsafe(start(), loop).result(15)
    monkeypatch.setenv("STASH_VISION_SERVER_URL", f"127.0.0.1:{port}")
    monkeypatch.setenv("STASH_VISION_DATA_DIR", str(data))
    monkeypatch.setenv("STASH_VISION_FACE_PROFILE", PROFILE.name)
    monkeypatch.delenv("STASH_VISION_API_KEY", raising=False)
    try:
        yield root
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(None), loop).result(15)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(15)
        loop.close()
        pool.shutdown()


def test_list_show_diff(served: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["index", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("profile default: 2 version(s)")
    assert lines[1].startswith("  v2") and lines[2].startswith("* v1") and "4 performers" in lines[2]
    assert cli.main(["index", "show", "v1"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["recipe"]["profile"] == "default" and shown["active"] is True
    assert cli.main(["index", "diff", "v1", "v2"]) == 0
    out = capsys.readouterr().out
    assert "performers +3 -2" in out and "  local: performers +2 -1" in out


def test_activate_rollback_delete(served: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["index", "activate", "v2"]) == 0
    assert "version v2 is now serving (replacing v1)" in capsys.readouterr().out
    assert cli.main(["index", "delete", "v2"]) == 1
    assert "active" in capsys.readouterr().err
    assert cli.main(["index", "rollback"]) == 0
    assert active_version(served) == "v1"
    assert cli.main(["index", "delete", "v2"]) == 0
    assert cli.main(["index", "activate", "nope"]) == 1
    assert "NOT_FOUND" in capsys.readouterr().err


def test_export_then_import_on_a_fresh_data_dir(
    served: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = tmp_path / "release.zip"
    assert cli.main(["index", "export", "v2", "-o", str(archive)]) == 0
    assert archive.is_file() and "exported" in capsys.readouterr().out
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("STASH_VISION_DATA_DIR", str(fresh))
    assert cli.main(["index", "import", str(archive)]) == 0
    assert [v.version for v in list_versions(fresh / "face_indexes" / "default")] == ["v2"]
    assert cli.main(["index", "import", str(archive)]) == 1
    assert "already exists" in capsys.readouterr().err
    broken = tmp_path / "broken.zip"
    broken.write_bytes(b"not a zip")
    assert cli.main(["index", "import", str(broken)]) == 1
    assert "not a zip file" in capsys.readouterr().err
