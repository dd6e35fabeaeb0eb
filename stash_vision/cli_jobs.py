"""`stash-vision jobs ...`: submit, list, show, cancel, pause, resume, watch library-scale jobs and
page through their results. Everything goes through the running server's JobService (gRPC), as
the adapter's /jobs routes do, so the CLI never touches the job database another process owns.
Live progress rendering lives in cli_jobs_progress."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import sys
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar

import grpc

from stash_vision.cli_jobs_progress import ProgressView, clock, describe_progress, exit_code
from stash_vision.server.api import job_convert
from stash_vision.server.errors import InvalidInput
from stash_vision.server.jobs.api import JobUpdate
from stash_vision.server.jobs.model import ItemState, Job
from stash_vision.server_channel import api_key_metadata, server_channel
from stash_vision.settings import Settings
from stash_vision.v1 import jobs_pb2, jobs_pb2_grpc

_CALL_TIMEOUT_S = 30.0
_EVENTS_SHOWN = 10
# Kinds whose positional ROOT is one folder under another name than params.roots.
_ONE_FOLDER_KINDS = {"build-face-index": "folder"}

R = TypeVar("R")


class ServerNotRunning(Exception):
    """Nothing answers at the server's address (as opposed to a server that answers UNAVAILABLE)."""


class JobsClient:
    """JobService stub on one channel, with the API key on every call."""

    def __init__(self, settings: Settings) -> None:
        self.target = settings.server_target
        self.channel = server_channel(settings)
        self.stub = jobs_pb2_grpc.JobServiceStub(self.channel)
        self.metadata = api_key_metadata(settings)

    async def call(self, method: Callable[..., Awaitable[R]], request: Any) -> R:
        """One unary call; a server that is not there becomes ServerNotRunning."""
        try:
            return await method(request, timeout=_CALL_TIMEOUT_S, metadata=self.metadata)
        except grpc.aio.AioRpcError as error:
            raise self._not_running(error) or error from None

    async def watch(self, job_id: str) -> AsyncGenerator[JobUpdate]:
        call = self.stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id), metadata=self.metadata)
        try:
            async for message in call:
                yield job_convert.update_from_proto(message)
        except grpc.aio.AioRpcError as error:
            raise self._not_running(error) or error from None
        finally:
            call.cancel()

    def _not_running(self, error: grpc.aio.AioRpcError) -> ServerNotRunning | None:
        # UNAVAILABLE is also what a running server answers when another process holds the job
        # lock; only a channel that never connected means nothing is listening.
        state = self.channel.get_state(try_to_connect=False)
        if error.code() == grpc.StatusCode.UNAVAILABLE and state != grpc.ChannelConnectivity.READY:
            return ServerNotRunning(
                f"the server at {self.target} is not running; start it with `stash-vision serve`"
            )
        return None


# ------------------------------------------------------------------------------------------ arguments


def _param(text: str) -> tuple[str, Any]:
    """`key=JSON`; a value that is not JSON is taken as a string (`--param profile=default`)."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


def _timestamp(text: str) -> float:
    """Unix seconds, or an ISO 8601 date/time (local time when it names no zone)."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither an ISO date/time (2024-05-01, 2024-05-01T18:30) nor Unix seconds"
        ) from None


def _state(text: str) -> str:
    try:
        return job_convert.parse_state(text).value
    except InvalidInput as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def build_params(args: argparse.Namespace) -> dict[str, Any]:
    """The submit options as the kind's params; --param adds (or overrides) anything else."""
    params: dict[str, Any] = {}
    roots = [os.path.abspath(r) for r in args.roots]
    if args.kind in _ONE_FOLDER_KINDS and len(roots) == 1:
        params[_ONE_FOLDER_KINDS[args.kind]] = roots[0]
    elif roots:
        params["roots"] = roots
    if args.paths:
        params["paths"] = [os.path.abspath(p) for p in args.paths]
    if args.include:
        params["include"] = args.include
    if args.exclude:
        params["exclude"] = args.exclude
    if args.modified_since is not None:
        params["modified_since"] = args.modified_since
    if args.write_sidecars:
        params["write_sidecars"] = True
    if args.frame_interval is not None:
        params["frame_interval"] = args.frame_interval
    params.update(dict(args.params))
    return params


def add_parser(commands: Any) -> None:
    """Adds `jobs` and its sub-commands to the CLI's sub-parsers."""
    jobs = commands.add_parser(
        "jobs", help="library-scale jobs on the running server (tag or identify a library, ...)"
    ).add_subparsers(dest="jobs_command", required=True)
    submit = jobs.add_parser("submit", help="queue a job; --follow to watch it to the end")
    submit.add_argument(
        "kind", metavar="KIND", help="job kind: tag-library, identify-library, build-face-index, ..."
    )
    submit.add_argument(
        "roots",
        nargs="*",
        metavar="ROOT",
        help="folders to work through (params.roots; params.folder of build-face-index)",
    )
    submit.add_argument(
        "--path", dest="paths", action="append", default=[], metavar="P", help="a file (params.paths)"
    )
    submit.add_argument("--include", action="append", default=[], metavar="GLOB", help="only matching files")
    submit.add_argument("--exclude", action="append", default=[], metavar="GLOB", help="skip matching files")
    submit.add_argument(
        "--modified-since", type=_timestamp, metavar="WHEN", help="ISO date/time or Unix seconds"
    )
    submit.add_argument("--write-sidecars", action="store_true", help="write results beside the media")
    submit.add_argument("--frame-interval", type=float, metavar="S", help="seconds between video frames")
    submit.add_argument(
        "--param",
        dest="params",
        type=_param,
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="any other parameter of the kind; a value that is not JSON is a string",
    )
    submit.add_argument("--follow", action="store_true", help="watch it; exit 0 only if it succeeds")
    listing = jobs.add_parser("list", help="jobs, newest first")
    listing.add_argument("--state", action="append", type=_state, default=[], help="repeatable")
    listing.add_argument("--kind", action="append", default=[], help="repeatable")
    listing.add_argument("--limit", type=int, default=50, help="at most this many (default 50)")
    show = jobs.add_parser("show", help="a job, its error counts and its last events")
    show.add_argument("job_id")
    for action in ("cancel", "pause", "resume"):
        jobs.add_parser(action, help=f"{action} a job").add_argument("job_id")
    watch = jobs.add_parser(
        "watch", help="live progress until the job ends (exit 0 succeeded, 1 failed or cancelled, 3 paused)"
    )
    watch.add_argument("job_id")
    results = jobs.add_parser("results", help="a job's finished items in listing order")
    results.add_argument("job_id")
    results.add_argument("--failed", action="store_true", help="only the failed items")
    results.add_argument("--json", action="store_true", help="one JSON object per line, results included")


# ------------------------------------------------------------------------------------------ commands


def _job(message: jobs_pb2.Job) -> Job:
    return job_convert.job_from_proto(message)


async def _follow(client: JobsClient, job_id: str) -> int:
    view = ProgressView(sys.stdout)
    last: Job | None = None
    try:
        async for update in client.watch(job_id):
            view.update(update)
            last = update.job
    except asyncio.CancelledError:
        view.close()
        print(f"stopped watching; the job goes on (stash-vision jobs watch {job_id})", file=sys.stderr)
        raise
    view.close()
    if last is None:
        print(f"error: the server ended the watch of {job_id} without an update", file=sys.stderr)
        return 1
    return exit_code(last)


async def _submit(client: JobsClient, args: argparse.Namespace) -> int:
    request = jobs_pb2.SubmitJobRequest(kind=args.kind, params=job_convert.to_struct(build_params(args)))
    job = _job((await client.call(client.stub.SubmitJob, request)).job)
    print(f"job {job.id} ({job.kind}): {job.state}")
    return await _follow(client, job.id) if args.follow else 0


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[column]) for row in rows) + 2 for column in range(len(rows[0]) - 1)]
    for row in rows:
        print("".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[-1])


async def _list(client: JobsClient, args: argparse.Namespace) -> int:
    states = [job_convert.state_to_proto(job_convert.parse_state(s)) for s in args.state]
    jobs: list[Job] = []
    token = ""
    while len(jobs) < args.limit:
        request = jobs_pb2.ListJobsRequest(
            states=states, kinds=args.kind, page_size=min(args.limit - len(jobs), 500), page_token=token
        )
        page = await client.call(client.stub.ListJobs, request)
        jobs.extend(_job(j) for j in page.jobs)
        token = page.next_page_token
        if not token:
            break
    if not jobs:
        print("no jobs")
        return 0
    rows = [("id", "kind", "state", "progress", "created", "message")]
    rows += [
        (
            j.id,
            j.kind,
            j.state.value,
            describe_progress(j.progress),
            clock(j.created_at),
            j.error or j.message,
        )
        for j in jobs
    ]
    _table(rows)
    if token:
        print(f"(more: --limit {args.limit * 2})")
    return 0


async def _recent_events(client: JobsClient, job_id: str) -> list[str]:
    """The first update of a watch carries the job's latest events; the watch is then dropped."""
    updates = client.watch(job_id)
    try:
        async for update in updates:
            return [f"{clock(e.at)}  {e.level:<7} {e.message}" for e in update.events[-_EVENTS_SHOWN:]]
    finally:
        await updates.aclose()
    return []


async def _show(client: JobsClient, args: argparse.Namespace) -> int:
    job = _job((await client.call(client.stub.GetJob, jobs_pb2.GetJobRequest(job_id=args.job_id))).job)
    summary = dict(job.summary)
    errors: dict[str, Any] = summary.pop("errors_by_kind", {}) or {}
    lines = [
        ("params", json.dumps(job.params)),
        ("created", clock(job.created_at)),
        ("started", clock(job.started_at)),
        ("finished", clock(job.finished_at)),
        ("progress", describe_progress(job.progress)),
        ("message", job.message),
        ("error", job.error),
        ("errors", ", ".join(f"{kind} {n}" for kind, n in sorted(errors.items(), key=lambda kv: -kv[1]))),
        ("summary", json.dumps(summary) if summary else ""),
    ]
    print(f"job {job.id} ({job.kind}): {job.state}")
    for label, value in lines:
        if value:
            print(f"  {label + ':':<10} {value}")
    events = await _recent_events(client, job.id)
    if events:
        print("last events:")
        for line in events:
            print(f"  {line}")
    return 0


async def _action(client: JobsClient, args: argparse.Namespace) -> int:
    request_type, method = {
        "cancel": (jobs_pb2.CancelJobRequest, client.stub.CancelJob),
        "pause": (jobs_pb2.PauseJobRequest, client.stub.PauseJob),
        "resume": (jobs_pb2.ResumeJobRequest, client.stub.ResumeJob),
    }[args.jobs_command]
    job = _job((await client.call(method, request_type(job_id=args.job_id))).job)
    print(f"job {job.id} ({job.kind}): {job.state}")
    return 0


async def _watch(client: JobsClient, args: argparse.Namespace) -> int:
    return await _follow(client, args.job_id)


async def _results(client: JobsClient, args: argparse.Namespace) -> int:
    token = ""
    while True:
        request = jobs_pb2.ListJobResultsRequest(job_id=args.job_id, page_token=token)
        page = await client.call(client.stub.ListJobResults, request)
        for message in page.items:
            item = job_convert.item_from_proto(message, args.job_id)
            if args.failed and item.state is not ItemState.FAILED:
                continue
            if args.json:
                print(json.dumps(dataclasses.asdict(item)))
            else:
                problem = f"  {item.error_kind}: {item.error}" if item.error else ""
                print(f"{item.seq:>7}  {item.state.value:<7} {item.item}{problem}")
        token = page.next_page_token
        if not token:
            return 0


_COMMANDS: dict[str, Callable[[JobsClient, argparse.Namespace], Awaitable[int]]] = {
    "submit": _submit,
    "list": _list,
    "show": _show,
    "cancel": _action,
    "pause": _action,
    "resume": _action,
    "watch": _watch,
    "results": _results,
}


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    client = JobsClient(settings)
    try:
        return await _COMMANDS[args.jobs_command](client, args)
    except ServerNotRunning as error:
        print(str(error), file=sys.stderr)
    except grpc.aio.AioRpcError as error:
        print(f"error: {error.details() or error.code().name}", file=sys.stderr)
    finally:
        await client.channel.close()
    return 1


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of `stash-vision jobs ...`: the exit status."""
    try:
        return asyncio.run(_run(settings, args))
    except KeyboardInterrupt:
        return 130
