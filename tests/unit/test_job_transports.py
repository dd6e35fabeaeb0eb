"""Unit tests of the gRPC JobService (server/api/job_servicer.py) over the fake `Jobs` of
tests/fake_jobs.py, through a real grpc.aio server on a free loopback port: every RPC's round trip
(params with their integers intact, every job field), the domain errors as status codes, a watch
that ends with its job and one the client cancels. Each test runs in its own asyncio.run (no
pytest-asyncio)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest

from stash_vision.server.api import job_convert
from stash_vision.server.errors import JobsUnavailable, StorageUnavailable
from stash_vision.server.jobs.model import ItemRecord, ItemState, JobState
from stash_vision.v1 import jobs_pb2, jobs_pb2_grpc
from tests.fake_jobs import FakeJobs, Step, full_job, job_server, progress

TEST_TIMEOUT_S = 20.0
GrpcScenario = Callable[[jobs_pb2_grpc.JobServiceStub], Awaitable[None]]


def run_grpc(fake: FakeJobs, scenario: GrpcScenario) -> None:
    async def main() -> None:
        async with job_server(fake) as port, grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await scenario(jobs_pb2_grpc.JobServiceStub(channel))

    asyncio.run(asyncio.wait_for(main(), TEST_TIMEOUT_S))


async def rpc_error(call: Awaitable[Any]) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await call
    return caught.value


def test_submit_round_trips_params_with_integers_intact() -> None:
    fake = FakeJobs()
    params = {"roots": ["/media/a"], "batch": 8, "ratio": 0.5, "nested": {"list": [1, True, None]}}

    async def scenario(stub: jobs_pb2_grpc.JobServiceStub) -> None:
        reply = await stub.SubmitJob(
            jobs_pb2.SubmitJobRequest(kind="tag-library", params=job_convert.to_struct(params))
        )
        job = job_convert.job_from_proto(reply.job)
        assert (job.kind, job.state, job.params) == ("tag-library", JobState.QUEUED, params)
        assert reply.job.state == jobs_pb2.JOB_STATE_QUEUED
        assert not reply.job.HasField("started_at") and not reply.job.progress.HasField("eta_seconds")

    run_grpc(fake, scenario)
    assert fake.calls == [("submit", ("tag-library", params))]
    assert type(fake.calls[0][1][1]["batch"]) is int


@pytest.mark.parametrize(
    ("kind", "failure", "code", "detail"),
    [
        ("paint-library", None, grpc.StatusCode.INVALID_ARGUMENT, "unknown job kind 'paint-library'"),
        ("", None, grpc.StatusCode.INVALID_ARGUMENT, "kind is required (one of build-face-index"),
        ("tag-library", JobsUnavailable("another process runs jobs"), grpc.StatusCode.UNAVAILABLE, "another"),
        ("tag-library", StorageUnavailable("disk full"), grpc.StatusCode.UNAVAILABLE, "disk full"),
        ("tag-library", RuntimeError("boom"), grpc.StatusCode.INTERNAL, "internal error (incident"),
    ],
)
def test_submit_errors_map_to_codes(
    kind: str, failure: BaseException | None, code: grpc.StatusCode, detail: str
) -> None:
    fake = FakeJobs()
    fake.fail_with = failure

    async def scenario(stub: jobs_pb2_grpc.JobServiceStub) -> None:
        error = await rpc_error(stub.SubmitJob(jobs_pb2.SubmitJobRequest(kind=kind)))
        assert error.code() == code
        assert detail in (error.details() or "")

    run_grpc(fake, scenario)


def test_get_job_carries_every_field() -> None:
    fake = FakeJobs()
    job_id = full_job(fake)

    async def scenario(stub: jobs_pb2_grpc.JobServiceStub) -> None:
        reply = await stub.GetJob(jobs_pb2.GetJobRequest(job_id=job_id))
        assert job_convert.job_from_proto(reply.job) == fake.jobs[job_id]
        assert reply.job.state == jobs_pb2.JOB_STATE_SUCCEEDED
        missing = await rpc_error(stub.GetJob(jobs_pb2.GetJobRequest(job_id="nope")))
        assert (missing.code(), missing.details()) == (grpc.StatusCode.NOT_FOUND, "no job 'nope'")
        empty = await rpc_error(stub.GetJob(jobs_pb2.GetJobRequest()))
        assert (empty.code(), empty.details()) == (grpc.StatusCode.INVALID_ARGUMENT, "job_id is required")

    run_grpc(fake, scenario)


def test_list_jobs_filters_pages_and_validates() -> None:
    fake = FakeJobs()
    first = fake.add("tag-library", JobState.RUNNING).id
    fake.add("identify-library", JobState.RUNNING)
    third = fake.add("tag-library", JobState.QUEUED).id
    fake.add("tag-library", JobState.SUCCEEDED)

    async def scenario(stub: jobs_pb2_grpc.JobServiceStub) -> None:
        request = jobs_pb2.ListJobsRequest(
            states=[jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_QUEUED], kinds=["tag-library"], page_size=1
        )
        page = await stub.ListJobs(request)
        assert [j.id for j in page.jobs] == [third] and page.next_page_token == "1"
        request.page_token = page.next_page_token
        page = await stub.ListJobs(request)
        assert [j.id for j in page.jobs] == [first] and page.next_page_token == ""
        everything = await stub.ListJobs(jobs_pb2.ListJobsRequest())
        assert len(everything.jobs) == 4
        unspecified = await rpc_error(stub.ListJobs(jobs_pb2.ListJobsRequest(states=[0])))
        assert unspecified.code() == grpc.StatusCode.INVALID_ARGUMENT
        bad_token = await rpc_error(stub.ListJobs(jobs_pb2.ListJobsRequest(page_token="x")))
        assert bad_token.code() == grpc.StatusCode.INVALID_ARGUMENT

    run_grpc(fake, scenario)
    listed = [args for method, args in fake.calls if method == "list"]
    assert listed[0] == ([JobState.RUNNING, JobState.QUEUED], ["tag-library"], 1, "")
    assert listed[2] == ([], [], 50, "")  # page_size 0: the protocol's default


def test_cancel_pause_resume_and_their_conflicts() -> None:
    fake = FakeJobs()
    job_id = fake.add(state=JobState.RUNNING).id
    done = fake.add(state=JobState.SUCCEEDED).id

    async def scenario(stub: jobs_pb2_grpc.JobServiceStub) -> None:
        paused = await stub.PauseJob(jobs_pb2.PauseJobRequest(job_id=job_id))
        assert paused.job.state == jobs_pb2.JOB_STATE_PAUSED
        resumed = await stub.ResumeJob(jobs_pb2.ResumeJobRequest(job_id=job_id))
        assert resumed.job.state == jobs_pb2.JOB_STATE_QUEUED
        again = await rpc_error(stub.ResumeJob(jobs_pb2.ResumeJobRequest(job_id=job_id)))
        assert (again.code(), again.details()) == (
            grpc.StatusCode.FAILED_PRECONDITION,
            f"cannot resume job {job_id}: it is queued",
        )
        cancelled = await stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=job_id))
        assert cancelled.job.state == jobs_pb2.JOB_STATE_CANCELLED
        finished = await rpc_error(stub.CancelJob(jobs_pb2.CancelJobRequest(job_id=done)))
        assert finished.code() == grpc.StatusCode.FAILED_PRECONDITION
        unknown = await rpc_error(stub.PauseJob(jobs_pb2.PauseJobRequest(job_id="nope")))
        assert unknown.code() == grpc.StatusCode.NOT_FOUND

    run_grpc(fake, scenario)


def test_watch_streams_updates_and_ends_with_the_job() -> None:
    fake = FakeJobs()
    job_id = fake.add(state=JobState.QUEUED).id
    fake.log(job_id, "listing /media")
    fake.scripts[job_id] = [
        Step({"state": JobState.RUNNING, "progress": progress(1, 3)}, ("started",)),
        Step({"progress": progress(3, 3, failed=1, listing_complete=True)}, ("a.mp4: MediaNotFound",)),
        Step({"state": JobState.SUCCEEDED, "finished_at": 1_700_000_200.0}),
        Step({"message": "never sent: the watch ended"}),
    ]

    async def scenario(stub: jobs_pb2_grpc.JobServiceStub) -> None:
        updates = [
            job_convert.update_from_proto(u)
            async for u in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id))
        ]
        assert [u.job.state for u in updates] == [
            JobState.QUEUED,
            JobState.RUNNING,
            JobState.RUNNING,
            JobState.SUCCEEDED,
        ]
        assert [[e.message for e in u.events] for u in updates] == [
            ["listing /media"],
            ["started"],
            ["a.mp4: MediaNotFound"],
            [],
        ]
        assert updates[2].job.progress == progress(3, 3, failed=1, listing_complete=True)
        assert updates[1].events[0].seq == 2 and updates[1].events[0].job_id == job_id
        missing = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id="nope"))
        error = await rpc_error(missing.read())
        assert error.code() == grpc.StatusCode.NOT_FOUND

    run_grpc(fake, scenario)


def test_watch_ends_at_pause_and_reports_a_failing_watch() -> None:
    fake = FakeJobs()
    paused = fake.add(state=JobState.RUNNING).id
    broken = fake.add(state=JobState.RUNNING).id
    fake.scripts[paused] = [Step({"state": JobState.PAUSED})]
    fake.scripts[broken] = [Step({}, error=StorageUnavailable("job database is locked"))]

    async def scenario(stub: jobs_pb2_grpc.JobServiceStub) -> None:
        states = [u.job.state async for u in stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=paused))]
        assert states == [jobs_pb2.JOB_STATE_RUNNING, jobs_pb2.JOB_STATE_PAUSED]
        call = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=broken))
        assert (await call.read()).job.state == jobs_pb2.JOB_STATE_RUNNING
        error = await rpc_error(call.read())
        assert (error.code(), error.details()) == (grpc.StatusCode.UNAVAILABLE, "job database is locked")

    run_grpc(fake, scenario)


def test_cancelling_a_watch_closes_the_runners_watch() -> None:
    fake = FakeJobs()
    job_id = fake.add(state=JobState.RUNNING).id

    async def scenario(stub: jobs_pb2_grpc.JobServiceStub) -> None:
        call = stub.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id))
        assert (await call.read()).job.id == job_id
        assert fake.subscribers[job_id]
        call.cancel()
        await asyncio.wait_for(fake.watch_closed.wait(), 5)
        assert fake.subscribers[job_id] == []
        assert fake.jobs[job_id].state == JobState.RUNNING  # the job itself goes on

    run_grpc(fake, scenario)


def test_results_page_in_order_with_and_without_results() -> None:
    fake = FakeJobs()
    job_id = fake.add(state=JobState.RUNNING).id
    fake.items[job_id] = [
        ItemRecord(
            job_id,
            1,
            "/media/a.mp4",
            ItemState.DONE,
            result={"tags": ["x"], "n": 2},
            result_key="k1",
            finished_at=5.0,
        ),
        ItemRecord(job_id, 2, "/media/b.mp4", ItemState.FAILED, error="gone", error_kind="MediaNotFound"),
        ItemRecord(job_id, 3, "/media/c.mp4", ItemState.DONE, result={}),
    ]

    async def scenario(stub: jobs_pb2_grpc.JobServiceStub) -> None:
        first = await stub.ListJobResults(jobs_pb2.ListJobResultsRequest(job_id=job_id, page_size=2))
        assert first.next_page_token == "2"
        assert first.items[1].state == jobs_pb2.ITEM_STATE_FAILED
        rest = await stub.ListJobResults(
            jobs_pb2.ListJobResultsRequest(job_id=job_id, page_token=first.next_page_token)
        )
        items = [job_convert.item_from_proto(i, job_id) for i in [*first.items, *rest.items]]
        assert items == fake.items[job_id] and rest.next_page_token == ""
        missing = await rpc_error(stub.ListJobResults(jobs_pb2.ListJobResultsRequest(job_id="nope")))
        assert missing.code() == grpc.StatusCode.NOT_FOUND
        kinds = await stub.ListJobKinds(jobs_pb2.ListJobKindsRequest())
        assert list(kinds.kinds) == ["build-face-index", "identify-library", "tag-library"]

    run_grpc(fake, scenario)
    assert ("results", (job_id, 100, "2")) in fake.calls  # page_size 0: the protocol's default
