"""Stash Sense: the plugin page's routes (tier 3 of the contract, A.2.3 and A.3.9), answered from
this service rather than stubbed: the identification database is our active face index version,
the system and models are what the server reports, the settings are ours (settings_page.py).

Recommendations are not something stash-vision makes, so their counts are honest zeros (the default
tab needs them to render) and every recommendation, upstream-sync, fingerprint, model-download and
database-update action answers **501** `{"detail": "not provided by stash-vision: …"}`, which the
plugin shows as the action's error. Scheduled jobs are not provided either: the schedule list is
empty and changing one is a 501."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from stash_vision import __version__
from stash_vision.settings import Settings
from stash_vision.v1 import indexes_pb2, models_pb2

from . import settings_page
from .service_facts import active_version_or_none, face_index, index_versions, ready_models, uses_gpu

router = APIRouter()
router.include_router(settings_page.router)

_STARTED = time.monotonic()  # the adapter imports its routes once, as it starts
REC_TYPES = (
    "duplicate_performer",
    "duplicate_scenes",
    "duplicate_scene_files",
    "upstream_performer_changes",
    "upstream_tag_changes",
    "upstream_studio_changes",
    "upstream_scene_changes",
    "scene_fingerprint_match",
)
_WHY = "stash-vision identifies performers, tags media and runs jobs; it does not make recommendations"


def not_provided(what: str, how: str = _WHY) -> HTTPException:
    return HTTPException(status_code=501, detail=f"not provided by stash-vision: {what} ({how})")


# ---------------------------------------------------------------------------- recommendations


@router.get("/recommendations/counts")
async def recommendation_counts() -> dict[str, Any]:
    zeros = {"pending": 0, "resolved": 0, "dismissed": 0}
    return {"counts": {kind: dict(zeros) for kind in REC_TYPES}, "total_pending": 0}


@router.get("/recommendations/fingerprints/status")
async def fingerprint_status(request: Request) -> dict[str, Any]:
    """No scene fingerprints are kept; the page reads the database version from here first."""
    return {
        "total_fingerprints": 0,
        "complete_fingerprints": 0,
        "pending_fingerprints": 0,
        "error_fingerprints": 0,
        "current_db_version": await active_version_or_none(request),
        "current_version_count": 0,
        "needs_refresh_count": 0,
        "generation_running": False,
        "generation_progress": None,
    }


@router.api_route("/recommendations", methods=["GET", "POST", "PUT", "DELETE"])
@router.api_route("/recommendations/{action:path}", methods=["GET", "POST", "PUT", "DELETE"])
async def recommendations(action: str = "") -> dict[str, Any]:
    what = (
        "upstream sync"
        if action.startswith(("upstream", "actions/update", "actions/accept"))
        else ("scene fingerprints" if action.startswith("fingerprints") else "recommendations")
    )
    raise not_provided(what)


# ---------------------------------------------------------------------------- database


def _active(versions: indexes_pb2.ListIndexVersionsResponse) -> indexes_pb2.IndexVersion | None:
    return next((v for v in versions.versions if v.active), None)


@router.get("/database/info")
async def database_info(request: Request) -> dict[str, Any]:
    """The active face index version (what identification answers from)."""
    index = await face_index(request)
    active = _active(await index_versions(request))
    return {
        "version": index.answered_by.index_version or "unknown",
        "performer_count": index.performer_count,
        "face_count": index.face_count,
        "sources": list(active.sources) if active is not None else [],
        "created_at": active.created_at if active is not None else None,
        "tattoo_embedding_count": None,
        "profile": index.answered_by.profile,
        "index_loaded": index.index_loaded,
        "index_problem": index.index_problem or None,
    }


@router.get("/database/check-update")
async def database_check_update(request: Request) -> dict[str, Any]:
    """Whether a newer face index version than the active one is present here (built or imported,
    not activated). No network: our versions come from builds and imports, not a download."""
    versions = await index_versions(request)
    active = _active(versions)
    newest = versions.versions[0] if versions.versions else None  # the server lists newest first
    newer = newest if newest is not None and not newest.active else None
    return {
        "current_version": active.version if active is not None else None,
        "latest_version": newest.version if newest is not None else None,
        "update_available": newer is not None,
        "release_name": newer.version if newer is not None else None,
        "download_url": None,
        "download_size_mb": round(newer.size_bytes / 1e6, 1) if newer is not None else None,
        "published_at": newest.created_at if newest is not None else None,
        "how_to_update": f"POST /faces/index/versions/{newer.version}/activate"
        if newer is not None
        else None,
        "error": None,
    }


@router.post("/database/update")
@router.get("/database/update/status")
async def database_update() -> dict[str, Any]:
    raise not_provided(
        "database downloads",
        "face index versions are built with the build-face-index job or imported from a release",
    )


# ---------------------------------------------------------------------------- models and system


def _model_json(model: models_pb2.Model) -> dict[str, Any]:
    ready = model.state == models_pb2.MODEL_STATE_READY
    return {
        "status": "installed" if ready else "not_installed",
        "file": f"{model.name}/{model.version}",
        "size": None,
        "group": model.task or "other",
        "description": f"{model.task} model, version {model.version}, on {model.device or 'cpu'}"
        + ("" if ready else " (not ready in Triton)"),
    }


@router.get("/models/status")
async def models_status(request: Request) -> dict[str, Any]:
    return {"models": {m.name: _model_json(m) for m in await ready_models(request)}}


@router.get("/capabilities")
async def capabilities(request: Request) -> dict[str, Any]:
    models = {m.name: _model_json(m) for m in await ready_models(request)}
    identification = (await active_version_or_none(request)) is not None
    return {
        "capabilities": {
            "upstream_sync": False,
            "duplicate_detection_basic": False,
            "identification": identification,
            "tattoo_signal": False,
        },
        "models": models,
    }


@router.get("/models/download-progress")
async def models_download_progress() -> dict[str, Any]:
    return {"progress": {}}  # nothing is ever downloading through this page


@router.post("/models/download/{model_name}")
@router.post("/models/download-all")
async def models_download() -> dict[str, Any]:
    raise not_provided(
        "model downloads", "models are fetched and checked by `stash-vision models fetch`, which `serve` runs"
    )


def _memory_mb() -> tuple[int | None, int | None]:
    try:
        page = os.sysconf("SC_PAGE_SIZE")
        return (os.sysconf("SC_PHYS_PAGES") * page // 2**20, os.sysconf("SC_AVPHYS_PAGES") * page // 2**20)
    except (ValueError, OSError, AttributeError):
        return None, None


def _free_mb(path: Path) -> int | None:
    for folder in (path, *path.parents):  # the data directory may not exist yet
        if folder.exists():
            return shutil.disk_usage(folder).free // 2**20
    return None


@router.get("/system/info")
async def system_info(request: Request) -> dict[str, Any]:
    """The GPU is what the server's models run on (Triton's device); cores, memory and disk are
    those of the machine this adapter runs on, usually the server's."""
    settings: Settings = getattr(request.app.state, "settings", None) or Settings()
    gpu = await uses_gpu(request)
    total, available = _memory_mb()
    cores = os.cpu_count()
    tier = "gpu" if gpu else "cpu"
    return {
        "version": __version__,
        "uptime_seconds": int(time.monotonic() - _STARTED),
        "hardware": {
            "gpu_available": gpu,
            "gpu_name": None,
            "gpu_vram_mb": None,
            "cpu_cores": cores,
            "memory_total_mb": total,
            "memory_available_mb": available,
            "storage_free_mb": _free_mb(settings.data_dir),
            "tier": tier,
            "summary": f"{'GPU (Triton)' if gpu else 'CPU only'}, {cores} cores",
        },
    }


# ---------------------------------------------------------------------------- schedules


@router.get("/queue/schedules")
async def queue_schedules() -> dict[str, Any]:
    return {"schedules": []}


@router.put("/queue/schedules/{job_type}")
async def update_schedule(job_type: str) -> dict[str, Any]:
    raise not_provided(
        f"scheduled {job_type} jobs", "run `stash-vision jobs submit` from cron or a systemd timer instead"
    )
