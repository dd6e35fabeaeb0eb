"""The FastAPI app: routes, the gRPC client to the server, request metrics, optional API key.
No model code and no media decoding live here."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.middleware.cors import CORSMiddleware

from stash_vision import __version__
from stash_vision.adapter.key_in_path import KeyInPath
from stash_vision.adapter.metrics import IN_FLIGHT, LATENCY, REQUESTS
from stash_vision.adapter.routes import faces, health, indexes, jobs, stash_ai, stash_sense, tagging, video
from stash_vision.adapter.server_client import ServerClient
from stash_vision.adapter.ui import api as ui_api
from stash_vision.adapter.ui import auth
from stash_vision.adapter.ui import pages as ui_pages
from stash_vision.settings import Settings

log = logging.getLogger("stash_vision.adapter")


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.server = ServerClient(settings)
        app.state.settings = settings
        app.state.outstanding = 0
        try:
            yield
        finally:
            await app.state.server.close()

    app = FastAPI(title="stash-vision", version=__version__, lifespan=lifespan)
    app.include_router(health.router)
    app.include_router(tagging.router)
    app.include_router(video.router)
    app.include_router(faces.router)
    app.include_router(jobs.router)
    app.include_router(indexes.router)
    app.include_router(stash_sense.router)
    app.include_router(stash_ai.router)
    app.include_router(ui_pages.router)
    app.include_router(ui_api.router)

    @app.middleware("http")
    async def track(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        # The X-API-Key header, or the dashboard's session cookie plus its CSRF token (adapter/ui/auth.py).
        refused = auth.refusal(request, settings.api_key)
        if refused is not None:
            return refused
        route = request.scope.get("route")
        started = time.perf_counter()
        app.state.outstanding += 1
        IN_FLIGHT.inc()
        status = 500
        try:
            response = await call_next(request)
            status = response.status_code
            response.headers["X-Outstanding-Requests"] = str(app.state.outstanding - 1)
            return response
        finally:
            app.state.outstanding -= 1
            IN_FLIGHT.dec()
            path = getattr(request.scope.get("route"), "path", None) or getattr(route, "path", "unmatched")
            LATENCY.labels(path, request.method).observe(time.perf_counter() - started)
            REQUESTS.labels(path, request.method, str(status)).inc()

    # Added last, so outermost: a preflight (which carries no API key) is answered before the key
    # check, and a 401 still carries the CORS headers the browser needs to show it.
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.effective_cors_origins,
        allow_methods=["GET", "POST", "PUT", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type", "X-API-Key"],
    )
    # Outermost of all: `/stash-sense/key/<key>/…` becomes a plain path plus the key header.
    app.add_middleware(KeyInPath)
    return app


def main() -> int:
    import uvicorn

    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.http_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        timeout_graceful_shutdown=5,
    )
    server = uvicorn.Server(config)
    server.run()
    # uvicorn returns normally when it could not bind; make that a failure for the supervisor.
    return 0 if server.started else 1
