"""The StashAI gateway's API for the AI Overhaul plugin, mounted under `/stash-ai/` (the user sets
the plugin's server URL to `http://<host>:8000/stash-ai`). Contract:
../shared/docs/stash-plugins-contract.md part B."""

from __future__ import annotations

from fastapi import APIRouter

from . import queue_socket, recognition, routes

router = APIRouter(prefix="/stash-ai", tags=["AI Overhaul plugin"])
router.include_router(routes.router)
router.include_router(recognition.router)
router.include_router(queue_socket.router)
