"""Face services of the server: detect, embed, compare, and identify performers in an image, a
gallery or a scene. Transport-free: the gRPC servicer translates these results (`results`); how a
scene's faces become persons is `scene_people`; Stash ids become media in `stash_media`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace

import numpy as np

from stash_vision.server.arrays import BgrImage
from stash_vision.server.connections.stash import StashConnection
from stash_vision.server.errors import AccessDenied, InvalidInput, MediaNotFound, ProfileUnavailable, TooLarge
from stash_vision.server.faces.index.store import FaceIndex
from stash_vision.server.faces.index_holder import IndexHolder
from stash_vision.server.faces.matching import (
    Match,
    assign_unique,
    fuse_rows,
    fused_distance,
    gallery_vote,
    performer_matches,
)
from stash_vision.server.faces.pipeline import EmbeddedFace, Face, FaceGates, FacePipeline
from stash_vision.server.faces.profile import FaceProfile
from stash_vision.server.faces.results import (
    AnsweredBy,
    Comparison,
    FacePairResult,
    GalleryPerformer,
    GalleryResult,
    IdentifiedFace,
    IdentifyOptions,
    VideoProgress,
    VideoRequest,
    VideoResult,
    VideoTiming,
)
from stash_vision.server.faces.scene_frames import FrameReport, SceneFrame, evenly_spaced, read_frames
from stash_vision.server.faces.scene_people import FrameFaces, people_in_scene
from stash_vision.server.faces.stash_media import FaceImageRef, StashImageRef, StashMedia, is_image_problem
from stash_vision.server.faces.stored_faces import StoredFaces
from stash_vision.server.faces.video_source import cover_at_video_width, open_video
from stash_vision.server.image_source import ImageLoader, ImageRef
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.results.cache import ResultCache
from stash_vision.server.workers import CpuPool

DEFAULT_TOP_K = 5
MAX_TOP_K = 20
DEFAULT_VIDEO_FRAMES = 60
MAX_VIDEO_FRAMES = 600
# Frames being detected/embedded at once for one scene; the reader waits beyond this (bounded memory).
_FRAMES_IN_FLIGHT = 6


class FaceIdentification:
    def __init__(
        self,
        profile: FaceProfile,
        pipeline: FacePipeline | None,
        pipeline_problem: str,
        indexes: IndexHolder,
        loader: ImageLoader,
        paths: MediaPaths,
        pool: CpuPool,
        *,
        query_k: int,
        query_ef: int,
        max_images: int,
        results: ResultCache | None = None,
        stash: StashConnection | None = None,
        stash_gallery_max_images: int = 500,
    ) -> None:
        self.profile = profile
        self._pipeline = pipeline
        self._pipeline_problem = pipeline_problem
        self.indexes = indexes
        self.loader = loader
        self.paths = paths
        self.pool = pool
        self.query_k = query_k
        self.query_ef = query_ef
        self.max_images = max_images
        self.stored = StoredFaces(results or ResultCache(None), loader, profile)
        self.stash = StashMedia(stash)
        self.stash_gallery_max_images = stash_gallery_max_images

    # -- building blocks ---------------------------------------------------------------------------

    @property
    def pipeline(self) -> FacePipeline:
        if self._pipeline is None:
            raise ProfileUnavailable(self._pipeline_problem)
        return self._pipeline

    def gates(self, min_confidence: float | None, min_face_size: int | None) -> FaceGates:
        thresholds = self.profile.thresholds
        confidence = thresholds.min_face_confidence if min_confidence is None else min_confidence
        size = thresholds.min_face_size if min_face_size is None else min_face_size
        if not 0.0 <= confidence <= 1.0:
            raise InvalidInput(f"min_confidence must be between 0 and 1, got {confidence}")
        if size < 1:
            raise InvalidInput(f"min_face_size must be at least 1 pixel, got {size}")
        return FaceGates(confidence, size)

    def _max_distance(self, requested: float | None) -> float:
        ceiling = self.profile.thresholds.max_distance
        if requested is None:
            return ceiling
        if not 0.0 < requested <= 2.0:
            raise InvalidInput(f"max_distance must be in (0, 2], got {requested}")
        # Never looser than the profile: a match beyond its threshold is not a match.
        return min(requested, ceiling)

    @staticmethod
    def _top_k(requested: int) -> int:
        if requested < 0 or requested > MAX_TOP_K:
            raise InvalidInput(f"top_k must be between 1 and {MAX_TOP_K}, got {requested}")
        return requested or DEFAULT_TOP_K

    async def _image(self, ref: ImageRef) -> BgrImage:
        return await self.pool.run(self.loader.load, ref)

    async def _resolved(self, ref: FaceImageRef) -> ImageRef:
        """A Stash image id as its file or its downloaded bytes; other refs as they are."""
        return await self.stash.image(ref) if isinstance(ref, StashImageRef) else ref

    def answered(self, index: FaceIndex | None = None) -> AnsweredBy:
        return AnsweredBy(self.profile.name, index.version if index is not None else "")

    # -- detect / embed / compare -------------------------------------------------------------------

    async def detect(self, ref: FaceImageRef, gates: FaceGates) -> tuple[list[Face], int, int]:
        image = await self._image(await self._resolved(ref))
        faces, _ = await self.pipeline.detect(image, gates)
        return faces, image.shape[1], image.shape[0]

    async def embed(self, ref: FaceImageRef, gates: FaceGates, largest_only: bool) -> list[EmbeddedFace]:
        pipeline = self.pipeline  # a profile that cannot run says so, stored faces or not
        ref = await self._resolved(ref)
        key, kept = await self.stored.get(ref, gates, largest_only)
        if kept is not None:
            return kept
        image = await self._image(ref)
        faces, _ = await pipeline.detect(image, gates)
        if largest_only:
            faces = faces[:1]
        embedded = await pipeline.embed(image, faces)
        await self.stored.put(key, embedded)
        return embedded

    async def compare(self, first: FaceImageRef, second: FaceImageRef, gates: FaceGates) -> Comparison:
        left, right = await asyncio.gather(self.embed(first, gates, False), self.embed(second, gates, False))
        weights = self.profile.weights()
        pairs = []
        for i, a in enumerate(left):
            for j, b in enumerate(right):
                fused, per = fused_distance(a.vectors, b.vectors, weights)
                pairs.append(FacePairResult(i, j, fused, per))
        pairs.sort(key=lambda p: p.distance)
        return Comparison(
            [f.face for f in left],
            [f.face for f in right],
            pairs,
            self.profile.thresholds.max_distance,
            self.answered(),
        )

    # -- identification ----------------------------------------------------------------------------

    async def _match(
        self, index: FaceIndex, faces: Sequence[EmbeddedFace], max_distance: float, top_k: int
    ) -> list[list[Match]]:
        """Candidates per face with each performer once, then one performer per face."""
        if not faces:
            return []
        return await self.pool.run(self._match_blocking, index, faces, max_distance, top_k)

    def _match_blocking(
        self, index: FaceIndex, faces: Sequence[EmbeddedFace], max_distance: float, top_k: int
    ) -> list[list[Match]]:
        if index.face_count == 0:
            return [[] for _ in faces]
        names = self.profile.embedder_names
        queries = {name: np.stack([face.vectors[name] for face in faces]) for name in names}
        k = min(self.query_k, index.face_count)
        hits = index.query(queries, k, max(self.query_ef, k))
        weights = self.profile.weights()
        per_face: list[list[Match]] = []
        for i in range(len(faces)):
            face_hits = {name: (hits[name][0][i], hits[name][1][i]) for name in names}
            rows = fuse_rows(face_hits, weights, self.profile.missing_distance)
            owners = {
                row.row: index.performer_of_row(row.row) for row in rows if row.distance <= max_distance
            }
            per_face.append(performer_matches(rows, owners, max_distance, top_k))
        return assign_unique(per_face)

    async def identify_image(
        self, ref: FaceImageRef, options: IdentifyOptions
    ) -> tuple[list[IdentifiedFace], AnsweredBy]:
        top_k = self._top_k(options.top_k)
        max_distance = self._max_distance(options.max_distance)
        gates = self.gates(options.min_confidence, options.min_face_size)
        ref = await self._resolved(ref)  # a Stash that is not configured or down is named first
        index = await self.indexes.get()
        embedded = await self.embed(ref, gates, False)
        matches = await self._match(index, embedded, max_distance, top_k)
        faces = [IdentifiedFace(face.face, found) for face, found in zip(embedded, matches, strict=True)]
        return faces, self.answered(index)

    async def identify_gallery(self, refs: Sequence[FaceImageRef], options: IdentifyOptions) -> GalleryResult:
        if not refs:
            raise InvalidInput("a gallery needs at least one image")
        if len(refs) > self.max_images:
            raise TooLarge(
                f"{len(refs)} images in one gallery request; the limit is {self.max_images} "
                "(STASH_VISION_MAX_IMAGES_PER_REQUEST)"
            )
        return await self._gallery(refs, options)

    async def identify_stash_gallery(self, gallery_id: str, options: IdentifyOptions) -> GalleryResult:
        """A gallery of the user's Stash: every image listed, at most stash_gallery_max_images of
        them (chosen evenly) identified; `total_images` counts them all."""
        self._top_k(options.top_k)  # bad options are reported before Stash is asked
        gallery = await self.stash.gallery(gallery_id, self.stash_gallery_max_images)
        if not gallery.chosen:
            index = await self.indexes.get()
            return GalleryResult(0, 0, 0, [], [], self.answered(index))
        refs = [StashImageRef(image.id, image) for image in gallery.chosen]
        result = await self._gallery(refs, options)
        return replace(result, total_images=gallery.total, image_ids=[image.id for image in gallery.chosen])

    async def _gallery(self, refs: Sequence[FaceImageRef], options: IdentifyOptions) -> GalleryResult:
        top_k = self._top_k(options.top_k)
        max_distance = self._max_distance(options.max_distance)
        gates = self.gates(options.min_confidence, options.min_face_size)
        index = await self.indexes.get()
        slots = asyncio.Semaphore(_FRAMES_IN_FLIGHT)

        async def one(ref: FaceImageRef) -> list[list[Match]] | str:
            async with slots:
                try:
                    embedded = await self.embed(ref, gates, False)
                    return await self._match(index, embedded, max_distance, top_k)
                except (InvalidInput, TooLarge, MediaNotFound, AccessDenied) as error:
                    # A bad image is reported with its index; the rest of the gallery still counts.
                    return str(error)
                except Exception as error:
                    if is_image_problem(error):
                        return str(error)
                    raise  # Stash or Triton down: the whole answer would be wrong

        tasks = [asyncio.ensure_future(one(ref)) for ref in refs]
        try:
            results = await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            raise
        per_image: list[list[list[Match]]] = []
        errors: list[tuple[int, str]] = []
        faces_detected = 0
        for i, result in enumerate(results):
            if isinstance(result, str):
                errors.append((i, result))
                per_image.append([])
            else:
                per_image.append(result)
                faces_detected += len(result)
        votes, with_faces = gallery_vote(per_image, self.profile.thresholds.gallery_min_vote_share)
        performers = [
            GalleryPerformer(v.best, v.average_distance, sorted(v.images), len(v.images) / max(with_faces, 1))
            for v in votes
        ]
        return GalleryResult(
            len(refs),
            len(refs) - len(errors),
            faces_detected,
            performers,
            errors,
            self.answered(index),
            images_selected=len(refs),
        )

    async def identify_video(self, request: VideoRequest) -> AsyncIterator[VideoProgress | VideoResult]:
        started = time.perf_counter()
        timing = VideoTiming()
        count = request.num_frames or DEFAULT_VIDEO_FRAMES
        if not 1 <= count <= MAX_VIDEO_FRAMES:
            raise InvalidInput(
                f"num_frames must be between 1 and {MAX_VIDEO_FRAMES}, got {request.num_frames}"
            )
        start = 0.05 if request.start_fraction is None else request.start_fraction
        end = 0.95 if request.end_fraction is None else request.end_fraction
        if not 0.0 <= start <= end <= 1.0:
            raise InvalidInput(
                f"start_fraction and end_fraction must satisfy 0 <= start <= end <= 1, got {start} and {end}"
            )
        cluster_distance = request.cluster_distance or self.profile.thresholds.cluster_distance
        top_k = self._top_k(request.options.top_k)
        max_distance = self._max_distance(request.options.max_distance)
        gates = self.gates(request.options.min_confidence, request.options.min_face_size)
        video = await open_video(request, self.paths, self.pool, self.stash, self._resolved)
        index = await self.indexes.get()
        pipeline = self.pipeline
        info = video.info
        times = evenly_spaced(info.duration_s, count, start, end)
        report = FrameReport(requested=len(times))

        frames: list[FrameFaces] = []
        counts = {"detected": 0, "kept": 0}

        async def analyse(frame: SceneFrame) -> None:
            t0 = time.perf_counter()
            faces, found = await pipeline.detect(frame.image, gates)
            t1 = time.perf_counter()
            embedded = await pipeline.embed(frame.image, faces)
            t2 = time.perf_counter()
            matches = await self._match(index, embedded, max_distance, top_k)
            timing.detection_ms += (t1 - t0) * 1000
            timing.embedding_ms += (t2 - t1) * 1000
            timing.matching_ms += (time.perf_counter() - t2) * 1000
            if frame.index >= 0:  # Stash Sense counts the faces of video frames only, not the cover's
                counts["detected"] += found
                counts["kept"] += len(faces)
            frames.append(FrameFaces(frame.index, frame.time_s, embedded, matches))

        if video.cover is not None:
            cover = await self.pool.run(cover_at_video_width, await self._image(video.cover), info.width)
            await analyse(SceneFrame(-1, -1.0, cover))

        iterator = read_frames(video.source, info, times, report, options=video.options)
        slots = asyncio.Semaphore(_FRAMES_IN_FLIGHT)
        tasks: set[asyncio.Task[None]] = set()
        failures: list[BaseException] = []
        reading: asyncio.Future[SceneFrame | None] | None = None
        done = 0
        last_progress = 0.0
        try:
            while True:
                await slots.acquire()
                if failures:
                    # A frame failed (Triton down, a model error): stop decoding now, not at the end.
                    raise failures[0]
                t0 = time.perf_counter()
                reading = asyncio.ensure_future(self.pool.run(next, iterator, None))
                # Shielded: if the caller goes away, the decode in the pool thread runs to its end
                # (a thread cannot be interrupted) and `finally` waits for it before closing.
                frame = await asyncio.shield(reading)
                timing.decode_ms += (time.perf_counter() - t0) * 1000
                if frame is None:
                    slots.release()
                    break

                async def run(frame: SceneFrame = frame) -> None:
                    try:
                        await analyse(frame)
                    except Exception as error:
                        failures.append(error)
                    finally:
                        slots.release()

                task = asyncio.create_task(run())
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                done += 1
                now = time.perf_counter()
                if now - last_progress >= 0.5:
                    last_progress = now
                    yield VideoProgress(done, len(times), now - started)
            if tasks:
                await asyncio.gather(*tasks)
            if failures:
                raise failures[0]
        finally:
            for task in tasks:
                task.cancel()
            # A cancelled caller (client gone) may leave a decode running in a pool thread; the
            # generator can only be closed once that next() has returned.
            if reading is not None and not reading.done():
                await asyncio.wait({reading})
            iterator.close()
        report.errors = [video.redact(error) for error in report.errors]
        yield VideoProgress(report.decoded, len(times), time.perf_counter() - started)
        if report.decoded == 0 and video.cover is None:
            if video.streamed:
                raise self.stash.stream_failed(video.label, report.errors)
            raise InvalidInput(
                f"no frame of {video.label} could be decoded"
                + (f" ({report.errors[0]})" if report.errors else "")
            )

        t0 = time.perf_counter()
        persons = await self.pool.run(people_in_scene, frames, cluster_distance, self.profile.weights())
        timing.matching_ms += (time.perf_counter() - t0) * 1000
        timing.total_ms = (time.perf_counter() - started) * 1000
        partial_reason = ""
        if report.partial:
            partial_reason = f"{report.served} of {report.requested} planned frames could be decoded" + (
                f": {report.errors[0]}" if report.errors else " (the stream ends early)"
            )
        yield VideoResult(
            frames_requested=len(times),
            frames_analyzed=report.decoded,
            faces_detected=counts["detected"],
            faces_after_filter=counts["kept"],
            persons=persons,
            duration_s=info.duration_s,
            partial=report.partial,
            partial_reason=partial_reason,
            timing=timing,
            answered_by=self.answered(index),
        )
