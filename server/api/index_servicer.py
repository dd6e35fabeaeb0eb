"""gRPC IndexService: protobuf <-> the index versions of the server's face profile.

File work (listing, hashing-free reads, zip writing) runs in the CPU pool, never on the event loop;
activation goes through the live IndexHolder, so a switch is checked before it serves."""

from __future__ import annotations

import json
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc

from stash_vision.server.api.status import mapped_errors, mapped_stream_errors
from stash_vision.server.errors import (
    IndexUnavailable,
    IndexVersionConflict,
    IndexVersionNotFound,
    InvalidInput,
    StashVisionError,
)
from stash_vision.server.faces.index.diff import SourceDiff, diff_folders
from stash_vision.server.faces.index.errors import FaceIndexError
from stash_vision.server.faces.index.release import export_release, import_release
from stash_vision.server.faces.index.versions import (
    VersionConflictError,
    VersionInfo,
    VersionNotFoundError,
    active_version,
    delete_version,
    get_version,
    list_versions,
    previous_version,
    version_folder,
)
from stash_vision.server.faces.index_holder import IndexHolder
from stash_vision.server.jobs.api import Jobs
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.workers import CpuPool
from stash_vision.v1 import indexes_pb2, indexes_pb2_grpc

BUILD_KIND = "build-face-index"
_CHUNK_BYTES = 1 << 20


def _domain(error: FaceIndexError) -> StashVisionError:
    if isinstance(error, VersionNotFoundError):
        return IndexVersionNotFound(str(error))
    if isinstance(error, VersionConflictError):
        return IndexVersionConflict(str(error))
    return IndexUnavailable(str(error))


def _source(diff: SourceDiff) -> indexes_pb2.SourceDiff:
    return indexes_pb2.SourceDiff(
        source=diff.source,
        performers_added=diff.performers_added,
        performers_removed=diff.performers_removed,
        faces_added=diff.faces_added,
        faces_removed=diff.faces_removed,
    )


class IndexServicer(indexes_pb2_grpc.IndexServiceServicer):  # type: ignore[misc]
    def __init__(
        self, holder: IndexHolder, pool: CpuPool, jobs: Jobs | None = None, paths: MediaPaths | None = None
    ) -> None:
        self.holder = holder
        self.pool = pool
        self.jobs = jobs
        self.paths = paths or MediaPaths([], {})
        self._build_jobs: dict[str, str] = {}  # version -> build job id; a version's builder never changes

    @property
    def root(self) -> Path:
        return self.holder.folder

    def _check_profile(self, profile: str) -> None:
        if profile and profile != self.holder.profile.name:
            raise InvalidInput(
                f"this server runs face profile {self.holder.profile.name!r}; versions of profile {profile!r} "
                f"are managed by a server started with STASH_VISION_FACE_PROFILE={profile} (the serving "
                "version is unchanged)"
            )

    async def _files(self, function: Any, *args: Any) -> Any:
        try:
            return await self.pool.run(function, *args)
        except FaceIndexError as error:
            raise _domain(error) from None

    async def _job_of(self, version: str) -> str:
        """The build-face-index job whose result names `version` (searched among the newest 100)."""
        if not self._build_jobs and self.jobs is not None:
            page = await self.jobs.list(kinds=[BUILD_KIND], page_size=100)
            for job in page.jobs:
                results = await self.jobs.results(job.id, page_size=1)
                for item in results.items:
                    built = (item.result or {}).get("version")
                    if isinstance(built, str):
                        self._build_jobs.setdefault(built, job.id)
        return self._build_jobs.get(version, "")

    async def _message(self, info: VersionInfo) -> indexes_pb2.IndexVersion:
        manifest = info.manifest
        build_job = info.lineage.build_job
        if not build_job and info.lineage.origin != "import":
            build_job = await self._job_of(info.version)
        return indexes_pb2.IndexVersion(
            version=info.version,
            created_at=manifest.created_at,
            sources=manifest.sources,
            performer_count=manifest.performer_count,
            face_count=manifest.face_count,
            size_bytes=info.size_bytes,
            recipe_json=json.dumps(info.recipe, sort_keys=True),
            parent_version=info.lineage.parent,
            build_job_id=build_job,
            origin=info.lineage.origin,
            active=info.active,
            previous=info.previous,
        )

    async def list_response(self) -> indexes_pb2.ListIndexVersionsResponse:
        """Also what FaceService.GetFaceIndex's adapter route shows as `versions`."""
        infos: list[VersionInfo] = await self._files(list_versions, self.root)
        return indexes_pb2.ListIndexVersionsResponse(
            profile=self.holder.profile.name,
            versions=[await self._message(info) for info in infos],
            active_version=await self._files(active_version, self.root) or "",
            previous_version=await self._files(previous_version, self.root) or "",
        )

    @mapped_errors
    async def ListIndexVersions(
        self, request: indexes_pb2.ListIndexVersionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> indexes_pb2.ListIndexVersionsResponse:
        self._check_profile(request.profile)
        return await self.list_response()

    @mapped_errors
    async def GetIndexVersion(
        self, request: indexes_pb2.GetIndexVersionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> indexes_pb2.GetIndexVersionResponse:
        self._check_profile(request.profile)
        info = await self._files(get_version, self.root, request.version)
        return indexes_pb2.GetIndexVersionResponse(version=await self._message(info))

    @mapped_errors
    async def DiffIndexVersions(
        self, request: indexes_pb2.DiffIndexVersionsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> indexes_pb2.DiffIndexVersionsResponse:
        self._check_profile(request.profile)
        base = await self._files(version_folder, self.root, request.base)
        other = await self._files(version_folder, self.root, request.other)
        diff = await self._files(diff_folders, base, other)
        total = SourceDiff(
            "", diff.performers_added, diff.performers_removed, diff.faces_added, diff.faces_removed
        )
        return indexes_pb2.DiffIndexVersionsResponse(
            base=diff.base,
            other=diff.other,
            sources=[_source(s) for s in diff.sources],
            total=_source(total),
            added_performer_ids=diff.added_performer_ids,
            removed_performer_ids=diff.removed_performer_ids,
        )

    @mapped_errors
    async def ActivateIndexVersion(
        self, request: indexes_pb2.ActivateIndexVersionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> indexes_pb2.ActivateIndexVersionResponse:
        self._check_profile(request.profile)
        if request.rollback:
            index, replaced = await self.holder.rollback()
        elif not request.version:
            raise InvalidInput("name the version to activate (or set rollback)")
        else:
            index, replaced = await self.holder.activate(request.version)
        info = await self._files(get_version, self.root, index.folder.name)
        return indexes_pb2.ActivateIndexVersionResponse(
            version=await self._message(info), replaced_version=replaced
        )

    @mapped_errors
    async def ImportIndexRelease(
        self, request: indexes_pb2.ImportIndexReleaseRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> indexes_pb2.ImportIndexReleaseResponse:
        self._check_profile(request.profile)
        source = await self.pool.run(self.paths.resolve, request.path)
        profile = self.holder.profile
        version = await self._files(import_release, source, self.root, profile.name, profile.recipe())
        if request.activate:
            await self.holder.activate(version)
        info = await self._files(get_version, self.root, version)
        return indexes_pb2.ImportIndexReleaseResponse(version=await self._message(info))

    @mapped_errors
    async def DeleteIndexVersion(
        self, request: indexes_pb2.DeleteIndexVersionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> indexes_pb2.DeleteIndexVersionResponse:
        self._check_profile(request.profile)
        await self._files(delete_version, self.root, request.version)
        return indexes_pb2.DeleteIndexVersionResponse()

    @mapped_stream_errors
    async def ExportIndexVersion(
        self, request: indexes_pb2.ExportIndexVersionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[indexes_pb2.ExportIndexVersionChunk]:
        self._check_profile(request.profile)
        folder = await self._files(version_folder, self.root, request.version)
        name = f"{self.holder.profile.name}-{folder.name}.zip"
        with tempfile.TemporaryDirectory(prefix="stash-vision-export-") as scratch:
            archive = await self._files(export_release, folder, Path(scratch) / name)
            yield indexes_pb2.ExportIndexVersionChunk(file_name=name, size_bytes=archive.stat().st_size)
            with archive.open("rb") as stream:
                while data := await self.pool.run(stream.read, _CHUNK_BYTES):
                    yield indexes_pb2.ExportIndexVersionChunk(data=data)
