"""Tags a batch of images with every active tagger.

Each image is decoded once and preprocessed once per distinct input contract; each tagger's
model gets its own Triton request, so Triton's dynamic batcher combines the images of ALL
concurrent requests. In-flight images are bounded per request (fairness: a 320-image request
cannot hold every slot) and globally (memory), and waiters are served first come, first served.
Media problems become that image's error; a Triton outage fails the whole request, so the client
retries instead of marking images as errored."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from stash_vision.catalog.entries import InputContract
from stash_vision.server.arrays import FloatTensor
from stash_vision.server.errors import InvalidInput, StashVisionError, TooLarge
from stash_vision.server.image_source import ImageLoader, ImagePath, ImageRef
from stash_vision.server.metrics import IMAGES_DECODED, STAGE_SECONDS
from stash_vision.server.preprocessing import preprocess
from stash_vision.server.priority import PrioritySemaphore
from stash_vision.server.results.cache import ResultCache
from stash_vision.server.tagging.taggers.base import Scores, Tagger
from stash_vision.server.triton_session import InferenceSession
from stash_vision.server.workers import CpuPool

_STORED_KIND = "image-scores"


@dataclass(frozen=True)
class TagHit:
    name: str
    confidence: float


@dataclass(frozen=True)
class ImageOutcome:
    categories: dict[str, list[TagHit]] = field(default_factory=dict)
    error: str | None = None
    error_kind: str = ""  # the error's class name (MediaNotFound, TooLarge, ...), for job summaries


@dataclass(frozen=True)
class TaggingOptions:
    # Strict cut (confidence > threshold); None uses each tagger's own default.
    threshold: float | None = None
    return_confidence: bool = False
    # Model tag names (v3 routes) instead of the CSV's RenamedTag (legacy routes).
    original_names: bool = False
    skip_categories: frozenset[str] = frozenset()


@dataclass
class TaggingOutcome:
    results: list[ImageOutcome]
    taggers: list[Tagger]
    preprocess_seconds: float = 0.0
    inference_seconds: float = 0.0
    total_seconds: float = 0.0


class ImageTagging:
    def __init__(
        self,
        taggers: list[Tagger],
        session: InferenceSession,
        loader: ImageLoader,
        pool: CpuPool,
        *,
        use_category_image_thresholds: bool = True,
        max_images: int = 1000,
        per_request_in_flight: int = 8,
        # Measured (docs/benchmarks-tagging.md): 32 images in flight let Triton form batches of 16
        # at 512x512 and tripled peak memory for no throughput; 8 keeps 4x320 under 1.3 GiB.
        global_in_flight: int = 8,
        results: ResultCache | None = None,
    ) -> None:
        self.taggers = taggers
        self.session = session
        self.loader = loader
        self.pool = pool
        self.use_category_image_thresholds = use_category_image_thresholds
        self.max_images = max_images
        self.per_request_in_flight = per_request_in_flight
        # Interactive requests are admitted ahead of job items (server/priority.py).
        self._global_slots = PrioritySemaphore(global_in_flight)
        self.results = results or ResultCache(None)

    def active(self, skip: frozenset[str]) -> list[Tagger]:
        return [t for t in self.taggers if any(c not in skip for c in t.categories)]

    async def tag(self, refs: Sequence[ImageRef], options: TaggingOptions) -> TaggingOutcome:
        if not refs:
            raise InvalidInput("no images given")
        if len(refs) > self.max_images:
            raise TooLarge(
                f"{len(refs)} images in one request, above the limit of {self.max_images} "
                "(STASH_VISION_MAX_IMAGES_PER_REQUEST); split the batch"
            )
        taggers = self.active(options.skip_categories)
        if not taggers:
            raise InvalidInput("no tagger is active (none configured, or every category skipped)")
        outcome = TaggingOutcome(results=[], taggers=taggers)
        request_slots = asyncio.Semaphore(self.per_request_in_flight)
        started = time.perf_counter()

        kept = await self._stored_scores(refs, taggers)

        async def one(ref: ImageRef, stored: list[tuple[str, Any]]) -> ImageOutcome:
            missing = [t for t, (_, scores) in zip(taggers, stored, strict=True) if scores is None]
            fresh: list[Scores] = []
            if missing:
                needed = list(dict.fromkeys(t.entry.input for t in missing))
                async with request_slots, self._global_slots:
                    prepared = time.perf_counter()
                    try:
                        tensors = await self.pool.run(self._prepare, ref, needed)
                    except StashVisionError as error:
                        return ImageOutcome(error=str(error), error_kind=type(error).__name__)
                    finally:
                        outcome.preprocess_seconds += time.perf_counter() - prepared
                    inferring = time.perf_counter()
                    try:
                        fresh = await asyncio.gather(*(self._run(t, tensors) for t in missing))
                    finally:
                        outcome.inference_seconds += time.perf_counter() - inferring
            computed = iter(fresh)
            scores: list[Scores] = []
            for key, kept in stored:
                if kept is not None:
                    scores.append(kept["scores"])
                else:
                    scores.append(next(computed))
                    await self.results.put(key, _STORED_KIND, {"scores": scores[-1]})
            return ImageOutcome(categories=self._select(taggers, scores, options))

        # A TaskGroup cancels the other images as soon as one raises (Triton down): no orphan work.
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(one(ref, stored)) for ref, stored in zip(refs, kept, strict=True)]
        outcome.results = [task.result() for task in tasks]
        outcome.total_seconds = time.perf_counter() - started
        return outcome

    async def _stored_scores(
        self, refs: Sequence[ImageRef], taggers: list[Tagger]
    ) -> list[list[tuple[str, Any]]]:
        """Per image, per tagger: the result-store key of the image's scores and the kept scores, or
        None. Scores are kept before any threshold, so every request's options apply to them. One
        worker-thread hop and one store transaction for the whole request."""
        if not self.results.enabled:
            return [[("", None)] * len(taggers) for _ in refs]
        return await asyncio.to_thread(self._lookup_scores, refs, taggers)

    def _lookup_scores(self, refs: Sequence[ImageRef], taggers: list[Tagger]) -> list[list[tuple[str, Any]]]:
        files: list[tuple[Path, list[dict[str, Any]]] | None] = []
        for ref in refs:
            try:
                location = self.loader.paths.locate(ref.path) if isinstance(ref, ImagePath) else None
            except StashVisionError:
                location = None  # decoding reports the problem
            if location is None:
                files.append(None)
                continue
            producers = [{"member": location.member, "tagger": t.identity} for t in taggers]
            files.append((location.path, producers))
        return [
            row or [("", None)] * len(taggers) for row in self.results.lookup_blocking(_STORED_KIND, files)
        ]

    def _prepare(self, ref: ImageRef, contracts: list[InputContract]) -> dict[InputContract, FloatTensor]:
        started = time.perf_counter()
        image = self.loader.load(ref)
        decoded = time.perf_counter()
        tensors = {contract: preprocess(image, contract)[0] for contract in contracts}
        STAGE_SECONDS.labels("decode").observe(decoded - started)
        STAGE_SECONDS.labels("preprocess").observe(time.perf_counter() - decoded)
        IMAGES_DECODED.inc()
        return tensors

    async def _run(self, tagger: Tagger, tensors: dict[InputContract, FloatTensor]) -> Scores:
        started = time.perf_counter()
        tensor = tensors[tagger.entry.input][np.newaxis]
        outputs = await self.session.infer(tagger.model, {tagger.entry.input.tensor: tensor}, tagger.outputs)
        STAGE_SECONDS.labels("triton").observe(time.perf_counter() - started)
        return tagger.scores(outputs)

    def _select(
        self, taggers: list[Tagger], scores: list[Scores], options: TaggingOptions
    ) -> dict[str, list[TagHit]]:
        """The contract's rules (aitagger-contract.md §1.2, §3.5): categories without a CSV are
        dropped, configured ones appear even when empty; only tags with a CSV row; strict
        `confidence > threshold`; with return_confidence, also the tag's own TagThreshold."""
        selected: dict[str, list[TagHit]] = {}
        for tagger, per_category in zip(taggers, scores, strict=True):
            cut = options.threshold if options.threshold is not None else tagger.spec.threshold
            for category, tags in per_category.items():
                settings = tagger.category_config.get(category)
                if settings is None or category in options.skip_categories:
                    continue
                hits = selected.setdefault(category, [])
                for tag, confidence in tags.items():
                    tag_settings = settings.get(tag)
                    if tag_settings is None or not confidence > cut:
                        continue
                    if (
                        options.return_confidence
                        and self.use_category_image_thresholds
                        and confidence < tag_settings.tag_threshold
                    ):
                        continue
                    name = tag if options.original_names else tag_settings.renamed_tag
                    hits.append(TagHit(name, round(confidence, 2)))
        return selected
