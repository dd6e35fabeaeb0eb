"""gRPC JobService: protobuf <-> the job system's `Jobs` protocol (server/jobs/api.py).

Thin on purpose: the runner owns every rule (validation of a kind's params, state transitions,
paging); this module only translates, and domain errors become status codes through the same
decorators as every other servicer (NOT_FOUND, FAILED_PRECONDITION, UNAVAILABLE, INVALID_ARGUMENT)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

from stash_vision.server.api import job_convert
from stash_vision.server.api.status import mapped_errors, mapped_stream_errors
from stash_vision.server.errors import InvalidInput
from stash_vision.server.jobs.api import Jobs
from stash_vision.server.jobs.model import Job
from stash_vision.v1 import jobs_pb2, jobs_pb2_grpc

# What the protocol takes when the request leaves the page size at 0.
DEFAULT_JOBS_PAGE = 50
DEFAULT_RESULTS_PAGE = 100


def _job_id(request: Any) -> str:
    job_id: str = request.job_id
    if not job_id:
        raise InvalidInput("job_id is required")
    return job_id


class JobServicer(jobs_pb2_grpc.JobServiceServicer):  # type: ignore[misc]
    def __init__(self, jobs: Jobs) -> None:
        self.jobs = jobs

    @mapped_errors
    async def SubmitJob(
        self, request: jobs_pb2.SubmitJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.SubmitJobResponse:
        if not request.kind:
            raise InvalidInput(f"kind is required (one of {', '.join(self.jobs.kinds())})")
        job = await self.jobs.submit(request.kind, job_convert.from_struct(request.params))
        return jobs_pb2.SubmitJobResponse(job=job_convert.job_to_proto(job))

    @mapped_errors
    async def GetJob(
        self, request: jobs_pb2.GetJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.GetJobResponse:
        return jobs_pb2.GetJobResponse(job=await self._job_of(self.jobs.get, request))

    @mapped_errors
    async def ListJobs(
        self, request: jobs_pb2.ListJobsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.ListJobsResponse:
        page = await self.jobs.list(
            states=[job_convert.state_from_proto(s) for s in request.states],
            kinds=list(request.kinds),
            page_size=request.page_size or DEFAULT_JOBS_PAGE,
            page_token=request.page_token,
        )
        return jobs_pb2.ListJobsResponse(
            jobs=[job_convert.job_to_proto(j) for j in page.jobs], next_page_token=page.next_page_token
        )

    @mapped_errors
    async def CancelJob(
        self, request: jobs_pb2.CancelJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.CancelJobResponse:
        return jobs_pb2.CancelJobResponse(job=await self._job_of(self.jobs.cancel, request))

    @mapped_errors
    async def PauseJob(
        self, request: jobs_pb2.PauseJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.PauseJobResponse:
        return jobs_pb2.PauseJobResponse(job=await self._job_of(self.jobs.pause, request))

    @mapped_errors
    async def ResumeJob(
        self, request: jobs_pb2.ResumeJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.ResumeJobResponse:
        return jobs_pb2.ResumeJobResponse(job=await self._job_of(self.jobs.resume, request))

    async def _job_of(self, action: Callable[[str], Awaitable[Job]], request: Any) -> jobs_pb2.Job:
        """The job `action` returns for the request's job id, as a message."""
        return job_convert.job_to_proto(await action(_job_id(request)))

    @mapped_stream_errors
    async def WatchJob(
        self, request: jobs_pb2.WatchJobRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[jobs_pb2.WatchJobResponse]:
        updates = self.jobs.watch(_job_id(request))
        try:
            async for update in updates:
                yield job_convert.update_to_proto(update)
        finally:
            # The caller went away (grpc cancels this task) or the watch ended: release the
            # runner's subscription now rather than whenever the generator is collected.
            close = getattr(updates, "aclose", None)
            if close is not None:
                await close()

    @mapped_errors
    async def ListJobResults(
        self, request: jobs_pb2.ListJobResultsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.ListJobResultsResponse:
        page = await self.jobs.results(
            _job_id(request),
            page_size=request.page_size or DEFAULT_RESULTS_PAGE,
            page_token=request.page_token,
        )
        return jobs_pb2.ListJobResultsResponse(
            items=[job_convert.item_to_proto(i) for i in page.items], next_page_token=page.next_page_token
        )

    @mapped_errors
    async def ListJobKinds(
        self, request: jobs_pb2.ListJobKindsRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> jobs_pb2.ListJobKindsResponse:
        return jobs_pb2.ListJobKindsResponse(kinds=self.jobs.kinds())


def add_to_server(server: grpc.aio.Server, jobs: Jobs) -> JobServicer:
    """Registers JobService on `server` (before it starts); returns the servicer."""
    servicer = JobServicer(jobs)
    jobs_pb2_grpc.add_JobServiceServicer_to_server(servicer, server)
    return servicer
