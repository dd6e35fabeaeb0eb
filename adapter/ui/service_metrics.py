"""The service's own Prometheus metrics as the Overview reads them: the gRPC server's counters
(images decoded, sampled video frames) and Triton's per-model counters (inferences, executions),
sampled by the adapter every minute and kept for an hour, so that "throughput of the last hour" is
a difference of the service's own counters, not something the dashboard counted itself.

Sampled frames have no counter of their own: the server observes its `preprocess` stage once per
image and once per sampled video frame, and counts images in `images_decoded_total`, so sampled
frames are the difference of the two."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field

import httpx
from prometheus_client.parser import text_string_to_metric_families

from stash_vision.settings import Settings

log = logging.getLogger("stash_vision.adapter.ui")

WINDOW_S = 3600.0
SAMPLE_EVERY_S = 60.0
_SCRAPE_TIMEOUT_S = 2.0


@dataclass(frozen=True)
class Sample:
    at: float
    images: float = 0.0
    frames: float = 0.0
    inferences: dict[str, float] = field(default_factory=dict)  # Triton nv_inference_count per model
    executions: dict[str, float] = field(default_factory=dict)  # Triton nv_inference_exec_count
    server_started: float | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rates:
    since: float  # start of the window the rates cover (an hour ago, or when counting began)
    images_per_s: float
    frames_per_s: float
    inferences_per_s: dict[str, float]


def _host(target: str) -> str:
    return target.rsplit(":", 1)[0] if ":" in target else target


def metrics_urls(settings: Settings) -> tuple[str, str]:
    """The server's and Triton's metrics endpoints, on the hosts the adapter already calls."""
    server = f"http://{_host(settings.server_target)}:{settings.server_metrics_port}/metrics"
    triton = f"http://{_host(settings.triton_target)}:{settings.triton_metrics_port}/metrics"
    return server, triton


def _values(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    found: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = float(sample.value)
    return found


def server_counts(text: str) -> tuple[float, float, float | None]:
    """(images decoded, sampled video frames, process start time) from the server's metrics."""
    values = _values(text)
    images = values.get(("stash_vision_images_decoded_total", ()), 0.0)
    preprocessed = values.get(("stash_vision_stage_seconds_count", (("stage", "preprocess"),)), 0.0)
    started = values.get(("process_start_time_seconds", ()))
    return images, max(0.0, preprocessed - images), started


def triton_counts(text: str) -> tuple[dict[str, float], dict[str, float]]:
    """Per model: successful inferences (batch items) and executions (batches Triton ran)."""
    inferences: dict[str, float] = {}
    executions: dict[str, float] = {}
    for (name, labels), value in _values(text).items():
        model = dict(labels).get("model")
        if model is None:
            continue
        name = name.removesuffix("_total")  # the parser names a counter's samples <name>_total
        if name == "nv_inference_count":
            inferences[model] = inferences.get(model, 0.0) + value
        elif name == "nv_inference_exec_count":
            executions[model] = executions.get(model, 0.0) + value
    return inferences, executions


class ServiceMetrics:
    """Scrapes both endpoints; keeps an hour of samples; started lazily by the first page view."""

    def __init__(self, settings: Settings) -> None:
        self.server_url, self.triton_url = metrics_urls(settings)
        self.samples: deque[Sample] = deque()
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()

    async def scrape(self) -> Sample:
        problems: list[str] = []
        images = frames = 0.0
        started: float | None = None
        inferences: dict[str, float] = {}
        executions: dict[str, float] = {}
        async with httpx.AsyncClient(timeout=_SCRAPE_TIMEOUT_S) as client:
            server, triton = await asyncio.gather(
                client.get(self.server_url), client.get(self.triton_url), return_exceptions=True
            )
        if isinstance(server, httpx.Response) and server.status_code == 200:
            images, frames, started = server_counts(server.text)
        else:
            problems.append(f"the server's metrics at {self.server_url} could not be read")
        if isinstance(triton, httpx.Response) and triton.status_code == 200:
            inferences, executions = triton_counts(triton.text)
        else:
            problems.append(f"Triton's metrics at {self.triton_url} could not be read")
        return Sample(time.time(), images, frames, inferences, executions, started, tuple(problems))

    async def latest(self) -> Sample:
        """A fresh sample (kept with the others), starting the minute sampler on first use."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample_forever())
        async with self._lock:
            sample = await self.scrape()
            self._keep(sample)
        return sample

    def _keep(self, sample: Sample) -> None:
        if sample.problems:
            return
        if self.samples and _went_down(self.samples[-1], sample):
            self.samples.clear()  # the server or Triton restarted: its counters began again at 0
        self.samples.append(sample)
        while self.samples and sample.at - self.samples[0].at > WINDOW_S:
            self.samples.popleft()

    async def _sample_forever(self) -> None:
        while True:
            await asyncio.sleep(SAMPLE_EVERY_S)
            try:
                async with self._lock:
                    self._keep(await self.scrape())
            except Exception:  # the sampler outlives one bad scrape; the page shows scrape problems
                log.exception("sampling the service's metrics failed")

    def rates(self) -> Rates | None:
        """Rates between the oldest kept sample and the newest. With a single sample, a server
        started within the hour gives the baseline: its counters were 0 at its start."""
        if not self.samples:
            return None
        newest = self.samples[-1]
        oldest = self.samples[0]
        if len(self.samples) == 1 or oldest.at == newest.at:
            started = newest.server_started
            if started is None or newest.at - started > WINDOW_S or newest.at <= started:
                return None
            oldest = Sample(started)
        span = newest.at - oldest.at
        return Rates(
            since=oldest.at,
            images_per_s=(newest.images - oldest.images) / span,
            frames_per_s=(newest.frames - oldest.frames) / span,
            inferences_per_s={
                model: (count - oldest.inferences.get(model, 0.0)) / span
                for model, count in newest.inferences.items()
            },
        )


def _went_down(before: Sample, after: Sample) -> bool:
    if after.images < before.images or after.frames < before.frames:
        return True
    return any(after.inferences.get(m, 0.0) < v for m, v in before.inferences.items())


def executed_batch(sample: Sample, model: str) -> float | None:
    """The mean batch Triton actually ran for a model: inferences per execution since it started."""
    runs = sample.executions.get(model, 0.0)
    return sample.inferences.get(model, 0.0) / runs if runs else None


def service_metrics(state: object, settings: Settings) -> ServiceMetrics:
    """The app's one sampler (made on first use)."""
    metrics: ServiceMetrics | None = getattr(state, "ui_service_metrics", None)
    if metrics is None:
        metrics = ServiceMetrics(settings)
        state.ui_service_metrics = metrics  # type: ignore[attr-defined]
    return metrics
