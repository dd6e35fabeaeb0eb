"""Unit tests for stash_vision.server.triton_session.translate: tritonclient errors become domain
errors (which the gRPC layer maps to status codes), and the real TritonSession against a closed port."""

from __future__ import annotations

import asyncio
import socket

import numpy as np
import pytest
from tritonclient.utils import InferenceServerException

from stash_vision.server.errors import BackendUnavailable, DeadlineExceeded, InferenceFailed, InvalidInput
from stash_vision.server.triton_session import TritonSession, translate


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("StatusCode.UNAVAILABLE", BackendUnavailable),
        ("StatusCode.CANCELLED", BackendUnavailable),
        ("StatusCode.DEADLINE_EXCEEDED", DeadlineExceeded),
        ("StatusCode.INVALID_ARGUMENT", InvalidInput),
        ("StatusCode.INTERNAL", InferenceFailed),
        ("StatusCode.UNKNOWN", InferenceFailed),
        (None, InferenceFailed),
    ],
)
def test_translate_maps_status_to_domain_error(status: str | None, expected: type[Exception]) -> None:
    error = InferenceServerException("something happened", status=status)
    translated = translate(error, "yunet")
    assert type(translated) is expected
    assert "yunet" in str(translated)


def test_translate_keeps_triton_message_for_bad_input_and_failures() -> None:
    bad = translate(
        InferenceServerException("unexpected shape [1,3]", status="StatusCode.INVALID_ARGUMENT"), "m"
    )
    assert "unexpected shape [1,3]" in str(bad)
    failed = translate(InferenceServerException("ORT exploded", status="StatusCode.INTERNAL"), "m")
    assert "ORT exploded" in str(failed)


def test_translate_recognises_messages_without_status() -> None:
    assert isinstance(translate(InferenceServerException("Deadline Exceeded"), "m"), DeadlineExceeded)
    assert isinstance(
        translate(InferenceServerException("failed to connect to all addresses"), "m"), BackendUnavailable
    )
    assert isinstance(
        translate(InferenceServerException("Request for unknown model: 'm' is not ready"), "m"),
        BackendUnavailable,
    )


def test_real_session_against_a_closed_port_is_backend_unavailable() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def scenario() -> None:
        session = TritonSession(f"127.0.0.1:{port}", default_timeout_s=5.0)
        try:
            assert await session.server_ready() is False
            status = await session.model_status("yunet")
            assert (status.ready, status.device) == (False, "")
            with pytest.raises(BackendUnavailable, match="yunet"):
                await session.infer("yunet", {"input": np.zeros((1, 3, 8, 8), np.float32)}, ["cls_8"], 5.0)
        finally:
            await session.close()

    asyncio.run(asyncio.wait_for(scenario(), 30))
