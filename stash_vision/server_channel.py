"""How a stash-vision client (the HTTP adapter, the `jobs` CLI) reaches the gRPC server: one
channel with the configured message limit both ways, and the API key as `x-api-key` metadata on
every call, so the two never disagree on either."""

from __future__ import annotations

import grpc

from stash_vision.settings import Settings


def server_channel(settings: Settings) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(
        settings.server_target,
        options=[
            ("grpc.max_receive_message_length", settings.max_message_bytes),
            ("grpc.max_send_message_length", settings.max_message_bytes),
        ],
    )


def api_key_metadata(settings: Settings) -> tuple[tuple[str, str], ...]:
    return (("x-api-key", settings.api_key),) if settings.api_key else ()
