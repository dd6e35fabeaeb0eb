"""protobuf <-> the job model (server/jobs/model.py), both ways.

The servicer sends the model as protobuf; the adapter and the CLI turn it back into the same
dataclasses, so a job has one JSON shape (`dataclasses.asdict`) wherever it is shown and no
transport keeps its own copy of the field list. Plain data only: the adapter imports this too."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from google.protobuf import json_format, struct_pb2

from stash_vision.server.errors import InvalidInput
from stash_vision.server.jobs.api import JobUpdate
from stash_vision.server.jobs.model import ItemRecord, ItemState, Job, JobEvent, JobState, Progress
from stash_vision.v1 import jobs_pb2

# Integral doubles up to 2**53 are exact, so they can safely become ints again.
_EXACT_INT = 2**53

M = TypeVar("M")
D = TypeVar("D")


def to_struct(value: Mapping[str, Any]) -> struct_pb2.Struct:
    """A JSON object as a Struct. Anything JSON cannot carry (a Path, a tuple) goes as JSON would
    show it (str, list) instead of failing the call that carries it."""
    return json_format.ParseDict(json.loads(json.dumps(value, default=str)), struct_pb2.Struct())


def from_struct(struct: struct_pb2.Struct) -> dict[str, Any]:
    """A Struct as a JSON object. Struct numbers are doubles: integral ones come back as ints, so a
    kind that wants `"batch": 8` does not receive 8.0."""
    plain: dict[str, Any] = _integral(json_format.MessageToDict(struct))
    return plain


def _integral(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer() and abs(value) <= _EXACT_INT:
        return int(value)
    if isinstance(value, dict):
        return {key: _integral(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_integral(item) for item in value]
    return value


# ------------------------------------------------------------------------------------------ states


def state_to_proto(state: JobState) -> jobs_pb2.JobState:
    return cast(jobs_pb2.JobState, jobs_pb2.JobState.Value(f"JOB_STATE_{state.name}"))


def state_from_proto(value: int) -> JobState:
    """JOB_STATE_UNSPECIFIED or a number no state has: InvalidInput (a filter the caller got wrong)."""
    name = jobs_pb2.JobState.Name(value) if value in _JOB_STATE_VALUES else ""
    state = JobState.__members__.get(name.removeprefix("JOB_STATE_"))
    if state is None:
        raise InvalidInput(f"unknown job state {value} (one of {', '.join(JobState)})")
    return state


_JOB_STATE_VALUES = frozenset(jobs_pb2.JobState.values())


def parse_state(text: str) -> JobState:
    """A state as a person writes it ("running", "RUNNING"), for the adapter's and CLI's filters."""
    try:
        return JobState(text.strip().lower())
    except ValueError:
        raise InvalidInput(f"unknown job state {text!r} (one of {', '.join(JobState)})") from None


def _item_state_to_proto(state: ItemState) -> jobs_pb2.ItemState:
    return cast(jobs_pb2.ItemState, jobs_pb2.ItemState.Value(f"ITEM_STATE_{state.name}"))


def _item_state_from_proto(value: int) -> ItemState:
    return ItemState[jobs_pb2.ItemState.Name(value).removeprefix("ITEM_STATE_")]


# ------------------------------------------------------------------------------------------ messages
# A dataclass field and the message field of the same name carry the same value; only the fields
# whose types differ (states, Structs, nested messages) are converted by hand. A field added to
# both the model and the .proto therefore needs no change here.


def _to_proto(message_type: Callable[..., M], value: Any, **converted: Any) -> M:
    names = message_type.DESCRIPTOR.fields_by_name  # type: ignore[attr-defined]
    plain = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name in names}
    return message_type(**{**plain, **converted})


def _from_proto(cls: type[D], message: Any, **converted: Any) -> D:
    """The dataclass of a message; a proto3 `optional` field that is unset becomes None."""
    fields = message.DESCRIPTOR.fields_by_name
    plain = {
        f.name: getattr(message, f.name)
        if not fields[f.name].has_presence or message.HasField(f.name)
        else None
        for f in dataclasses.fields(cls)  # type: ignore[arg-type]
        if f.name in fields and f.name not in converted
    }
    return cls(**plain, **converted)


def job_to_proto(job: Job) -> jobs_pb2.Job:
    return _to_proto(
        jobs_pb2.Job,
        job,
        params=to_struct(job.params),
        state=state_to_proto(job.state),
        progress=_to_proto(jobs_pb2.Progress, job.progress),
        summary=to_struct(job.summary),
    )


def job_from_proto(message: jobs_pb2.Job) -> Job:
    return _from_proto(
        Job,
        message,
        params=from_struct(message.params),
        state=state_from_proto(message.state),
        progress=_from_proto(Progress, message.progress),
        summary=from_struct(message.summary),
    )


def event_to_proto(event: JobEvent) -> jobs_pb2.JobEvent:
    return _to_proto(jobs_pb2.JobEvent, event)


def event_from_proto(message: jobs_pb2.JobEvent) -> JobEvent:
    return _from_proto(JobEvent, message)


def update_to_proto(update: JobUpdate) -> jobs_pb2.WatchJobResponse:
    return jobs_pb2.WatchJobResponse(
        job=job_to_proto(update.job), events=[event_to_proto(e) for e in update.events]
    )


def update_from_proto(message: jobs_pb2.WatchJobResponse) -> JobUpdate:
    return JobUpdate(job=job_from_proto(message.job), events=[event_from_proto(e) for e in message.events])


def item_to_proto(item: ItemRecord) -> jobs_pb2.JobItemResult:
    return _to_proto(
        jobs_pb2.JobItemResult,
        item,
        state=_item_state_to_proto(item.state),
        result=to_struct(item.result) if item.result is not None else None,
    )


def item_from_proto(message: jobs_pb2.JobItemResult, job_id: str) -> ItemRecord:
    """The message leaves out the job id (the request named it); the caller gives it back."""
    return _from_proto(
        ItemRecord,
        message,
        job_id=job_id,
        state=_item_state_from_proto(message.state),
        result=from_struct(message.result) if message.HasField("result") else None,
    )
