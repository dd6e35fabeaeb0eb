"""Our persisted jobs of the gateway's kinds, as the StashAI gateway shows its queue jobs (contract
B.2): status strings, naive UTC timestamps, the `result` object, the queue summaries of /health
and the WebSocket, and the /ai-jobs record. Every read is a JobService call, so a restart of either
process loses nothing: the jobs and their results live in jobs.db."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc

from stash_vision.adapter.server_client import ServerClient
from stash_vision.server.api import job_convert
from stash_vision.server.jobs.kinds.stash_ai_results import (
    KIND_OF_TYPE,
    TYPE_OF_KIND,
    Answer,
    gallery_image_result,
    gallery_response,
    utc_iso,
)
from stash_vision.server.jobs.model import ItemRecord, ItemState, Job, JobState
from stash_vision.v1 import jobs_pb2

CALL_TIMEOUT_S = 10.0
KINDS = sorted(KIND_OF_TYPE.values())
ACTIVE_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED, JobState.INTERRUPTED)
FINISHED_STATES = (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)
RECENT_JOBS = 10
_RESULTS_PAGE = 500
# A job that waits (queued, paused, or interrupted and about to resume) is "pending" to the plugin.
_STATUS = {
    JobState.QUEUED: "pending",
    JobState.PAUSED: "pending",
    JobState.INTERRUPTED: "pending",
    JobState.RUNNING: "processing",
    JobState.SUCCEEDED: "completed",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
}
CANCELLED_BY_USER = "Job cancelled by user"


def iso(unix_seconds: float | None) -> str | None:
    return None if unix_seconds is None else utc_iso(unix_seconds)


def job_type(job: Job) -> str:
    return TYPE_OF_KIND[job.kind]


def entity(job: Job) -> dict[str, Any]:
    value = job.params.get("entity")
    return dict(value) if isinstance(value, dict) else {}


async def fetch_job(client: ServerClient, job_id: str) -> Job | None:
    """The job, or None when there is none of the gateway's kinds with that id (a job of another
    kind is not the gateway's to show). gRPC errors other than NOT_FOUND propagate."""
    try:
        reply = await client.jobs.GetJob(
            jobs_pb2.GetJobRequest(job_id=job_id), timeout=CALL_TIMEOUT_S, metadata=client.metadata
        )
    except grpc.aio.AioRpcError as error:
        if error.code() in (grpc.StatusCode.NOT_FOUND, grpc.StatusCode.INVALID_ARGUMENT):
            return None
        raise
    job = job_convert.job_from_proto(reply.job)
    return job if job.kind in TYPE_OF_KIND else None


async def list_jobs(client: ServerClient, states: Sequence[JobState], page_size: int) -> list[Job]:
    reply = await client.jobs.ListJobs(
        jobs_pb2.ListJobsRequest(
            states=[job_convert.state_to_proto(s) for s in states], kinds=KINDS, page_size=page_size
        ),
        timeout=CALL_TIMEOUT_S,
        metadata=client.metadata,
    )
    return [job_convert.job_from_proto(j) for j in reply.jobs]


async def finished_items(client: ServerClient, job_id: str) -> list[ItemRecord]:
    items: list[ItemRecord] = []
    token = ""
    while True:
        reply = await client.jobs.ListJobResults(
            jobs_pb2.ListJobResultsRequest(job_id=job_id, page_size=_RESULTS_PAGE, page_token=token),
            timeout=CALL_TIMEOUT_S,
            metadata=client.metadata,
        )
        items.extend(job_convert.item_from_proto(i, job_id) for i in reply.items)
        token = reply.next_page_token
        if not token:
            return items


@dataclass(frozen=True)
class Outcome:
    """A job as the plugin sees it: status string, `result` (the identify response) and `error`."""

    status: str
    result: dict[str, Any] | None
    error: str | None


def processing_time(job: Job) -> float | None:
    if job.started_at is None:
        return None
    return round((job.finished_at or time.time()) - job.started_at, 3)


def _gallery_result(job: Job, items: list[ItemRecord]) -> dict[str, Any]:
    images = job.params.get("images") or []
    shown = []
    for item in items:
        if item.state is ItemState.DONE and item.result is not None:
            shown.append(item.result)
        else:  # an internal failure of one image: reported with it, the gallery still counts
            index = int(item.item)
            meta = images[index] if 0 <= index < len(images) else {}
            shown.append(gallery_image_result(meta, error=item.error or "failed"))
    answer = Answer(entity(job), job.params.get("request_id"), processing_time(job) or 0.0, {})
    return gallery_response(answer, len(images), shown, timestamp=job.finished_at)


async def outcome(client: ServerClient, job: Job) -> Outcome:
    """Status, result and error. `result` is null until the job completed (B.2); a job whose one
    item failed inside (an incident, not a bad request) is `failed` with that item's error."""
    status = _STATUS[job.state]
    if job.state is JobState.CANCELLED:
        return Outcome(status, None, CANCELLED_BY_USER)
    if job.state is JobState.FAILED:
        return Outcome(status, None, job.error or "failed")
    if job.state is not JobState.SUCCEEDED:
        return Outcome(status, None, None)
    items = await finished_items(client, job.id)
    if job.kind == KIND_OF_TYPE["gallery"]:
        return Outcome(status, _gallery_result(job, items), None)
    if not items:
        return Outcome("failed", None, "the job finished without a result")
    [item] = items[:1]
    if item.state is ItemState.FAILED or item.result is None:
        return Outcome("failed", None, item.error or "failed")
    return Outcome(status, item.result, None)


def status_record(job: Job, result: Outcome) -> dict[str, Any]:
    """GET /queue/status/{job_id}."""
    return {
        "job_id": job.id,
        "job_type": job_type(job),
        "status": result.status,
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.finished_at),
        "result": result.result,
        "error": result.error,
    }


def job_record(job: Job) -> dict[str, Any]:
    """One job in the queue summaries: the union of the original's active-job, recent-job and
    full-record fields, so every reader finds its keys. Items are the gateway's "tests"."""
    progress = job.progress
    target = entity(job)
    succeeded = progress.done - progress.failed
    percentage = round(100.0 * progress.done / progress.total, 1) if progress.total else 0.0
    if job.state is JobState.SUCCEEDED:
        percentage = 100.0
    kind = job_type(job)
    name = target.get("title") or f"{kind} {target.get('id', '')}".strip()
    return {
        "id": job.id,
        "job_id": job.id,
        "job_type": kind,
        "job_name": f"Identify performers: {name}",
        "entity_type": target.get("type", kind),
        "entity_id": target.get("id"),
        "entity_name": name,
        "action_type": "facial_recognition",
        "status": _STATUS[job.state],
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.finished_at),
        "processing_time_seconds": processing_time(job),
        "message": job.message,
        "total_items": progress.total,
        "successful_items": succeeded,
        "failed_items": progress.failed,
        "progress_percentage": percentage,
        "progress": {"current": progress.done, "total": progress.total},
        "jobProgress": {"completed": succeeded, "failed": progress.failed, "total": progress.total},
        "total_tests_planned": progress.total,
        "tests_completed": progress.done,
        "tests_passed": succeeded,
        "tests_failed": progress.failed,
        "tests_error": 0,
        "tests": [],
        "has_results": job.state is JobState.SUCCEEDED,
    }


def _polling_interval(active: list[Job], recent: list[Job]) -> int:
    if active:
        return 2
    finished = [j.finished_at for j in recent if j.finished_at is not None]
    return 10 if finished and time.time() - max(finished) < 120 else 30


async def queue_status(client: ServerClient) -> dict[str, Any]:
    """`queue_status` of /health and the WebSocket: our active jobs of the gateway's kinds and the
    ten most recent finished ones. `total_active_tests` is sent (the original never did, so the
    plugin's counter fell back to local counts)."""
    active, recent = await asyncio.gather(
        list_jobs(client, ACTIVE_STATES, 100), list_jobs(client, FINISHED_STATES, RECENT_JOBS)
    )
    total = sum(j.progress.total for j in active)
    done = sum(j.progress.done for j in active)
    failed = sum(j.progress.failed for j in active)
    return {
        "active_jobs": [job_record(j) for j in active],
        "active_jobs_count": len(active),
        "recent_completed_jobs": [job_record(j) for j in recent],
        "total_tests": total,
        "total_active_tests": total,
        "completed_tests": done - failed,
        "failed_tests": failed,
        "suggested_polling_interval": _polling_interval(active, recent),
        "timestamp": utc_iso(),
    }


def performers_found(result: dict[str, Any] | None) -> list[float]:
    """The confidences of the performers a result names (image, scene or gallery)."""
    if not result:
        return []
    gallery = (result.get("ai_model_info") or {}).get("gallery_results")
    if gallery:
        return [float(p["bestConfidence"]) for p in gallery.get("performers", [])]
    return [float(p["confidence"]) for p in result.get("performers", [])]


def ai_job_record(job: Job, result: Outcome | None) -> dict[str, Any]:
    """GET /ai-jobs/{id}: the job record, and `detailed_results` when asked for."""
    record = job_record(job)
    if result is not None:
        confidences = performers_found(result.result)
        record.update(
            status=result.status,
            error=result.error,
            performers_found_total=len(confidences),
            detailed_results=result.result,
        )
    return record
