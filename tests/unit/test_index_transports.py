"""IndexService over a real grpc.aio server (real IndexHolder, small real indexes on disk), and the
adapter's /faces/index routes through httpx's ASGI transport against that server: shapes, live
activation, rollback, delete refusal, export download, error codes and the profile check."""

from __future__ import annotations

import asyncio
import io
import zipfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest

from stash_vision.adapter.app import create_app
from stash_vision.server.api.index_servicer import IndexServicer
from stash_vision.server.faces.index import publish
from stash_vision.server.faces.index_holder import IndexHolder
from stash_vision.server.workers import CpuPool
from stash_vision.settings import Settings
from stash_vision.v1 import faces_pb2, faces_pb2_grpc, indexes_pb2, indexes_pb2_grpc
from tests.unit.test_index_versions import PROFILE, build_version

TEST_TIMEOUT_S = 30.0
Scenario = Callable[[indexes_pb2_grpc.IndexServiceStub, httpx.AsyncClient], Awaitable[None]]


class OneIndex(faces_pb2_grpc.FaceServiceServicer):  # type: ignore[misc]
    async def GetFaceIndex(self, request: Any, context: Any) -> faces_pb2.GetFaceIndexResponse:
        return faces_pb2.GetFaceIndexResponse(
            answered_by=faces_pb2.AnsweredBy(profile="default", index_version="v1"), index_loaded=True
        )


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "face_indexes" / PROFILE.name
    build_version(folder, "v1", range(0, 4), created="2026-01-01T00:00:00+00:00")
    build_version(folder, "v2", range(2, 7), seed=1, created="2026-01-02T00:00:00+00:00")
    publish(folder, folder / "v1")
    return folder


def run(root: Path, scenario: Scenario) -> None:
    async def main() -> None:
        pool = CpuPool(2)
        server = grpc.aio.server()
        holder = IndexHolder(root.parent, PROFILE, pool)
        indexes_pb2_grpc.add_IndexServiceServicer_to_server(IndexServicer(holder, pool), server)
        faces_pb2_grpc.add_FaceServiceServicer_to_server(OneIndex(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                app = create_app(Settings(server_url=f"127.0.0.1:{port}"))
                async with app.router.lifespan_context(app):
                    transport = httpx.ASGITransport(app=app)
                    async with httpx.AsyncClient(transport=transport, base_url="http://adapter") as http:
                        await scenario(indexes_pb2_grpc.IndexServiceStub(channel), http)
        finally:
            await server.stop(None)
            pool.shutdown()

    asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT_S))


def test_grpc_list_get_diff_activate_rollback_delete(root: Path) -> None:
    async def scenario(stub: indexes_pb2_grpc.IndexServiceStub, _http: httpx.AsyncClient) -> None:
        listed = await stub.ListIndexVersions(indexes_pb2.ListIndexVersionsRequest())
        assert [v.version for v in listed.versions] == ["v2", "v1"]
        assert (listed.active_version, listed.previous_version, listed.profile) == ("v1", "", "default")
        v1 = listed.versions[1]
        assert (v1.performer_count, v1.face_count, v1.active) == (4, 8, True) and v1.size_bytes > 0
        assert '"profile": "default"' in v1.recipe_json and list(v1.sources) == ["/img"]

        diff = await stub.DiffIndexVersions(indexes_pb2.DiffIndexVersionsRequest(base="v1", other="v2"))
        assert (diff.total.performers_added, diff.total.performers_removed) == (3, 2)
        assert [s.source for s in diff.sources] == ["local", "stashdb.org"]

        activated = await stub.ActivateIndexVersion(indexes_pb2.ActivateIndexVersionRequest(version="v2"))
        assert (activated.version.version, activated.replaced_version) == ("v2", "v1")
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await stub.DeleteIndexVersion(indexes_pb2.DeleteIndexVersionRequest(version="v2"))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "active" in (refused.value.details() or "")
        back = await stub.ActivateIndexVersion(indexes_pb2.ActivateIndexVersionRequest(rollback=True))
        assert (back.version.version, back.replaced_version, back.version.active) == ("v1", "v2", True)
        await stub.DeleteIndexVersion(indexes_pb2.DeleteIndexVersionRequest(version="v2"))
        with pytest.raises(grpc.aio.AioRpcError) as missing:
            await stub.GetIndexVersion(indexes_pb2.GetIndexVersionRequest(version="v2"))
        assert missing.value.code() == grpc.StatusCode.NOT_FOUND
        with pytest.raises(grpc.aio.AioRpcError) as other:
            await stub.ActivateIndexVersion(
                indexes_pb2.ActivateIndexVersionRequest(profile="stash-sense", version="v1")
            )
        assert other.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "serving version is unchanged" in (other.value.details() or "")

    run(root, scenario)


def test_grpc_export_streams_the_release(root: Path) -> None:
    async def scenario(stub: indexes_pb2_grpc.IndexServiceStub, _http: httpx.AsyncClient) -> None:
        chunks = [
            c async for c in stub.ExportIndexVersion(indexes_pb2.ExportIndexVersionRequest(version="v1"))
        ]
        assert chunks[0].file_name == "default-v1.zip"
        data = b"".join(c.data for c in chunks[1:])
        assert len(data) == chunks[0].size_bytes
        names = set(zipfile.ZipFile(io.BytesIO(data)).namelist())
        assert {"manifest.json", "faces.json", "performers.json", "performers.db"} <= names
        assert {f"face_{name}.voy" for name in PROFILE.embedder_names} <= names

    run(root, scenario)


def test_http_routes(root: Path) -> None:
    async def scenario(_stub: indexes_pb2_grpc.IndexServiceStub, http: httpx.AsyncClient) -> None:
        index = (await http.get("/faces/index")).json()
        assert index["index_version"] == "v1" and [v["version"] for v in index["versions"]] == ["v2", "v1"]
        listed = (await http.get("/faces/index/versions")).json()
        assert (listed["active_version"], listed["previous_version"]) == ("v1", None)
        one = (await http.get("/faces/index/versions/v1")).json()
        assert one["recipe"]["profile"] == "default" and one["parent_version"] is None
        diff = (await http.get("/faces/index/versions/v1/diff/v2")).json()
        assert diff["performers_added"] == 3 and diff["sources"]["local"]["performers_added"] == 2
        activated = await http.post("/faces/index/versions/v2/activate")
        assert activated.status_code == 200 and activated.json()["replaced_version"] == "v1"
        assert (await http.delete("/faces/index/versions/v2")).status_code == 409
        assert (await http.post("/faces/index/rollback")).json()["version"]["version"] == "v1"
        assert (await http.get("/faces/index/versions/nope")).status_code == 404
        download = await http.get("/faces/index/versions/v2/export")
        assert download.status_code == 200 and download.headers["content-type"] == "application/zip"
        assert "manifest.json" in zipfile.ZipFile(io.BytesIO(download.content)).namelist()
        assert (await http.get("/faces/index/versions/nope/export")).status_code == 404
        assert (await http.delete("/faces/index/versions/v2")).json() == {"deleted": "v2"}

    run(root, scenario)


def test_http_import_of_an_exported_release(root: Path, tmp_path: Path) -> None:
    async def scenario(_stub: indexes_pb2_grpc.IndexServiceStub, http: httpx.AsyncClient) -> None:
        download = await http.get("/faces/index/versions/v2/export")
        archive = tmp_path / "v2.zip"
        archive.write_bytes(download.content)
        again = await http.post("/faces/index/import", json={"path": str(archive)})
        assert again.status_code == 409 and "already exists" in again.json()["detail"]
        faces = (await http.get("/faces/index/versions/v2")).json()["face_count"]
        assert (await http.delete("/faces/index/versions/v2")).status_code == 200
        imported = await http.post("/faces/index/import", json={"path": str(archive), "activate": True})
        assert imported.status_code == 201, imported.text
        version = imported.json()
        assert version["origin"] == "import" and version["active"] is True
        assert version["version"] == "v2" and version["face_count"] == faces
        missing = await http.post("/faces/index/import", json={"path": str(tmp_path / "nope.zip")})
        assert missing.status_code == 404 and "not found" in missing.json()["detail"]
        not_zip = tmp_path / "notes.zip"
        not_zip.write_text("not a zip")
        refused = await http.post("/faces/index/import", json={"path": str(not_zip)})
        assert refused.status_code in (400, 409) and "zip" in refused.json()["detail"]
        assert (await http.get("/faces/index/versions")).json()["active_version"] == version["version"]

    run(root, scenario)
