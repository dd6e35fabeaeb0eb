"""`build-face-index`: a new face-index version of the active profile from one or more sources,
built in the server with the pipeline that will query it (server/faces/enrolment/build.py).

Params: `sources`, a list of `{"kind": "folder", "path": …}`, `{"kind": "stash", "solo_images":
true, "max_images": 10, "scene_frames": 0, "max_scenes": 3}` (the connected Stash; `scene_frames`
> 0 adds that many frames of each of up to `max_scenes` scenes where the performer is alone), `{"kind": "stash-box", "name": <configured
endpoint>, "size": "600", "max_images": 10}`, `{"kind": "release", "path": <release .zip or
folder>}` (its performers and already-embedded faces, pooled when its recipe is the active
profile's: server/faces/sources/release.py) (one entry per source module in `SOURCE_KINDS`), or
the shorthand `folder`; `max_faces_per_performer` (20); `activate` (true:
the version serves as soon as it is written; false: it waits to be activated); `full` (false: a
stash-box source fetches only performers updated since the active version's watermark and
carries the rest over from it, server/faces/enrolment/incremental.py; true: fetch everything).

The build is one item: a version is written whole or not at all, so an interrupted build runs
again from the start — quickly, since every image already embedded is answered by the embedding
cache, and a stash-box source resumes from the same watermark (a failed build records none)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from stash_vision.server.connections.stash import StashConnection
from stash_vision.server.connections.stashbox import IMAGE_SIZES, StashBoxConnection
from stash_vision.server.errors import InvalidInput, StashVisionError
from stash_vision.server.faces.enrolment.build import Enroller, SourceStats, build_version
from stash_vision.server.faces.enrolment.embedding_cache import EmbeddingCache
from stash_vision.server.faces.enrolment.incremental import plan_build, write_source_states
from stash_vision.server.faces.identification import FaceIdentification
from stash_vision.server.faces.index.errors import FaceIndexError
from stash_vision.server.faces.index.versions import Lineage, active_version, write_lineage
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.faces.sources.base import FaceSource
from stash_vision.server.faces.sources.folder import FolderSource
from stash_vision.server.faces.sources.release import ReleaseSource, check_recipe
from stash_vision.server.faces.sources.stash import StashSource
from stash_vision.server.faces.sources.stashbox import StashBoxSource
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.media.paths import MediaPaths
from stash_vision.settings import Settings

from .base import (
    ItemFailed,
    ItemOutcome,
    ItemProblem,
    boolean,
    check_keys,
    current_job_id,
    number,
    report_progress,
)

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
    full: bool = False


@dataclass(frozen=True)
class SourceContext:
    """What making a source may use: path rules, the Stash and stash-box settings, image limits."""

    paths: MediaPaths
    settings: Settings
    limits: ImageLimits
    profile: FaceProfile | None = None  # the active face profile (set per build by the job kind)


def _max_images(spec: Mapping[str, Any], default: int) -> int:
    return int(number(spec, "max_images", default, minimum=1) or default)


# A source kind checks its spec at once (submit time) and returns how to make the source when the
# build runs (connections are opened then, and closed when it ends).
SourceMaker = Callable[[], FaceSource]


def _folder_source(spec: Mapping[str, Any], context: SourceContext) -> SourceMaker:
    check_keys(spec, {"kind", "path"}, "folder source")
    path = spec.get("path")
    if not isinstance(path, str) or not path:
        raise InvalidInput("a folder source needs path: FOLDER/<performer>/<images> on the server")
    root = context.paths.resolve_dir(path)
    # Symlinks in the folder are read only when they lead inside the library roots.
    return lambda: FolderSource(root, context.paths.within_roots)


def _stash_source(spec: Mapping[str, Any], context: SourceContext) -> SourceMaker:
    check_keys(spec, {"kind", "solo_images", "max_images", "scene_frames", "max_scenes"}, "stash source")
    if not context.settings.stash_url:
        raise InvalidInput(
            "a stash source needs the connection to Stash: set STASH_VISION_STASH_URL (and _API_KEY)"
        )
    solo, max_images = boolean(spec, "solo_images", True), _max_images(spec, 10)
    frames = int(number(spec, "scene_frames", 0, minimum=0) or 0)
    scenes = int(number(spec, "max_scenes", 3, minimum=1) or 3)

    def make() -> FaceSource:
        connection = StashConnection.from_settings(context.settings)
        assert connection is not None
        return StashSource(
            connection,
            context.limits,
            solo_images=solo,
            max_images=max_images,
            scene_frames=frames,
            max_scenes=scenes,
        )

    return make


def _stashbox_source(spec: Mapping[str, Any], context: SourceContext) -> SourceMaker:
    check_keys(spec, {"kind", "name", "max_images", "size"}, "stash-box source")
    endpoints = {e.name: e for e in context.settings.stashbox_endpoints}
    name = spec.get("name")
    if not isinstance(name, str) or name not in endpoints:
        known = ", ".join(sorted(endpoints)) or "none (set STASH_VISION_STASHBOX_ENDPOINTS)"
        raise InvalidInput(
            f"a stash-box source names a configured endpoint; configured: {known}, got {name!r}"
        )
    size = spec.get("size", "600")
    if size not in IMAGE_SIZES:
        raise InvalidInput(f"size must be one of {', '.join(IMAGE_SIZES)}, got {size!r}")
    endpoint, max_images = endpoints[name], _max_images(spec, 10)
    return lambda: StashBoxSource(
        StashBoxConnection(endpoint),
        size=str(size),
        max_images=max_images,
        max_bytes=context.limits.max_file_bytes,
    )


def _release_source(spec: Mapping[str, Any], context: SourceContext) -> SourceMaker:
    check_keys(spec, {"kind", "path"}, "release source")
    path, profile = spec.get("path"), context.profile
    if not isinstance(path, str) or not path:
        raise InvalidInput(
            "a release source needs path: a Stash Sense release .zip (or its folder) on the server"
        )
    assert profile is not None
    if Path(context.paths.map(path)).is_dir():
        folder = context.paths.resolve_dir(path)
        check_recipe(folder, folder, profile)  # a zip's recipe is checked when the build opens it
        return lambda: ReleaseSource(folder, profile)
    release = context.paths.resolve(path)
    return lambda: ReleaseSource(release, profile)


# kind -> how a source of that kind is made from its parameters (one entry per source module).
SOURCE_KINDS: dict[str, Callable[[Mapping[str, Any], SourceContext], SourceMaker]] = {
    "folder": _folder_source,
    "stash": _stash_source,
    "stash-box": _stashbox_source,
    "release": _release_source,
}


class BuildFaceIndex:
    name = "build-face-index"
    unit = "indexes"

    def __init__(self, faces: FaceIdentification, target: IndexBuildTarget, context: SourceContext) -> None:
        self.faces = faces
        self.target = target
        self.context = context

    def parse(self, params: Mapping[str, Any]) -> BuildFaceIndexParams:
        check_keys(params, {"sources", "folder", "max_faces_per_performer", "activate", "full"}, self.name)
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
            self._source(spec)  # checks it now, at submit time
        max_faces = number(params, "max_faces_per_performer", DEFAULT_MAX_FACES, minimum=1)
        return BuildFaceIndexParams(
            tuple(specs),
            int(max_faces or DEFAULT_MAX_FACES),
            boolean(params, "activate", True),
            boolean(params, "full", False),
        )

    def _source(self, spec: Mapping[str, Any]) -> SourceMaker:
        kind = spec.get("kind")
        make = SOURCE_KINDS.get(kind) if isinstance(kind, str) else None
        if make is None:
            raise InvalidInput(
                f"unknown source kind {kind!r}; this server builds from: {', '.join(sorted(SOURCE_KINDS))}"
            )
        # Only a release source depends on the active profile (its recipe must match).
        return make(
            spec, replace(self.context, profile=self.faces.profile) if kind == "release" else self.context
        )

    def items(self, params: BuildFaceIndexParams) -> Iterator[str | ItemProblem]:
        yield " + ".join(f"{s.get('kind')}:{s.get('path') or s.get('name') or ''}" for s in params.sources)

    async def run(self, params: BuildFaceIndexParams, item: str) -> ItemOutcome:
        target = self.target
        pipeline = self.faces.pipeline  # ProfileUnavailable when the profile's models are not served
        cache = EmbeddingCache(target.embedding_cache)
        sources = [self._source(spec)() for spec in params.sources]
        root = target.indexes_dir / self.faces.profile.name
        parent = active_version(root) or ""  # the version this build is based on
        try:
            plan = await asyncio.to_thread(
                plan_build,
                root / parent if parent else None,
                sources,
                self.faces.profile,
                params.max_faces,
                full=params.full,
            )
            enroller = Enroller(pipeline, self.faces.profile, cache, self.faces.pool, target.limits)
            result = await build_version(
                sources,
                enroller,
                target.indexes_dir,
                m=target.m,
                ef_construction=target.ef_construction,
                max_faces_per_performer=params.max_faces,
                carry_over=plan.carry_over,
                progress=_report,
            )
            states = plan.states_after(sources, result)
        except (StashVisionError, FaceIndexError) as error:
            raise ItemFailed(str(error), type(error).__name__) from None
        except OSError as error:  # a full or read-only disk while writing the version
            raise ItemFailed(
                f"cannot write the new index version under {target.indexes_dir}: {error.strerror or error}; "
                "free disk space (or fix permissions) and run the build again — the serving version is unchanged",
                "StorageUnavailable",
            ) from None
        finally:
            cache.close()
            for source in sources:
                await source.aclose()
        await asyncio.to_thread(
            write_lineage, result.folder, Lineage(parent=parent, build_job=current_job_id(), origin="build")
        )
        if states:
            await asyncio.to_thread(write_source_states, result.folder, states)
        if params.activate:
            # Loaded and checked before it serves; queries in flight finish on the old version.
            await self.faces.indexes.activate(result.version)
        return ItemOutcome(
            {
                "version": result.version,
                "profile": self.faces.profile.name,
                "activated": params.activate,
                "performers": result.performers,
                "faces": result.faces,
                "sources": {name: stats.as_dict() for name, stats in result.per_source.items()},
                "performers_without_faces": result.performers_without_faces,
                "fetched": plan.modes,  # per stash-box source: in full, or updated since a watermark
            }
        )


def _report(source: str, stats: SourceStats) -> None:
    """Per-source progress while the build runs, as the job's message."""
    report_progress(
        f"{source}: {stats.performers} performers, {stats.images} images read "
        f"({stats.cached} from the embedding cache), {sum(stats.rejected.values())} rejected"
    )
