"""`build-face-index`: today's `stash-vision index build FOLDER` as a job — enrol
FOLDER/<performer>/<images> into a new face-index version of the active profile and publish it.

The builder is the same code the CLI runs (stash_vision/indexing/builder.py), a client of this
server's own gRPC `EmbedFaces`, so the faces are embedded with exactly the pipeline that will query
the index. The build is one item: it writes a whole new version or nothing, so an interrupted build
is re-run from the start (per-performer resumption and other sources come with the index-lifecycle
work)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash_vision.indexing.builder import BuildError, build
from stash_vision.server.errors import InvalidInput
from stash_vision.server.faces.index.errors import FaceIndexError
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.media.paths import MediaPaths

from .base import ItemFailed, ItemOutcome, ItemProblem, check_keys


@dataclass(frozen=True)
class BuildFaceIndexParams:
    folder: str


@dataclass(frozen=True)
class IndexBuildTarget:
    """Where and how the server builds: its profile, index folder, its own gRPC address and the
    Voyager parameters of new indexes."""

    profile: FaceProfile
    indexes_dir: Path
    server_target: str
    api_key: str | None
    m: int
    ef_construction: int


class BuildFaceIndex:
    name = "build-face-index"
    unit = "indexes"

    def __init__(self, target: IndexBuildTarget, paths: MediaPaths) -> None:
        self.target = target
        self.paths = paths

    def parse(self, params: Mapping[str, Any]) -> BuildFaceIndexParams:
        check_keys(params, {"folder"}, self.name)
        folder = params.get("folder")
        if not isinstance(folder, str) or not folder:
            raise InvalidInput(
                "a build-face-index job needs folder: FOLDER/<performer>/<images> on the server"
            )
        resolved = self.paths.resolve_dir(folder)
        return BuildFaceIndexParams(str(resolved))

    def items(self, params: BuildFaceIndexParams) -> Iterator[str | ItemProblem]:
        yield params.folder

    async def run(self, params: BuildFaceIndexParams, item: str) -> ItemOutcome:
        target = self.target
        try:
            report = await build(
                Path(item),
                target.profile,
                target.indexes_dir,
                target.server_target,
                m=target.m,
                ef_construction=target.ef_construction,
                api_key=target.api_key,
                log=lambda _line: None,
            )
        except (BuildError, FaceIndexError) as error:
            raise ItemFailed(str(error), type(error).__name__) from None
        return ItemOutcome(
            {
                "version": report.version,
                "profile": target.profile.name,
                "performers": report.performers,
                "faces": report.faces,
                "images": report.images,
                "rejected": dict(report.rejected),
                "performers_without_faces": report.performers_without_faces,
            }
        )
