"""The WebSocket `/ws/queue` (contract B.2): `ping`, `get_status` and `cancel_job` from the client;
`queue_status` on connect and on request, a `queue_update` broadcast on every event of a gateway
job (submitted, started, progress, completed, failed, cancelled) and `cancel_response`.

Events come from one poll of our jobs of the gateway's kinds (at most every `POLL_S`, only while
a client is connected) compared with what the previous poll saw; jobs submitted through this
adapter are followed until they finish even when they finish between two polls. Each client has
a bounded outbox written by its own sender task: a client that does not read stops nobody else,
and when its outbox is full it is disconnected (1013, "try again later"); the plugin reconnects
and gets a fresh `queue_status`.

API key: when STASH_VISION_API_KEY is set, a socket that presents it (`?api_key=`, `X-API-Key` or
`Authorization: Bearer`) is full; the plugin cannot send it, so its socket is read-only: status and
events without entity names, titles or results, and `cancel_job` refused."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

import grpc
from fastapi import APIRouter, WebSocket, WebSocketDisconnect
from starlette.requests import HTTPConnection

from stash_vision.adapter.server_client import ServerClient
from stash_vision.server.jobs.kinds.stash_ai_results import KIND_OF_TYPE, utc_iso
from stash_vision.server.jobs.model import Job, JobState
from stash_vision.settings import Settings
from stash_vision.v1 import jobs_pb2

from . import gateway_jobs

log = logging.getLogger("stash_vision.adapter.stash_ai")
router = APIRouter()

POLL_S = 0.5
OUTBOX_MESSAGES = 100
STATUS_CACHE_S = 0.5
CLOSE_TIMEOUT_S = 2.0
TRY_AGAIN_LATER = 1013
# Withheld from a socket without the API key (when one is set): what names Stash content.
_PRIVATE = frozenset({"entity_id", "entity_name", "job_name", "title", "result", "detailed_results"})


def redacted(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: redacted(v) for k, v in value.items() if k not in _PRIVATE}
    if isinstance(value, list):
        return [redacted(v) for v in value]
    return value


class Subscriber:
    def __init__(self, socket: WebSocket, full_access: bool) -> None:
        self.socket = socket
        self.full_access = full_access
        self.outbox: asyncio.Queue[str] = asyncio.Queue(maxsize=OUTBOX_MESSAGES)
        self.evicted = asyncio.Event()

    def offer(self, message: dict[str, Any]) -> None:
        """Queues a message; a full outbox evicts the client instead of growing or blocking."""
        if self.evicted.is_set():
            return
        try:
            self.outbox.put_nowait(json.dumps(message if self.full_access else redacted(message)))
        except asyncio.QueueFull:
            log.warning(
                "a /stash-ai/ws/queue client read nothing for %d messages: disconnected", OUTBOX_MESSAGES
            )
            self.evicted.set()

    async def send_loop(self) -> None:
        while True:
            await self.socket.send_text(await self.outbox.get())


class QueueHub:
    """One per app: the connected clients and the poll that turns job changes into events."""

    def __init__(self, client: ServerClient) -> None:
        self.client = client
        self.subscribers: set[Subscriber] = set()
        self._seen: dict[str, Job] = {}  # active (or just submitted) jobs as last seen
        self._poller: asyncio.Task[None] | None = None
        self._status: tuple[float, dict[str, Any]] | None = None
        self._status_lock = asyncio.Lock()

    # -- clients -------------------------------------------------------------------------------

    def attach(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)
        if self._poller is None or self._poller.done():
            self._seen = {}
            self._poller = asyncio.create_task(self._poll(), name="stash-ai-queue-poll")

    def detach(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        if not self.subscribers and self._poller is not None:
            self._poller.cancel()
            self._poller = None

    async def queue_status(self) -> dict[str, Any]:
        """The queue summary, shared by every request within STATUS_CACHE_S (a client sending
        get_status in a loop costs the server two list calls per half second, not per message)."""
        async with self._status_lock:  # callers arriving together share one read
            now = time.monotonic()
            if self._status is None or now - self._status[0] > STATUS_CACHE_S:
                self._status = (now, await gateway_jobs.queue_status(self.client))
            return self._status[1]

    def broadcast(self, message: dict[str, Any]) -> None:
        for subscriber in list(self.subscribers):
            subscriber.offer(message)

    # -- events ----------------------------------------------------------------------------------

    def submitted(self, job: Job) -> None:
        """A job submitted through this adapter: announced now, and followed to its end."""
        if not self.subscribers:
            return
        self._seen[job.id] = job
        self._status = None
        self.broadcast(
            _update("job_submitted", job, {"job_type": gateway_jobs.job_type(job), "submitted_at": utc_iso()})
        )

    async def _poll(self) -> None:
        first = True
        while True:
            try:
                await self._poll_once(announce=not first)
                first = False
            except grpc.aio.AioRpcError as error:
                log.debug("queue poll: %s", error.code().name)
            except Exception:
                log.exception("queue poll failed")
            await asyncio.sleep(POLL_S)

    async def _poll_once(self, announce: bool) -> None:
        followed = dict(self._seen)
        active = {j.id: j for j in await gateway_jobs.list_jobs(self.client, gateway_jobs.ACTIVE_STATES, 100)}
        gone = [job_id for job_id in followed if job_id not in active]
        finished = await asyncio.gather(*(gateway_jobs.fetch_job(self.client, job_id) for job_id in gone))
        now = {**active, **{job.id: job for job in finished if job is not None}}
        events: list[dict[str, Any]] = []
        if announce:
            for job in now.values():
                events.extend(await self._changes(followed.get(job.id), job))
        # Jobs submitted while this poll ran are followed from the next one.
        submitted = {k: v for k, v in self._seen.items() if k not in followed and k not in now}
        self._seen = {**active, **submitted}
        if events:
            self._status = None
            status = await self.queue_status()
            for event in events:
                self.broadcast({**event, "queue_status": status})

    async def _changes(self, before: Job | None, job: Job) -> list[dict[str, Any]]:
        kind = gateway_jobs.job_type(job)
        events: list[dict[str, Any]] = []
        if before is None:
            data = {"job_type": kind, "submitted_at": utc_iso(job.created_at)}
            events.append(_update("job_submitted", job, data))
        if job.started_at is not None and (before is None or before.started_at is None):
            events.append(
                _update("job_started", job, {"job_type": kind, "started_at": utc_iso(job.started_at)})
            )
        moved = before is None or (before.progress.done, before.message) != (job.progress.done, job.message)
        if job.state is JobState.RUNNING and moved:
            events.append(_update("job_progress", job, _progress(job)))
        if job.state.finished:
            events.extend(await self._end(job, kind))
        return events

    async def _end(self, job: Job, kind: str) -> list[dict[str, Any]]:
        result = await gateway_jobs.outcome(self.client, job)
        at = utc_iso(job.finished_at)
        took = gateway_jobs.processing_time(job)
        events: list[dict[str, Any]] = []
        data: dict[str, Any]
        if kind == "gallery" and job.state is JobState.SUCCEEDED:
            events.append(_update("job_progress", job, _progress(job, "Gallery processing completed!")))
        if result.status == "completed":
            events.append(_update("job_completed", job, _completed(kind, at, took, result.result)))
        elif result.status == "cancelled":
            data = {"job_type": kind, "cancelled_at": at, "reason": result.error}
            events.append(_update("job_cancelled", job, data))
        else:
            data = {"job_type": kind, "failed_at": at, "error": result.error, "processing_time": took}
            events.append(_update("job_failed", job, data))
        return events


def _update(event: str, job: Job, data: dict[str, Any]) -> dict[str, Any]:
    return {"type": "queue_update", "event": event, "job_id": job.id, "data": data}


def _progress(job: Job, message: str = "") -> dict[str, Any]:
    """`job_progress` data: items done of total; a gallery counts images, a scene says which
    frames it reads (the job's message)."""
    done, total = job.progress.done, job.progress.total
    if not message:
        gallery = job.kind == KIND_OF_TYPE["gallery"]
        message = f"Processed {done}/{total} images" if gallery else job.message
    return {
        "current": done,
        "total": total,
        "progress_percentage": round(100.0 * done / total, 1) if total else 0.0,
        "message": message,
    }


def _completed(kind: str, at: str, took: float | None, result: dict[str, Any] | None) -> dict[str, Any]:
    confidences = gateway_jobs.performers_found(result)
    success = bool(result and result.get("success"))
    return {
        "job_type": kind,
        "completed_at": at,
        "processing_time": took,
        "evaluation_results": {
            "overall_result": "passed" if success else "failed",
            "tests_passed": 1 if success else 0,
            "tests_failed": 0 if success else 1,
            "tests_error": 0,
            "performers_found_total": len(confidences),
            "confidence_scores_summary": {
                "max": max(confidences, default=None),
                "min": min(confidences, default=None),
                "average": round(sum(confidences) / len(confidences), 4) if confidences else None,
            },
            "evaluation_available": True,
        },
    }


# ------------------------------------------------------------------------------------------ socket


def hub_of(connection: HTTPConnection) -> QueueHub:
    """One per app (the submit routes announce their jobs to it), made on first use."""
    state = connection.app.state
    if getattr(state, "stash_ai_hub", None) is None:
        state.stash_ai_hub = QueueHub(state.server)
    hub: QueueHub = state.stash_ai_hub
    return hub


def has_key(socket: WebSocket, settings: Settings) -> bool:
    if not settings.api_key:
        return True
    authorization = socket.headers.get("authorization", "")
    presented = (
        socket.query_params.get("api_key")
        or socket.headers.get("x-api-key")
        or authorization.removeprefix("Bearer ").removeprefix("bearer ")
    )
    return hmac.compare_digest(presented.encode(), settings.api_key.encode())


async def _cancel(hub: QueueHub, subscriber: Subscriber, job_id: Any) -> dict[str, Any]:
    reply: dict[str, Any] = {"type": "cancel_response", "job_id": job_id}
    if not job_id or not isinstance(job_id, str):
        return {"type": "cancel_response", "success": False, "message": "No job_id provided"}
    if not subscriber.full_access:
        message = "Failed to cancel job: cancelling needs the API key (connect with ?api_key=<key>)"
        return {**reply, "success": False, "message": message}
    try:
        job = await gateway_jobs.fetch_job(hub.client, job_id)
        if job is None:
            return {**reply, "success": False, "message": f"Failed to cancel job: job {job_id} not found"}
        await hub.client.jobs.CancelJob(
            jobs_pb2.CancelJobRequest(job_id=job_id),
            timeout=gateway_jobs.CALL_TIMEOUT_S,
            metadata=hub.client.metadata,
        )
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.FAILED_PRECONDITION:
            return {**reply, "success": False, "message": f"Failed to cancel job: {error.details()}"}
        return {
            **reply,
            "success": False,
            "message": f"Error cancelling job: {error.details() or error.code().name}",
        }
    return {**reply, "success": True, "message": "Job cancelled successfully"}


def _command(text: str) -> tuple[str, dict[str, Any]]:
    """Plain text (`ping`) or a JSON object whose `type` is the command."""
    stripped = text.strip()
    if stripped.startswith("{"):
        with contextlib.suppress(ValueError):
            message = json.loads(stripped)
            if isinstance(message, dict):
                return str(message.get("type", "")), message
    return stripped, {}


async def _status_message(hub: QueueHub) -> dict[str, Any]:
    try:
        return {"type": "queue_status", "data": await hub.queue_status()}
    except grpc.aio.AioRpcError as error:
        detail = f"the stash-vision server is unavailable ({error.code().name})"
        return {"type": "queue_status", "data": {"active_jobs": [], "active_jobs_count": 0, "error": detail}}


async def _receive_loop(hub: QueueHub, subscriber: Subscriber) -> None:
    handlers: dict[str, Callable[[dict[str, Any]], Any]] = {
        "ping": lambda _: {"type": "pong"},
        "get_status": lambda _: _status_message(hub),
        "cancel_job": lambda m: _cancel(hub, subscriber, m.get("job_id")),
    }
    while True:
        received = await subscriber.socket.receive()
        if received["type"] == "websocket.disconnect":
            return
        text = received.get("text") or (received.get("bytes") or b"").decode("utf-8", "replace")
        command, message = _command(text)
        handler = handlers.get(command)
        if handler is None:
            subscriber.offer(
                {
                    "type": "error",
                    "message": f"unknown command {command[:40]!r}; use ping, get_status or cancel_job",
                }
            )
            continue
        reply = handler(message)
        subscriber.offer(await reply if asyncio.iscoroutine(reply) else reply)


@router.websocket("/ws/queue")
async def queue_socket(socket: WebSocket) -> None:
    hub = hub_of(socket)
    await socket.accept()
    subscriber = Subscriber(socket, has_key(socket, socket.app.state.settings))
    hub.attach(subscriber)
    tasks = [
        asyncio.create_task(subscriber.send_loop()),
        asyncio.create_task(_receive_loop(hub, subscriber)),
        asyncio.create_task(subscriber.evicted.wait()),
    ]
    try:
        subscriber.offer(await _status_message(hub))
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            if not task.cancelled() and isinstance(task.exception(), Exception):
                error = task.exception()
                if not isinstance(error, WebSocketDisconnect | RuntimeError):
                    log.warning("/stash-ai/ws/queue client ended: %r", error)
    finally:
        hub.detach(subscriber)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if subscriber.evicted.is_set():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    socket.close(TRY_AGAIN_LATER, "too many unread messages"), CLOSE_TIMEOUT_S
                )
