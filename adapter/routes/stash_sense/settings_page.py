"""Stash Sense: the Settings tab's `/settings` (contract A.3.9), a real view of this service's
settings that matter to the plugin, in the original's shape: categories of settings, each with its
value, default, whether it is overridden, type, label and description.

Our settings come from the environment (STASH_VISION_…) and are read once at start by every
process, so they cannot change while serving: saving one (`PUT /settings/{key}`, `PUT /settings`)
or resetting it (`DELETE /settings/{key}`) answers **409** with the variable to set and "restart";
an unknown key answers 404, as the original. `is_override` is true when the environment sets the
value. Secrets (API keys) are never shown. Labels and descriptions are plain text (the tab puts
them into HTML)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel

from stash_vision.server.connections.stash import endpoint_domain
from stash_vision.settings import Settings

from .service_facts import hardware_tier

router = APIRouter(prefix="/settings")

# category -> (label, order, [(setting, label)])
CATEGORIES: dict[str, tuple[str, int, list[tuple[str, str]]]] = {
    "identification": (
        "Face identification",
        1,
        [
            ("face_profile", "Face profile"),
            ("face_query_k", "Index rows per face"),
            ("face_query_ef", "Index search breadth"),
            ("face_index_keep_versions", "Index versions kept"),
        ],
    ),
    "stash": (
        "Stash connection",
        2,
        [
            ("stash_url", "Stash URL"),
            ("path_mappings", "Path mappings"),
            ("library_roots", "Library folders"),
        ],
    ),
    "performance": (
        "Performance",
        3,
        [
            ("video_decoders", "Videos decoded at once"),
            ("video_frames_in_flight", "Video frames in flight"),
            ("images_in_flight", "Images in flight"),
            ("decode_threads", "Decode threads"),
        ],
    ),
    "jobs": (
        "Jobs",
        4,
        [
            ("jobs_running", "Jobs run at once"),
            ("job_items_in_flight", "Items per job at once"),
            ("jobs_auto_resume", "Resume jobs after a restart"),
            ("result_store_max_bytes", "Result store size (bytes)"),
        ],
    ),
}
_LABELS = {key: label for _, _, keys in CATEGORIES.values() for key, label in keys}


def env_name(key: str) -> str:
    return f"STASH_VISION_{key.upper()}"


def _plain(value: Any) -> Any:
    """A value as the tab shows it: numbers and booleans as they are, anything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list | dict):
        return json.dumps(value, default=str)
    return str(value)


def _type(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    return "int" if isinstance(value, int) else "float" if isinstance(value, float) else "string"


def setting_json(settings: Settings, key: str) -> dict[str, Any]:
    field = Settings.model_fields[key]
    value = _plain(getattr(settings, key))
    entry: dict[str, Any] = {
        "value": value,
        "default": _plain(field.get_default(call_default_factory=True)),
        "is_override": key in settings.model_fields_set,
        "type": _type(value),
        "label": _LABELS[key],
        "description": f"{field.description or ''} Set with {env_name(key)} and restart.".strip(),
    }
    for rule in field.metadata:
        if hasattr(rule, "ge"):
            entry["min"] = rule.ge
        if hasattr(rule, "le"):
            entry["max"] = rule.le
    return entry


def _settings(request: Request) -> Settings:
    settings: Settings = getattr(request.app.state, "settings", None) or Settings()
    return settings


def _known(key: str) -> str:
    if key not in _LABELS:
        raise HTTPException(
            status_code=404,
            detail=f"Unknown setting: {key} (stash-vision shows: {', '.join(sorted(_LABELS))})",
        )
    return key


def _read_only(keys: list[str]) -> HTTPException:
    names = ", ".join(env_name(k) for k in keys)
    return HTTPException(
        status_code=409,
        detail=f"stash-vision reads its settings from the environment at start: set {names} "
        "where stash-vision is started (environment, compose.yaml) and restart it",
    )


@router.get("")
async def all_settings(request: Request) -> dict[str, Any]:
    settings = _settings(request)
    return {
        "hardware_tier": await hardware_tier(request),
        "categories": {
            name: {
                "label": label,
                "order": order,
                "settings": {key: setting_json(settings, key) for key, _ in keys},
            }
            for name, (label, order, keys) in CATEGORIES.items()
        },
    }


class BulkUpdate(BaseModel):
    settings: dict[str, Any]


@router.put("")
async def update_many(body: BulkUpdate) -> dict[str, Any]:
    raise _read_only([_known(key) for key in body.settings])


# ------------------------------------------------------------- stash-box endpoints (before /{key})


@router.get("/endpoint-priorities")
async def endpoint_priorities(request: Request) -> dict[str, Any]:
    """The stash-boxes configured here, in their configured order (their priority)."""
    endpoints = [
        {
            "endpoint": box.endpoint,
            "name": box.name,
            "domain": endpoint_domain(box.endpoint),
            "max_requests_per_minute": box.max_requests_per_minute,
        }
        for box in _settings(request).stashbox_endpoints
    ]
    return {"endpoints": endpoints, "disabled": []}


@router.post("/endpoint-priorities")
@router.post("/endpoint-disable")
@router.post("/endpoint-enable")
async def change_endpoints() -> dict[str, Any]:
    raise _read_only(["stashbox_endpoints"])


# ------------------------------------------------------------------------------------ one setting


@router.get("/{key}")
async def one_setting(request: Request, key: str) -> dict[str, Any]:
    return {"key": _known(key), **setting_json(_settings(request), key)}


@router.put("/{key}")
async def update_one(key: str) -> dict[str, Any]:
    raise _read_only([_known(key)])


@router.delete("/{key}")
async def reset_one(key: str) -> dict[str, Any]:
    raise _read_only([_known(key)])
