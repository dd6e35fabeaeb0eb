"""Optional API key on gRPC: `authorization: Bearer <key>` or `x-api-key: <key>` metadata.
Health checks and reflection stay open so probes and grpcurl work."""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

_OPEN = ("/grpc.health.v1.Health/", "/grpc.reflection.")


def presented_key(metadata: tuple[tuple[str, str | bytes], ...] | None) -> str | None:
    for key, value in metadata or ():
        if key not in ("x-api-key", "authorization"):
            continue  # other entries may be binary (`-bin`) and need not be text
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else value
        if key == "x-api-key":
            return text
        if text.lower().startswith("bearer "):
            return text[7:]
    return None


class ApiKeyInterceptor(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    def __init__(self, api_key: str) -> None:
        self.api_key = api_key

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        if details.method.startswith(_OPEN):
            return await continuation(details)
        key = presented_key(details.invocation_metadata)
        # As bytes: compare_digest raises on a str with non-ASCII characters.
        if key is not None and hmac.compare_digest(key.encode(), self.api_key.encode()):
            return await continuation(details)

        async def deny(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            await context.abort(
                grpc.StatusCode.UNAUTHENTICATED, "missing or wrong API key (x-api-key metadata)"
            )

        handler = await continuation(details)
        if handler is not None and handler.unary_stream:
            return grpc.unary_stream_rpc_method_handler(deny)
        return grpc.unary_unary_rpc_method_handler(deny)
