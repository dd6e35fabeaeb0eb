"""Opens the job system of a server process: the job database, the result store, the runner with
every job kind. A job database that cannot be opened (full disk, read-only, locked, from a newer
release) costs the jobs only: the server still answers interactive calls, and every job call says
why it cannot run."""

from __future__ import annotations

import builtins
import logging
from collections.abc import AsyncIterator, Sequence
from typing import Any

from stash_vision.server.errors import StashVisionError, StorageUnavailable
from stash_vision.server.faces.identification import FaceIdentification
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.results.cache import ResultCache
from stash_vision.server.results.store import ResultStore
from stash_vision.server.tagging.image_flow import ImageTagging
from stash_vision.server.tagging.video_flow import VideoTagging
from stash_vision.settings import Settings

from .api import JobPage, Jobs, JobUpdate, ResultPage
from .kinds.base import JobKind
from .kinds.build_face_index import BuildFaceIndex, IndexBuildTarget, SourceContext
from .kinds.identify_library import IdentifyLibrary
from .kinds.stash_ai_identify import IdentifyStashScene, IdentifyUploadedGallery, IdentifyUploadedImage
from .kinds.stash_ai_uploads import uploads_in
from .kinds.sync_to_stash import SyncToStash
from .kinds.tag_library import TagLibrary
from .kinds.undo_sync_to_stash import UndoSyncToStash
from .model import Job, JobState
from .runner import JobRunner
from .store import JobStore

log = logging.getLogger("stash_vision.server.jobs")


def open_result_cache(settings: Settings) -> ResultCache:
    """The flows' result store; unusable storage leaves it off (a cache is never required)."""
    if settings.result_store_max_bytes <= 0:
        return ResultCache(None)
    try:
        return ResultCache(ResultStore(settings.jobs_db, max_bytes=settings.result_store_max_bytes))
    except StashVisionError as error:
        log.warning("result store off: %s", error)
        return ResultCache(None)


def job_kinds(
    settings: Settings,
    images: ImageTagging,
    videos: VideoTagging,
    faces: FaceIdentification,
    paths: MediaPaths,
) -> list[JobKind[Any]]:
    target = IndexBuildTarget(
        indexes_dir=settings.face_indexes_dir,
        embedding_cache=settings.data_dir / "embedding_cache" / "embeddings.db",
        m=settings.face_index_m,
        ef_construction=settings.face_index_ef_construction,
        limits=ImageLimits(settings.max_image_pixels, settings.max_image_file_bytes),
    )
    return [
        TagLibrary(images, videos, paths),
        IdentifyLibrary(faces, paths),
        BuildFaceIndex(faces, target, SourceContext(paths, settings, target.limits)),
        # Results written into the connected Stash as the AITagger plugin writes them, and their undo.
        SyncToStash(images, videos, faces, settings),
        UndoSyncToStash(settings),
        # The AI Overhaul plugin's queue (adapter/routes/stash_ai): its uploaded images, Stash scenes.
        IdentifyUploadedImage(faces, uploads_in(settings.data_dir)),
        IdentifyUploadedGallery(faces, uploads_in(settings.data_dir)),
        IdentifyStashScene(faces),
    ]


async def open_jobs(settings: Settings, kinds: list[JobKind[Any]]) -> Jobs:
    try:
        store = JobStore(settings.jobs_db)
    except StorageUnavailable as error:
        log.error("jobs unavailable: %s", error)
        return UnavailableJobs(str(error), [kind.name for kind in kinds])
    runner = JobRunner(
        store,
        kinds,
        settings.data_dir / "jobs.lock",
        max_running_jobs=settings.jobs_running,
        items_in_flight=settings.job_items_in_flight,
        auto_resume=settings.jobs_auto_resume,
    )
    try:
        await runner.start()
    except StorageUnavailable as error:
        # Locked by another process, or a full disk, while recovering the jobs of the last run:
        # the server still starts (interactive calls work) and every job call says why.
        log.error("jobs unavailable: %s", error)
        await runner.stop()
        store.close()
        return UnavailableJobs(str(error), [kind.name for kind in kinds])
    return runner


async def close_jobs(jobs: Jobs) -> None:
    if isinstance(jobs, JobRunner):
        await jobs.stop()
        jobs.store.close()


class UnavailableJobs:
    """The `Jobs` of a server whose job database cannot be opened: every call says why."""

    def __init__(self, reason: str, kinds: Sequence[str]) -> None:
        self.reason = reason
        self._kinds = sorted(kinds)

    def _refuse(self) -> StorageUnavailable:
        return StorageUnavailable(f"jobs are unavailable: {self.reason}")

    async def submit(self, kind: str, params: dict[str, Any]) -> Job:
        raise self._refuse()

    async def get(self, job_id: str) -> Job:
        raise self._refuse()

    async def list(
        self,
        *,
        states: Sequence[JobState] = (),
        kinds: Sequence[str] = (),
        page_size: int = 50,
        page_token: str = "",
    ) -> JobPage:
        raise self._refuse()

    async def cancel(self, job_id: str) -> Job:
        raise self._refuse()

    async def pause(self, job_id: str) -> Job:
        raise self._refuse()

    async def resume(self, job_id: str) -> Job:
        raise self._refuse()

    async def watch(self, job_id: str) -> AsyncIterator[JobUpdate]:
        raise self._refuse()
        yield  # an async generator, like the runner's

    async def results(self, job_id: str, *, page_size: int = 100, page_token: str = "") -> ResultPage:
        raise self._refuse()

    def kinds(self) -> builtins.list[str]:
        return self._kinds
