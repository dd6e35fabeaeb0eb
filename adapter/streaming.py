"""Waiting for the result of a server-streaming gRPC call while the HTTP client may go away.

Starlette does not cancel a route when its client disconnects, so the route watches for the
disconnect itself and cancels the call, which stops the server's work (decoding, inference)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol, TypeVar

import grpc
from fastapi import HTTPException, Request

from stash_vision.adapter.server_client import http_error

# nginx's "client closed request": nobody reads it, but logs and metrics show what happened.
CLIENT_CLOSED = 499

R = TypeVar("R")


class _Event(Protocol):
    def HasField(self, field_name: str) -> bool: ...


class StreamCall(Protocol):
    def __aiter__(self) -> AsyncIterator[Any]: ...

    def cancel(self) -> bool: ...


async def disconnected(request: Request) -> None:
    """Returns when the HTTP client goes away (the request body has already been read)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


async def stream_result(request: Request, call: StreamCall, what: str) -> Any:
    """The `result` of the stream's last result event; progress events are skipped."""

    async def consume() -> Any:
        result = None
        async for event in call:
            if event.HasField("result"):
                result = event.result
        return result

    stream = asyncio.ensure_future(consume())
    watcher = asyncio.ensure_future(disconnected(request))
    try:
        await asyncio.wait((stream, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
        if not stream.done():
            call.cancel()
            stream.cancel()
        await asyncio.gather(stream, watcher, return_exceptions=True)
    if stream.cancelled():
        raise HTTPException(status_code=CLIENT_CLOSED, detail="the client closed the request")
    try:
        result = stream.result()
    except grpc.aio.AioRpcError as error:
        raise http_error(error) from None
    if result is None:
        raise HTTPException(status_code=502, detail=f"the server ended the {what} stream without a result")
    return result
