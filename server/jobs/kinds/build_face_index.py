"""`build-face-index`: a new face-index version of the active profile from one or more sources,
built in the server with the pipeline that will query it (server/faces/enrolment/build.py).

Params: `sources`, a list of `{"kind": "folder", "path": …}` (the other kinds plug into
`SOURCE_KINDS`), or the shorthand `folder`; `max_faces_per_performer` (20); `activate` (true:
the version serves as soon as it is written; false: it waits to be activated).

The build is one item: a version is written whole or not at all, so an interrupted build runs
again from the start — quickly, since every image already embedded is answered by the embedding
cache."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stash_vision.server.errors import InvalidInput, StashVisionError
from stash_vision.server.faces.enrolment.build import Enroller, build_version
from stash_vision.server.faces.enrolment.embedding_cache import EmbeddingCache
from stash_vision.server.faces.identification import FaceIdentification
from stash_vision.server.faces.index.writer import publish
from stash_vision.server.faces.sources.base import FaceSource
from stash_vision.server.faces.sources.folder import FolderSource
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.media.paths import MediaPaths

from .base import ItemFailed, ItemOutcome, ItemProblem, boolean, check_keys, number

DEFAULT_MAX_FACES = 20


@dataclass(frozen=True)
class IndexBuildTarget:
    """Where and how the server builds: the index folder, the embedding cache and the Voyager
    parameters of new indexes."""

    indexes_dir: Path
    embedding_cache: Path
    m: int
    ef_construction: int
    limits: ImageLimits


@dataclass(frozen=True)
class BuildFaceIndexParams:
    sources: tuple[Mapping[str, Any], ...]
    max_faces: int
    activate: bool


def _folder_source(spec: Mapping[str, Any], paths: MediaPaths) -> FaceSource:
    check_keys(spec, {"kind", "path"}, "folder source")
    path = spec.get("path")
    if not isinstance(path, str) or not path:
        raise InvalidInput("a folder source needs path: FOLDER/<performer>/<images> on the server")
    return FolderSource(paths.resolve_dir(path))


# kind -> how a source of that kind is made from its parameters (one entry per source module).
SOURCE_KINDS: dict[str, Callable[[Mapping[str, Any], MediaPaths], FaceSource]] = {"folder": _folder_source}


class BuildFaceIndex:
    name = "build-face-index"
    unit = "indexes"

    def __init__(self, faces: FaceIdentification, target: IndexBuildTarget, paths: MediaPaths) -> None:
        self.faces = faces
        self.target = target
        self.paths = paths

    def parse(self, params: Mapping[str, Any]) -> BuildFaceIndexParams:
        check_keys(params, {"sources", "folder", "max_faces_per_performer", "activate"}, self.name)
        specs: list[Mapping[str, Any]] = []
        if "folder" in params:
            specs.append({"kind": "folder", "path": params["folder"]})
        raw = params.get("sources", [])
        if not isinstance(raw, list) or not all(isinstance(s, Mapping) for s in raw):
            raise InvalidInput(
                'sources must be a list of objects, e.g. [{"kind": "folder", "path": "/photos"}]'
            )
        specs.extend(raw)
        if not specs:
            raise InvalidInput("a build-face-index job needs sources (or folder)")
        for spec in specs:
            self._source(spec)  # validates it now, at submit time
        max_faces = number(params, "max_faces_per_performer", DEFAULT_MAX_FACES, minimum=1)
        return BuildFaceIndexParams(
            tuple(specs), int(max_faces or DEFAULT_MAX_FACES), boolean(params, "activate", True)
        )

    def _source(self, spec: Mapping[str, Any]) -> FaceSource:
        kind = spec.get("kind")
        make = SOURCE_KINDS.get(kind) if isinstance(kind, str) else None
        if make is None:
            raise InvalidInput(
                f"unknown source kind {kind!r}; this server builds from: {', '.join(sorted(SOURCE_KINDS))}"
            )
        return make(spec, self.paths)

    def items(self, params: BuildFaceIndexParams) -> Iterator[str | ItemProblem]:
        yield " + ".join(f"{s.get('kind')}:{s.get('path') or s.get('name') or ''}" for s in params.sources)

    async def run(self, params: BuildFaceIndexParams, item: str) -> ItemOutcome:
        target = self.target
        pipeline = self.faces.pipeline  # ProfileUnavailable when the profile's models are not served
        cache = EmbeddingCache(target.embedding_cache)
        try:
            enroller = Enroller(pipeline, self.faces.profile, cache, self.faces.pool, target.limits)
            result = await build_version(
                [self._source(spec) for spec in params.sources],
                enroller,
                target.indexes_dir,
                m=target.m,
                ef_construction=target.ef_construction,
                max_faces_per_performer=params.max_faces,
            )
        except StashVisionError as error:
            raise ItemFailed(str(error), type(error).__name__) from None
        finally:
            cache.close()
        if params.activate:
            publish(target.indexes_dir / self.faces.profile.name, result.folder)
        return ItemOutcome(
            {
                "version": result.version,
                "profile": self.faces.profile.name,
                "activated": params.activate,
                "performers": result.performers,
                "faces": result.faces,
                "sources": {name: stats.as_dict() for name, stats in result.per_source.items()},
                "performers_without_faces": result.performers_without_faces,
            }
        )
