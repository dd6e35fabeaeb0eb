"""What the pages show, gathered from the same routes and RPCs the JSON API serves. Each gatherer
turns an unreachable server into a problem line for the page (never a 500): the dashboard is where
a user looks when something is down."""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import PurePath
from typing import Any

import grpc
from fastapi import HTTPException, Request
from pydantic import SecretStr

from stash_vision.adapter.routes import faces, indexes, jobs, tagging
from stash_vision.adapter.server_client import server_of
from stash_vision.adapter.ui.service_metrics import executed_batch, service_metrics
from stash_vision.catalog.entries import Catalog, CatalogError
from stash_vision.catalog.fetcher import is_fetched
from stash_vision.settings import Settings
from stash_vision.v1 import models_pb2

ACTIVE_STATES = ["running", "queued", "paused", "interrupted"]
FINISHED_STATES = ["succeeded", "failed", "cancelled"]
MASK = "••••••••"
# Settings whose values are secrets: shown as set or unset, never their value.
SECRET_FIELDS = frozenset({"api_key", "stash_api_key"})


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def problem(error: Exception) -> str:
    if isinstance(error, HTTPException):
        return str(error.detail)
    if isinstance(error, grpc.aio.AioRpcError):
        return f"the stash-vision server is unreachable ({error.code().name}): {error.details()}"
    return str(error)


async def _attempt(problems: list[str], call: Any) -> Any:
    """The awaited call's answer, or None with its problem recorded."""
    try:
        return await call
    except (HTTPException, grpc.aio.AioRpcError) as error:
        text = problem(error)
        # Every call fails the same way when the server is down: say it once.
        if not any(text in known or known in text for known in problems):
            problems.append(text)
        return None


async def model_rows(request: Request, problems: list[str]) -> list[dict[str, Any]]:
    listed = await _attempt(problems, server_of(request).list_models())
    return [_model_row(m) for m in listed or []]


def _model_row(model: models_pb2.Model) -> dict[str, Any]:
    contract = model.input_contract
    return {
        "name": model.name,
        "version": model.version,
        "task": model.task,
        "ready": model.state == models_pb2.MODEL_STATE_READY,
        "device": model.device or "unknown",
        "licence": model.licence,
        "max_batch_size": model.batching.max_batch_size,
        "dynamic_batching": model.batching.dynamic_batching,
        "instance_count": model.batching.instance_count,
        "labels": len(model.labels),
        "inputs": [f"{t.name} {t.datatype} {list(t.dims)}" for t in model.inputs],
        "outputs": [f"{t.name} {t.datatype} {list(t.dims)}" for t in model.outputs],
        "contract": (
            f"{contract.width}×{contract.height} {contract.resize}, {contract.color_order}, "
            f"{contract.layout}, scale {contract.scale:g}, mean {[round(v, 3) for v in contract.mean]}, "
            f"std {[round(v, 3) for v in contract.std]}"
            if contract.width
            else "—"
        ),
    }


async def overview(request: Request) -> dict[str, Any]:
    problems: list[str] = []
    client = server_of(request)
    metrics = service_metrics(request.app.state, settings_of(request))
    serving, models, index, running, sample = await asyncio.gather(
        client.serving(),
        model_rows(request, problems),
        _attempt(problems, faces.face_index(request)),
        _attempt(problems, list_jobs(request, ACTIVE_STATES, 20)),
        metrics.latest(),
    )
    rates = metrics.rates()
    for model in models:
        model["executed_batch"] = executed_batch(sample, model["name"])
        model["inferences_per_s"] = rates.inferences_per_s.get(model["name"]) if rates else None
    waiting = [m["name"] for m in models if not m["ready"]]
    if serving:
        why = "every model is loaded"
    elif waiting:
        why = f"waiting for {', '.join(waiting)} (loading, failed, or Triton is restarting)"
    else:
        why = "the stash-vision server does not answer"
    return {
        "ready": serving,
        "ready_reason": why,
        "models": models,
        "index": index,
        "jobs": running or [],
        "rates": asdict(rates) if rates else None,
        "metrics_problems": list(sample.problems),
        "problems": problems,
    }


async def list_jobs(request: Request, states: list[str], page_size: int) -> list[dict[str, Any]]:
    answer = await jobs.list_jobs(request, state=states, kind=[], page_size=page_size, page_token="")
    found: list[dict[str, Any]] = answer["jobs"]
    return found


async def jobs_page(request: Request) -> dict[str, Any]:
    problems: list[str] = []
    active, finished, kinds = await asyncio.gather(
        _attempt(problems, list_jobs(request, ACTIVE_STATES, 100)),
        _attempt(problems, list_jobs(request, FINISHED_STATES, 30)),
        _attempt(problems, jobs.list_job_kinds(request)),
    )
    settings = settings_of(request)
    return {
        "active": active or [],
        "finished": finished or [],
        "kinds": (kinds or {}).get("kinds", []),
        "library_roots": [str(root) for root in settings.library_roots],
        "stash_configured": bool(settings.stash_url),
        "stashboxes": [box.name for box in settings.stashbox_endpoints],
        "problems": problems,
    }


async def job_page(request: Request, job_id: str) -> dict[str, Any]:
    """The job, and its failed items grouped by error kind (from its results, at most 2000 read)."""
    job = await jobs.get_job(request, job_id)
    groups: dict[str, list[dict[str, Any]]] = {}
    folders: dict[str, dict[str, int]] = {}  # items finished per folder
    built: str | None = None
    token, read = "", 0
    while read < 2000:
        page = await jobs.job_results(request, job_id, page_size=500, page_token=token)
        for item in page["items"]:
            if item["state"] in ("done", "failed"):
                counts = folders.setdefault(str(PurePath(item["item"]).parent), {"done": 0, "failed": 0})
                counts[item["state"]] += 1
            if item["state"] == "failed":
                groups.setdefault(item["error_kind"] or "Error", []).append(item)
            elif job["kind"] == "build-face-index" and item["result"]:
                built = item["result"].get("version")
        read += len(page["items"])
        token = page["next_page_token"]
        if not token:
            break
    return {
        "job": job,
        "params_json": json.dumps(job["params"], indent=2),
        "error_groups": groups,
        "folders": folders if job["kind"] != "build-face-index" else {},
        "results_truncated": bool(token),
        "build_diff": await _build_diff(request, built) if built else None,
    }


async def _build_diff(request: Request, version: str) -> dict[str, Any] | None:
    """What a build changed against the version it was based on (None for a first build, or a
    version deleted since)."""
    try:
        built = await indexes.index_version(request, version)
        parent = built["parent_version"]
        return await indexes.diff_versions(request, parent, version) if parent else {"first": version}
    except HTTPException:
        return None


async def indexes_page(request: Request) -> dict[str, Any]:
    problems: list[str] = []
    listed = await _attempt(problems, indexes.index_versions(request))
    return {"listing": listed, "problems": problems}


async def models_page(request: Request) -> dict[str, Any]:
    problems: list[str] = []
    settings = settings_of(request)
    models, taggers, catalogued = await asyncio.gather(
        model_rows(request, problems),
        _attempt(problems, tagging.current_ai_models(request)),
        asyncio.to_thread(catalog_rows, settings, problems),
    )
    configured = {m["name"]: m for m in models}
    for row in catalogued:
        row["configured"] = row["name"] in configured
        row["loaded"] = configured.get(row["name"], {}).get("ready", False)
    return {"models": models, "catalog": catalogued, "taggers": taggers or [], "problems": problems}


def catalog_rows(settings: Settings, problems: list[str]) -> list[dict[str, Any]]:
    """Every catalogued model (packaged and imported) and whether its weights are in the data
    directory (by size; the fetcher checked the sha256 when it wrote them)."""
    try:
        catalog = Catalog.load(extra=[settings.user_repository])
    except CatalogError as error:
        problems.append(str(error))
        return []
    rows = []
    for name in catalog.names():
        entry = catalog.get(name)
        rows.append(
            {
                "name": name,
                "task": entry.task,
                "licence": entry.licence,
                "fetched": is_fetched(entry, settings.models_dir),
            }
        )
    return rows


def effective_settings(settings: Settings) -> list[tuple[str, str]]:
    """Every setting as the processes read it, secrets masked (the stash-box keys too)."""
    rows: list[tuple[str, str]] = []
    for name in sorted(type(settings).model_fields):
        value = getattr(settings, name)
        if name in SECRET_FIELDS:
            shown = MASK if value else "(not set)"
        elif name == "stashbox_endpoints":
            shown = json.dumps(
                [{**box.model_dump(), "api_key": MASK if box.api_key else ""} for box in value]
            )
        elif isinstance(value, SecretStr):
            shown = MASK
        elif isinstance(value, (list, dict)):
            shown = json.dumps(value, default=str)
        else:
            shown = "(not set)" if value is None else str(value)
        rows.append((name, shown))
    return rows
