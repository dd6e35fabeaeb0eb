"""Stash Sense: the Operations tab's queue (contract A.1 "Queue", A.2.3, A.3.9), backed by OUR jobs
(JobService over gRPC): the job types are the server's job kinds, a submitted job is a real job.

* States map to the plugin's strings: queued → `queued`, running → `running`, succeeded →
  `completed`, failed → `failed`, cancelled → `cancelled`. Two states the plugin has no word for
  show where its Retry button does the right thing: paused → `cancelled` and interrupted →
  `failed`, each with an `error_message` saying that Retry resumes it (ResumeJob keeps the items
  already done); `state` carries our own state name.
* Times are naive UTC ISO strings without `Z` (the tab appends it).
* `POST /queue` submits a job of that kind with default parameters: the parameters of the newest
  job of that kind (the tab's button repeats the last run), else, for the library kinds, the
  library roots of STASH_VISION_LIBRARY_ROOTS, else none; a kind that needs more answers 400 with
  its own message. One job per kind at a time, as the original: 409 "already queued or running".
* Retry resubmits a failed or cancelled job with the same parameters (a paused or interrupted one is
  resumed); Stop and Cancel cancel.
* Clear History hides finished jobs from this tab; our jobs are kept (queue_view.py says why).

Errors: 400 bad input, 404 unknown job, 409 a state that does not allow the action, 503 the server
or its job database unavailable, each with a `detail` the tab can show (R1)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import grpc
from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, StrictStr

from stash_vision.adapter.server_client import http_error, server_of
from stash_vision.server.api import job_convert
from stash_vision.server.jobs.model import Job, JobState
from stash_vision.settings import Settings
from stash_vision.v1 import jobs_pb2

from .queue_view import QueueView, queue_view
from .service_facts import uses_gpu

router = APIRouter(prefix="/queue")

_TIMEOUT_S = 30.0
_PAGE = 500
_MAX_PAGES = 20  # a list looks through at most 10,000 jobs
_LIBRARY_KINDS = frozenset({"tag-library", "identify-library"})
_STATUS = {
    JobState.QUEUED: "queued",
    JobState.RUNNING: "running",
    JobState.SUCCEEDED: "completed",
    JobState.FAILED: "failed",
    JobState.CANCELLED: "cancelled",
    JobState.PAUSED: "cancelled",
    JobState.INTERRUPTED: "failed",
}
_RESUMABLE = {
    JobState.PAUSED: "Paused; Retry resumes it where it stopped",
    JobState.INTERRUPTED: "Interrupted: the server stopped while it ran; Retry resumes it where it stopped",
}
# The plugin's ?status= values -> our states ("stopping" never happens here: a cancel is at once).
_STATES_OF = {
    status: [s for s, name in _STATUS.items() if name == status] for status in set(_STATUS.values())
}
_STATES_OF |= {"pending": [JobState.QUEUED], "stopping": []}
_ACTIVE = [JobState.QUEUED, JobState.RUNNING]

# display name, description, does it run models (else network), incremental (reuses what was done)
KIND_INFO: dict[str, tuple[str, str, bool, bool]] = {
    "tag-library": (
        "Tag Library",
        "Tags every image, video and gallery under the library folders with the active taggers "
        "(unchanged files are answered from the result store)",
        True,
        True,
    ),
    "identify-library": (
        "Identify Performers in Library",
        "Names the performers in every image, video and gallery under the library folders",
        True,
        True,
    ),
    "build-face-index": (
        "Build Face Index",
        "A new face-index version from the sources of the last build; stash-box sources fetch only "
        "what changed since",
        True,
        True,
    ),
    "sync-to-stash": (
        "Sync Results to Stash",
        "Writes stored tags and identified performers into Stash, with the parameters of its last "
        "run (the first one is a dry run)",
        False,
        True,
    ),
    "undo-sync-to-stash": (
        "Undo Sync to Stash",
        "Removes from Stash exactly what an applied sync-to-stash job added",
        False,
        False,
    ),
}


def iso(seconds: float | None) -> str | None:
    """Unix seconds as the original's naive UTC ISO string (no `Z`)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None).isoformat()


def queue_job(job: Job, view: QueueView) -> dict[str, Any]:
    """One job in the shape the Operations tab reads (A.3.9), plus our state and message."""
    return {
        "id": job.id,
        "type": job.kind,
        "status": _STATUS[job.state],
        "state": job.state.value,
        "priority": 50,
        "cursor": None,
        "items_total": job.progress.total,
        "items_processed": job.progress.done,
        "items_failed": job.progress.failed,
        "error_message": job.error or _RESUMABLE.get(job.state),
        "message": job.message,
        "triggered_by": view.trigger_of(job.id),
        "created_at": iso(job.created_at),
        "started_at": iso(job.started_at),
        "completed_at": iso(job.finished_at),
    }


def _error(error: grpc.aio.AioRpcError) -> HTTPException:
    if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
        return HTTPException(status_code=409, detail=error.details() or "not possible in the job's state")
    return http_error(error)


async def call(request: Request, rpc: str, message: Any) -> Any:
    """One unary JobService call (`rpc` is its method name) with the API key and a deadline."""
    client = server_of(request)
    try:
        return await getattr(client.jobs, rpc)(message, timeout=_TIMEOUT_S, metadata=client.metadata)
    except grpc.aio.AioRpcError as error:
        raise _error(error) from None


async def jobs_in(
    request: Request, states: Sequence[JobState], of_kinds: Sequence[str] = ()
) -> AsyncIterator[Job]:
    """Jobs in these states (every state when empty), newest first, a page at a time."""
    token = ""
    for _ in range(_MAX_PAGES):
        message = jobs_pb2.ListJobsRequest(
            states=[job_convert.state_to_proto(s) for s in states],
            kinds=list(of_kinds),
            page_size=_PAGE,
            page_token=token,
        )
        reply = await call(request, "ListJobs", message)
        for raw in reply.jobs:
            yield job_convert.job_from_proto(raw)
        token = reply.next_page_token
        if not token:
            return


def _visible(job: Job, view: QueueView) -> bool:
    """False for history the tab's Clear History hid."""
    in_history = job.state not in _ACTIVE
    return not in_history or (job.finished_at or job.updated_at) >= view.history_cleared_at


async def job_kinds(request: Request) -> list[str]:
    return list((await call(request, "ListJobKinds", jobs_pb2.ListJobKindsRequest())).kinds)


@router.get("/status")
async def queue_status(request: Request) -> dict[str, Any]:
    view = queue_view(request)
    active = [j async for j in jobs_in(request, _ACTIVE)]
    running = [j for j in active if j.state is JobState.RUNNING]
    return {
        "queued": len(active) - len(running),
        "running": len(running),
        "running_jobs": [queue_job(j, view) for j in running],
    }


@router.get("/types")
async def queue_types(request: Request) -> dict[str, Any]:
    names = await job_kinds(request)
    gpu = await uses_gpu(request)
    types: list[dict[str, Any]] = []
    for name in names:
        display, description, inference, incremental = KIND_INFO.get(
            name, (name.replace("-", " ").title(), f"The {name} job of stash-vision", False, False)
        )
        types.append(
            {
                "type_id": name,
                "display_name": display,
                "description": description,
                "resource": ("gpu" if gpu else "cpu") if inference else "network",
                "default_priority": 50,
                "supports_incremental": incremental,
                "schedulable": False,
                "default_interval_hours": None,
                "allowed_intervals": [],
            }
        )
    return {"types": types}


@router.get("")
async def list_queue(
    request: Request,
    status: str | None = None,
    type: str | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> dict[str, Any]:
    if status is not None and status not in _STATES_OF:
        raise HTTPException(
            status_code=400, detail=f"unknown status {status!r}; one of {', '.join(sorted(_STATES_OF))}"
        )
    view = queue_view(request)
    states = _STATES_OF[status] if status is not None else []
    if status is not None and not states:
        return {"jobs": []}
    shown: list[dict[str, Any]] = []
    async for job in jobs_in(request, states, [type] if type else []):
        if _visible(job, view):
            shown.append(queue_job(job, view))
            if len(shown) >= limit:
                break
    return {"jobs": shown}


class SubmitRequest(BaseModel):
    type: StrictStr
    triggered_by: StrictStr = "user"


async def _refuse_if_active(request: Request, kind: str) -> None:
    async for job in jobs_in(request, _ACTIVE, [kind]):
        raise HTTPException(
            status_code=409, detail=f"Job of type '{kind}' is already queued or running (job {job.id})"
        )


async def default_params(request: Request, kind: str) -> dict[str, Any]:
    """The newest job of the kind's parameters, else the library roots for a library kind."""
    reply = await call(request, "ListJobs", jobs_pb2.ListJobsRequest(kinds=[kind], page_size=1))
    if reply.jobs:
        return job_convert.from_struct(reply.jobs[0].params)
    settings: Settings = getattr(request.app.state, "settings", None) or Settings()
    if kind in _LIBRARY_KINDS and settings.library_roots:
        return {"roots": [str(root) for root in settings.library_roots]}
    return {}


async def _submit(request: Request, kind: str, params: dict[str, Any], triggered_by: str) -> Job:
    await _refuse_if_active(request, kind)
    message = jobs_pb2.SubmitJobRequest(kind=kind, params=job_convert.to_struct(params))
    try:
        reply = await call(request, "SubmitJob", message)
    except HTTPException as error:
        if error.status_code == 400:
            error.detail = (
                f"{error.detail} (a {kind} job submitted from here takes the parameters of the last "
                f"{kind} job; submit the first one with its parameters: POST /jobs or `stash-vision jobs submit`)"
            )
        raise
    job = job_convert.job_from_proto(reply.job)
    queue_view(request).submitted(job.id, triggered_by)
    return job


@router.post("")
async def submit(request: Request, body: SubmitRequest) -> dict[str, Any]:
    known = await job_kinds(request)
    if body.type not in known:
        raise HTTPException(
            status_code=400, detail=f"Unknown job type: {body.type} (stash-vision runs: {', '.join(known)})"
        )
    job = await _submit(request, body.type, await default_params(request, body.type), body.triggered_by)
    return {"job_id": job.id, "message": f"Job queued: {body.type}"}


@router.delete("/history")
async def clear_history(request: Request) -> dict[str, Any]:
    view = queue_view(request)
    finished = [s for s in JobState if s not in _ACTIVE]
    count = sum([1 async for job in jobs_in(request, finished) if _visible(job, view)])
    view.clear_history()
    return {
        "message": f"Cleared {count} job(s) from history. stash-vision keeps the jobs themselves (their "
        "results are reused; GET /jobs lists them all)"
    }


async def _job(request: Request, job_id: str) -> Job:
    reply = await call(request, "GetJob", jobs_pb2.GetJobRequest(job_id=job_id))
    return job_convert.job_from_proto(reply.job)


@router.get("/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    return queue_job(await _job(request, job_id), queue_view(request))


@router.delete("/{job_id}")
async def cancel(request: Request, job_id: str) -> dict[str, Any]:
    await call(request, "CancelJob", jobs_pb2.CancelJobRequest(job_id=job_id))
    return {"message": "Job cancelled"}


@router.post("/{job_id}/stop")
async def stop(request: Request, job_id: str) -> dict[str, Any]:
    await call(request, "CancelJob", jobs_pb2.CancelJobRequest(job_id=job_id))
    return {"message": "Stop requested"}


@router.post("/{job_id}/retry")
async def retry(request: Request, job_id: str) -> dict[str, Any]:
    job = await _job(request, job_id)
    if job.state in _RESUMABLE:
        await _refuse_if_active(request, job.kind)
        await call(request, "ResumeJob", jobs_pb2.ResumeJobRequest(job_id=job_id))
        queue_view(request).submitted(job.id, "user")
        return {"job_id": job.id, "message": "Job resumed"}
    if job.state not in (JobState.FAILED, JobState.CANCELLED):
        raise HTTPException(
            status_code=409,
            detail=f"Can only retry failed or cancelled jobs; job {job_id} is {_STATUS[job.state]}",
        )
    new = await _submit(request, job.kind, job.params, "user")
    return {"job_id": new.id, "message": "Job re-queued"}
