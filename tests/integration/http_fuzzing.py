"""Schemathesis (4.x) over the adapter's own OpenAPI against a running stack, shared by the bounded
CI run (test_fuzz_http.py) and the long run (bench/fuzz_http.py). Every operation gets generated
requests, seeded so a failure reproduces; each answer must not be a 5xx, must conform to the
operation's declared response schema, and must come within a per-request timeout (a hang is a
failure, not a stuck test). Failures are collected per operation rather than stopping at the first,
so one run reports every broken route."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.strategies import SearchStrategy
from schemathesis import GenerationMode
from schemathesis.core.failures import FailureGroup
from schemathesis.core.result import Err
from schemathesis.specs.openapi.checks import response_schema_conformance

# Schemathesis' generic APIOperation and Case take spec-specific type parameters.
Operation = schemathesis.APIOperation[Any, Any, Any, Any]
Case = Any

REQUEST_TIMEOUT_S = 30.0
SEED = 17

# Operations that would start long or outside work when fed a valid body: a job over a library
# root, the Stash Sense queue and the AI Overhaul submissions (both persisted jobs), and the model
# and database downloads (they reach the network, which the stack has not got). Their validation,
# refusals and lookups are fuzzed through every other operation of the same routers and the gRPC
# fuzzer's SubmitJob; these are exercised with fixed bodies by their own integration tests.
LONG_WORK = frozenset(
    {
        "POST /jobs",
        "POST /stash-sense/queue",
        "POST /stash-sense/database/update",
        "POST /stash-sense/models/download-all",
        "POST /stash-sense/models/download/{model_name}",
        "POST /stash-ai/api/v1/queue/submit/image",
        "POST /stash-ai/api/v1/queue/submit/gallery",
        "POST /stash-ai/api/v1/queue/submit/scene",
    }
)
# Streams that never end by design: a request to them is a hang only if the headers never come.
STREAMS = frozenset({"GET /jobs/{job_id}/events"})


def bounded(max_examples: int, test: Callable[[], None]) -> Callable[[], None]:
    """A seeded, repeatable Hypothesis run of exactly the generate phase: failures are recorded by
    the test, not raised, so nothing shrinks (a shrink would re-send requests for minutes)."""
    configured: Callable[[], None] = settings(
        max_examples=max_examples,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )(test)
    return seed(SEED)(configured)


@dataclass
class OperationReport:
    label: str
    requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


@dataclass
class FuzzReport:
    operations: list[OperationReport]
    excluded: list[str]

    @property
    def requests(self) -> int:
        return sum(op.requests for op in self.operations)

    @property
    def failures(self) -> list[str]:
        return [f"{op.label}: {failure}" for op in self.operations for failure in op.failures]


# Stash Sense's recommendation, database-download and schedule routes answer 501 on purpose: the
# plugin shows the detail ("not provided by stash-vision: ...") instead of retrying (docs/stash-sense.md).
DELIBERATE_501 = "not provided by stash-vision"


def _server_error(response: requests.Response | schemathesis.Response) -> str | None:
    if response.status_code < 500:
        return None
    if response.status_code == 501 and DELIBERATE_501 in response.text:
        return None
    return f"{response.status_code} {response.text[:300]}"


def _check(case: Case, response: schemathesis.Response) -> str | None:
    error = _server_error(response)
    if error is not None:
        return f"{error}\n  reproduce: {case.as_curl_command()}"
    try:
        case.validate_response(response, checks=[response_schema_conformance])
    except (AssertionError, FailureGroup) as failure:  # one failure, or several at once
        return str(failure)[:600]
    return None


def _cases(operation: Operation) -> SearchStrategy[Case]:
    """Requests the schema allows and requests it forbids (wrong types, missing fields, values out
    of range): the forbidden ones must be refused with a 4xx, never crash a handler."""
    return operation.as_strategy(generation_mode=GenerationMode.POSITIVE) | operation.as_strategy(
        generation_mode=GenerationMode.NEGATIVE
    )


def _fuzz_operation(
    operation: Operation, base_url: str, session: requests.Session, max_examples: int
) -> OperationReport:
    report = OperationReport(operation.label)
    streaming = operation.label in STREAMS

    def call(case: Case) -> None:
        report.requests += 1
        try:
            response = case.call(
                base_url=base_url, session=session, timeout=REQUEST_TIMEOUT_S, stream=streaming
            )
        except requests.Timeout:
            report.failures.append(f"no answer within {REQUEST_TIMEOUT_S} s: {case.as_curl_command()}")
            return
        except requests.ConnectionError as error:
            report.failures.append(f"connection failed ({error}): {case.as_curl_command()}")
            return
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        # For a stream, the headers came: no hang; its body is an endless event stream.
        failure = _server_error(response) if streaming else _check(case, response)
        if failure is not None and len(report.failures) < 5:
            report.failures.append(failure)

    bounded(max_examples, given(case=_cases(operation))(call))()
    if operation.method.upper() in {"POST", "PUT"} and "{" not in operation.path:
        _fuzz_raw_bodies(operation, base_url, session, max_examples, report)
    return report


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=20), inner, max_size=5),
    max_leaves=20,
)


def _fuzz_raw_bodies(
    operation: Operation,
    base_url: str,
    session: requests.Session,
    max_examples: int,
    report: OperationReport,
) -> None:
    """Bodies outside any schema: arbitrary bytes (broken JSON, invalid UTF-8) and arbitrary JSON
    under the declared content type. This is what reaches the routes that read the raw request
    (the AI Overhaul gateway's), which Schemathesis can only send empty bodies to."""

    def send(body: bytes | object) -> None:
        report.requests += 1
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            response = session.request(
                operation.method.upper(),
                f"{base_url}{operation.path}",
                data=raw,
                headers={"Content-Type": "application/json"},
                timeout=REQUEST_TIMEOUT_S,
            )
        except requests.RequestException as error:
            report.failures.append(f"raw body {raw[:80]!r}: {error}")
            return
        report.statuses[response.status_code] = report.statuses.get(response.status_code, 0) + 1
        refused = _server_error(response)
        if refused is not None and len(report.failures) < 5:
            report.failures.append(f"raw body {raw[:200]!r}: {refused}")

    bounded(max_examples, given(body=st.binary(max_size=300) | _JSON)(send))()


def fuzz_adapter(
    base_url: str,
    *,
    max_examples: int,
    headers: dict[str, str] | None = None,
    progress: Callable[[OperationReport], None] | None = None,
    only: Iterable[str] = (),
) -> FuzzReport:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json", timeout=30)
    wanted = set(only)
    reports, excluded = [], []
    with requests.Session() as session:
        session.headers.update(headers or {})
        for result in schema.get_all_operations():
            if isinstance(result, Err):  # an operation our own OpenAPI cannot describe is a bug too
                raise AssertionError(f"invalid operation in /openapi.json: {result.err()}")
            operation = result.ok()
            if operation.label in LONG_WORK:
                excluded.append(operation.label)
                continue
            if wanted and operation.label not in wanted:
                continue
            report = _fuzz_operation(operation, base_url, session, max_examples)
            reports.append(report)
            if progress is not None:
                progress(report)
    return FuzzReport(reports, excluded)


def summary(report: FuzzReport) -> dict[str, Any]:
    return {
        "operations": len(report.operations),
        "requests": report.requests,
        "excluded": report.excluded,
        "failures": report.failures,
    }
