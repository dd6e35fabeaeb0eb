"""The job routes: /jobs to submit, list, inspect, cancel, pause and resume library-scale jobs, their
live progress as Server-Sent Events and their per-item results. Each route is one JobService call;
the JSON is the job model itself (server/jobs/model.py through `dataclasses.asdict`), so the HTTP
shape, the CLI and the runner never disagree on a field name.

Status codes: 400 bad input, 404 unknown job, 409 an action the job's state does not allow
(FAILED_PRECONDITION here, unlike the face routes where it means "no index yet"), 503 when the
server, its job lock or its job database is unavailable."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any, Literal

import grpc
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from stash_vision.adapter.server_client import http_error, server_of
from stash_vision.adapter.streaming import disconnected
from stash_vision.server.api import job_convert
from stash_vision.server.errors import InvalidInput
from stash_vision.v1 import jobs_pb2

router = APIRouter(prefix="/jobs")

_CALL_TIMEOUT_S = 30.0
# An idle watch (a queued job, a slow item) sends an SSE comment this often so that proxies and
# clients with read timeouts keep the connection.
KEEPALIVE_S = 15.0


class SubmitRequest(BaseModel):
    """Body of POST /jobs. The kind validates its own params on the server (400 with its message)."""

    model_config = ConfigDict(extra="forbid")

    kind: Annotated[StrictStr, Field(min_length=1)]
    params: dict[str, Any] = Field(default_factory=dict)


def _job_error(error: grpc.aio.AioRpcError) -> HTTPException:
    if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
        return HTTPException(status_code=409, detail=error.details() or "conflict")
    return http_error(error)


async def _call(request: Request, rpc: str, message: Any) -> Any:
    """One unary JobService call (`rpc` is its method name) with the API key and a deadline."""
    client = server_of(request)
    try:
        return await getattr(client.jobs, rpc)(message, timeout=_CALL_TIMEOUT_S, metadata=client.metadata)
    except grpc.aio.AioRpcError as error:
        raise _job_error(error) from None


def job_json(message: jobs_pb2.Job) -> dict[str, Any]:
    return dataclasses.asdict(job_convert.job_from_proto(message))


def _split(values: list[str]) -> list[str]:
    """A repeated query parameter whose values may also be comma-separated: `?state=a&state=b,c`."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def _states(values: list[str]) -> list[jobs_pb2.JobState]:
    try:
        return [job_convert.state_to_proto(job_convert.parse_state(v)) for v in _split(values)]
    except InvalidInput as error:
        raise HTTPException(status_code=400, detail=str(error)) from None


@router.post("", status_code=201)
async def submit_job(request: Request, body: SubmitRequest) -> dict[str, Any]:
    message = jobs_pb2.SubmitJobRequest(kind=body.kind, params=job_convert.to_struct(body.params))
    return job_json((await _call(request, "SubmitJob", message)).job)


@router.get("")
async def list_jobs(
    request: Request,
    state: Annotated[list[str], Query(default_factory=list, description="queued, running, ...")],
    kind: Annotated[list[str], Query(default_factory=list, description="job kinds")],
    page_size: Annotated[int, Query(ge=1, le=500)] = 50,
    page_token: str = "",
) -> dict[str, Any]:
    message = jobs_pb2.ListJobsRequest(
        states=_states(state), kinds=_split(kind), page_size=page_size, page_token=page_token
    )
    reply = await _call(request, "ListJobs", message)
    return {"jobs": [job_json(j) for j in reply.jobs], "next_page_token": reply.next_page_token}


@router.get("/kinds")
async def list_job_kinds(request: Request) -> dict[str, list[str]]:
    reply = await _call(request, "ListJobKinds", jobs_pb2.ListJobKindsRequest())
    return {"kinds": list(reply.kinds)}


@router.get("/{job_id}")
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    return job_json((await _call(request, "GetJob", jobs_pb2.GetJobRequest(job_id=job_id))).job)


# POST /jobs/{id}/cancel | pause | resume -> the job after the action.
_ACTIONS: dict[str, tuple[str, Callable[..., Any]]] = {
    "cancel": ("CancelJob", jobs_pb2.CancelJobRequest),
    "pause": ("PauseJob", jobs_pb2.PauseJobRequest),
    "resume": ("ResumeJob", jobs_pb2.ResumeJobRequest),
}


@router.post("/{job_id}/{action}")
async def act_on_job(
    request: Request, job_id: str, action: Literal["cancel", "pause", "resume"]
) -> dict[str, Any]:
    rpc, message_type = _ACTIONS[action]
    return job_json((await _call(request, rpc, message_type(job_id=job_id))).job)


@router.get("/{job_id}/results")
async def job_results(
    request: Request,
    job_id: str,
    page_size: Annotated[int, Query(ge=1, le=1000)] = 100,
    page_token: str = "",
) -> dict[str, Any]:
    message = jobs_pb2.ListJobResultsRequest(job_id=job_id, page_size=page_size, page_token=page_token)
    reply = await _call(request, "ListJobResults", message)
    return {
        "items": [dataclasses.asdict(job_convert.item_from_proto(i, job_id)) for i in reply.items],
        "next_page_token": reply.next_page_token,
    }


# ------------------------------------------------------------------------------------------ events


@router.get("/{job_id}/events", response_class=StreamingResponse)
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    """`event: log` per job event, then `event: job` with the job, for every update of the watch;
    the stream ends after the update that shows the job finished, paused or interrupted. An unknown
    job is a plain 404 (the first update is awaited before the stream starts)."""
    client = server_of(request)
    # No deadline: a watch lasts as long as the job. The HTTP client leaving cancels it.
    call = client.jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), metadata=client.metadata)
    try:
        first = await call.read()
    except grpc.aio.AioRpcError as error:
        raise _job_error(error) from None
    except BaseException:
        call.cancel()
        raise
    if first is grpc.aio.EOF:
        raise HTTPException(status_code=502, detail="the server ended the watch without an update")
    return StreamingResponse(
        _sse(request, call, first),
        media_type="text/event-stream",
        # No caching, and no buffering by nginx: each event must reach the client when sent.
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def sse_frame(event: str, data: Any) -> str:
    """One Server-Sent Event: a name and one line of JSON."""
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def _update_frames(update: jobs_pb2.WatchJobResponse) -> str:
    # Log lines before the job: a client that stops at the final state has seen every line.
    logs = "".join(
        sse_frame("log", dataclasses.asdict(job_convert.event_from_proto(e))) for e in update.events
    )
    return logs + sse_frame("job", job_json(update.job))


def _ignore_outcome(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


async def _sse(request: Request, call: Any, first: jobs_pb2.WatchJobResponse) -> AsyncIterator[str]:
    """The frames of the watch. The next read races the client's disconnect, so a client that goes
    away cancels the gRPC watch at once (not at the next write), and an idle watch sends keepalives."""
    left = asyncio.ensure_future(disconnected(request))
    try:
        yield _update_frames(first)
        while True:
            read = asyncio.ensure_future(call.read())
            read.add_done_callback(_ignore_outcome)
            while not read.done():
                await asyncio.wait((read, left), timeout=KEEPALIVE_S, return_when=asyncio.FIRST_COMPLETED)
                if left.done():
                    return
                if not read.done():
                    yield ": keepalive\n\n"
            try:
                update = read.result()
            except grpc.aio.AioRpcError as error:
                failure = _job_error(error)
                yield sse_frame("error", {"status": failure.status_code, "detail": failure.detail})
                return
            if update is grpc.aio.EOF:
                return
            yield _update_frames(update)
    finally:
        left.cancel()
        call.cancel()
