"""A GraphQL server for tests that loads a REAL schema folder (../shared/stash-api/) and serves
fixture data through ariadne, so every query the client sends is validated against the real
schema: a renamed or removed field fails the test instead of failing for users.

It runs under uvicorn in a background thread on a free loopback port, checks the ApiKey header
(or Stash's `apikey` query parameter), logs every request's arrival time (so tests measure the
client's rate budget at the server), and can inject failures (401, 429 with Retry-After, 500) and
slow answers."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvicorn
from ariadne import ObjectType, UnionType, make_executable_schema
from ariadne.asgi import GraphQL
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send


def load_schema_text(folder: Path) -> str:
    """Every .graphql file of the folder, concatenated. stash-box writes `Boolean = False`, which
    ariadne's schema check rejects: lower-cased here (shared/stash-api/README.md)."""
    text = "\n".join(p.read_text() for p in sorted(folder.rglob("*.graphql")))
    return re.sub(r"(Boolean!?\s*=\s*)(True|False)\b", lambda m: m.group(1) + m.group(2).lower(), text)


@dataclass
class Fault:
    """What the next `count` requests get instead of an answer."""

    status: int
    count: int = 1
    retry_after: str | None = None
    body: str = "injected failure"


@dataclass
class Traffic:
    """Arrival times (monotonic) of requests, per path prefix."""

    arrivals: list[tuple[float, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, path: str) -> None:
        with self.lock:
            self.arrivals.append((time.monotonic(), path))

    def count(self, prefix: str = "") -> int:
        with self.lock:
            return sum(1 for _, p in self.arrivals if p.startswith(prefix))

    def max_in_window(self, window_s: float) -> int:
        """The most requests that arrived within any window of `window_s` seconds."""
        with self.lock:
            times = sorted(t for t, _ in self.arrivals)
        best, start = 0, 0
        for end, t in enumerate(times):
            while t - times[start] >= window_s:
                start += 1
            best = max(best, end - start + 1)
        return best


class StandInServer:
    """A Starlette app (GraphQL at `/graphql` plus the stand-in's own routes) on a free port.

    `bindables` are ariadne ObjectType/UnionType objects with the resolvers of exactly the queries
    the client sends; unresolved fields fall back to dict keys of the fixture objects."""

    def __init__(
        self,
        schema_dir: Path,
        bindables: Sequence[ObjectType | UnionType],
        routes: Sequence[BaseRoute] = (),
        *,
        api_key: str | None = None,
        allow_query_key: bool = False,
    ) -> None:
        schema = make_executable_schema(load_schema_text(schema_dir), *bindables)
        self.api_key = api_key
        self.allow_query_key = allow_query_key
        self.faults: list[Fault] = []
        self.delay_s = 0.0
        self.traffic = Traffic()
        app = Starlette(
            routes=[*routes, Route("/graphql", GraphQL(schema, debug=False), methods=["GET", "POST"])]
        )
        self.app: ASGIApp = self._guard(app)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def fail_next(self, status: int, count: int = 1, retry_after: str | None = None) -> None:
        self.faults.append(Fault(status, count, retry_after))

    def _take_fault(self) -> Fault | None:
        while self.faults and self.faults[0].count <= 0:
            self.faults.pop(0)
        if not self.faults:
            return None
        self.faults[0].count -= 1
        return self.faults[0]

    def _key_ok(self, request: Request) -> bool:
        if self.api_key is None:
            return True
        presented = request.headers.get("apikey")
        if presented is None and self.allow_query_key:
            presented = request.query_params.get("apikey")
        return presented == self.api_key

    def _guard(self, app: ASGIApp) -> ASGIApp:
        async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
            if scope["type"] != "http":
                await app(scope, receive, send)
                return
            request = Request(scope)
            self.traffic.add(request.url.path)
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            response: Response | None = None
            fault = self._take_fault()
            if fault is not None:
                headers = {"Retry-After": fault.retry_after} if fault.retry_after else None
                response = PlainTextResponse(fault.body, status_code=fault.status, headers=headers)
            elif not self._key_ok(request):
                response = PlainTextResponse("Unauthorized", status_code=401)
            if response is not None:
                await response(scope, receive, send)
                return
            await app(scope, receive, send)

        return guarded

    def start(self) -> StandInServer:
        config = uvicorn.Config(self.app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, name="stand-in", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("stand-in server did not start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)

    def __enter__(self) -> StandInServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def base_url(info: Any) -> str:
    """The request's base URL: Stash and stash-box build URLs in answers from it."""
    request: Request = info.context["request"]
    return str(request.base_url).rstrip("/")
