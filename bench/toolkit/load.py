"""A mixed population of HTTP clients against the adapter, as the plugins and a browser use it, for a
fixed time with bounded concurrency (one thread per client, each sends its next request when the
last one answered): what every request saw, per route, and how each answer is classed.

The population (`POPULATION`): AITagger image batches of 320 paths, AITagger video calls, face
identification of a photo and of a scene, `tag-library` job submissions (alternately cancelled and
left to finish) and dashboard page loads.

How an answer is classed (`Outcome`), which is what a client of stash-vision may rely on:

- `ok`: 2xx, or the 409 of a cancel that came after the job ended (`EXPECTED`);
- `retryable`: the service is (re)starting and said so: 503 with a JSON `detail`, or the
  adapter's port refused the connection, or the adapter died with the request in flight (the
  connection closed without an answer). Every plugin treats these as "try again later";
- `error`: anything else: another status, a 503 without a detail, or no answer within the
  client's timeout (a hang)."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.toolkit.http import httpx

IMAGES = ["baboon.jpg", "basketball1.png", "building.jpg", "fruits.jpg", "messi5.jpg", "squirrel_cls.jpg"]
AITAGGER_BATCH = 320  # the AITagger plugin's batch of image paths per request
VIDEOS = ["box.mp4", "cup.mp4"]
FACES = ["img1.jpg", "img5.jpg", "img13.jpg", "img20.jpg"]
SCENE = "Megamind.avi"
REQUEST_TIMEOUT_S = 300.0  # the plugins allow an hour; past this a request counts as a hang
OK, RETRYABLE, ERROR = "ok", "retryable", "error"
# Answers that are right although not 2xx: a small job may end before its cancel arrives.
EXPECTED = {"POST /jobs/{id}/cancel": {409}}


@dataclass(frozen=True)
class Outcome:
    route: str
    started_s: float  # since the run began
    latency_s: float
    kind: str  # OK, RETRYABLE or ERROR
    detail: str = ""


def classify(route: str, response: httpx.Response) -> tuple[str, str]:
    """(kind, detail) of an answer to `route`; see the module's docstring."""
    if response.is_success or response.status_code in EXPECTED.get(route, ()):
        return OK, ""
    detail = ""
    with contextlib.suppress(ValueError, AttributeError):
        detail = str(response.json().get("detail") or "")
    if response.status_code == 503 and detail:
        return RETRYABLE, f"503 {detail[:200]}"
    return ERROR, f"{response.status_code} {(detail or response.text)[:300]}"


def classify_failure(error: httpx.HTTPError) -> tuple[str, str]:
    """(kind, detail) of a request that got no answer."""
    if isinstance(error, httpx.TimeoutException) and not isinstance(error, httpx.ConnectTimeout):
        return ERROR, f"no answer within {REQUEST_TIMEOUT_S:.0f} s: {type(error).__name__}"
    if isinstance(error, httpx.ConnectError | httpx.RemoteProtocolError | httpx.ReadError):
        return RETRYABLE, f"{type(error).__name__}: {error}"
    return ERROR, f"{type(error).__name__}: {error}"


@dataclass
class Library:
    """The files the clients name: shared media, and a small library root per job."""

    shared: Path
    work: Path
    _jobs: itertools.count[int] = field(default_factory=itertools.count)

    def image(self, name: str) -> str:
        return str(self.shared / "testdata" / "images" / name)

    def video(self, name: str) -> str:
        return str(self.shared / "testdata" / "video" / name)

    def face(self, name: str) -> str:
        return str(self.shared / "testdata" / "faces" / "deepface" / name)

    def job_root(self) -> str:
        """A fresh root of two images (each job does real work, not answers already stored)."""
        root = self.work / f"job-root-{next(self._jobs)}"
        root.mkdir(parents=True)
        for name in IMAGES[:2]:
            shutil.copy(self.image(name), root / name)
        return str(root)


Call = Callable[[httpx.Client, Library, int], list[tuple[str, httpx.Response]]]


def _images(client: httpx.Client, lib: Library, n: int) -> list[tuple[str, httpx.Response]]:
    paths = [lib.image(IMAGES[i % len(IMAGES)]) for i in range(AITAGGER_BATCH)]
    body = {"paths": paths, "threshold": 0.5, "return_confidence": False}
    return [("/process_images/", client.post("/process_images/", json=body))]


def _video(client: httpx.Client, lib: Library, n: int) -> list[tuple[str, httpx.Response]]:
    body = {
        "path": lib.video(VIDEOS[n % len(VIDEOS)]),
        "frame_interval": 2,
        "threshold": 0.3,
        "return_confidence": True,
        "vr_video": False,
    }
    return [("/process_video/", client.post("/process_video/", json=body))]


def _identify(client: httpx.Client, lib: Library, n: int) -> list[tuple[str, httpx.Response]]:
    body = {"image_path": lib.face(FACES[n % len(FACES)])}
    return [("/identify", client.post("/identify", json=body))]


def _scene(client: httpx.Client, lib: Library, n: int) -> list[tuple[str, httpx.Response]]:
    body = {"video_path": lib.video(SCENE), "num_frames": 8}
    return [("/identify/scene", client.post("/identify/scene", json=body))]


def _job(client: httpx.Client, lib: Library, n: int) -> list[tuple[str, httpx.Response]]:
    """Submits a tag-library job; every other one is cancelled at once, the rest followed until
    they end (a GET per second, each counted)."""
    submitted = client.post("/jobs", json={"kind": "tag-library", "params": {"roots": [lib.job_root()]}})
    answers = [("POST /jobs", submitted)]
    if submitted.status_code != 201:
        return answers
    job_id = submitted.json()["id"]
    if n % 2 == 0:
        answers.append(("POST /jobs/{id}/cancel", client.post(f"/jobs/{job_id}/cancel")))
        return answers
    deadline = time.monotonic() + REQUEST_TIMEOUT_S
    while time.monotonic() < deadline:
        polled = client.get(f"/jobs/{job_id}")
        answers.append(("GET /jobs/{id}", polled))
        if polled.status_code != 200 or polled.json()["state"] in ("succeeded", "failed", "cancelled"):
            break
        time.sleep(1.0)
    return answers


def _dashboard(client: httpx.Client, lib: Library, n: int) -> list[tuple[str, httpx.Response]]:
    page = "/ui/" if n % 2 == 0 else "/ui/jobs"
    return [(f"GET {page}", client.get(page))]


# name -> (what it sends, how many such clients run at once, the route a request without an
# answer is counted under)
POPULATION: dict[str, tuple[Call, int, str]] = {
    "aitagger_images": (_images, 2, "/process_images/"),
    "aitagger_video": (_video, 1, "/process_video/"),
    "identify": (_identify, 2, "/identify"),
    "identify_scene": (_scene, 1, "/identify/scene"),
    "jobs": (_job, 1, "POST /jobs"),
    "dashboard": (_dashboard, 1, "GET /ui/"),
}


class LoadRun:
    """Runs the population against `base_url` until `stop()` or `duration_s`; `outcomes` grows
    as answers come (read it under `lock`). Pauses of `think_s` between a client's requests keep
    the population bounded in rate as well as in concurrency."""

    def __init__(self, base_url: str, library: Library, duration_s: float, think_s: float = 0.5) -> None:
        self.base_url = base_url
        self.library = library
        self.duration_s = duration_s
        self.think_s = think_s
        self.outcomes: list[Outcome] = []
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = time.monotonic()

    def start(self) -> LoadRun:
        self.started = time.monotonic()
        for name, (call, count, route) in POPULATION.items():
            for index in range(count):
                thread = threading.Thread(
                    target=self._client, args=(call, route), name=f"{name}-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stop.set()

    def join(self) -> None:
        for thread in self._threads:
            thread.join()

    def run(self) -> list[Outcome]:
        self.start()
        self.join()
        return self.outcomes

    def _client(self, call: Call, route: str) -> None:
        with httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_S) as client:
            for n in itertools.count():
                if self._stop.is_set() or time.monotonic() - self.started >= self.duration_s:
                    return
                self._once(call, route, client, n)
                self._stop.wait(self.think_s)

    def _once(self, call: Call, route: str, client: httpx.Client, n: int) -> None:
        began = time.monotonic()
        try:
            answers = call(client, self.library, n)
        except httpx.HTTPError as error:
            kind, detail = classify_failure(error)
            self._record(Outcome(route, began - self.started, time.monotonic() - began, kind, detail))
            return
        for answered, response in answers:
            kind, detail = classify(answered, response)
            latency = response.elapsed.total_seconds()
            self._record(Outcome(answered, began - self.started, latency, kind, detail))

    def _record(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def snapshot(self) -> list[Outcome]:
        with self.lock:
            return list(self.outcomes)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def per_route(outcomes: list[Outcome], wall_s: float) -> dict[str, dict[str, Any]]:
    """Requests, throughput, p50/p99 of the answered ones, and counts per kind, by route."""
    report: dict[str, dict[str, Any]] = {}
    for route in sorted({o.route for o in outcomes}):
        mine = [o for o in outcomes if o.route == route]
        answered = [o.latency_s for o in mine if o.kind == OK]
        report[route] = {
            "requests": len(mine),
            "per_minute": round(len(mine) / wall_s * 60, 1),
            "ok": len(answered),
            "retryable": sum(o.kind == RETRYABLE for o in mine),
            "errors": sum(o.kind == ERROR for o in mine),
            "p50_s": round(statistics.median(answered), 3) if answered else None,
            "p99_s": round(percentile(answered, 0.99), 3) if answered else None,
        }
    return report


def errors(outcomes: list[Outcome], kind: str = ERROR, limit: int = 20) -> list[str]:
    """The first `limit` outcomes of `kind`, one line each."""
    return [f"{o.started_s:.1f}s {o.route}: {o.detail}" for o in outcomes if o.kind == kind][:limit]
