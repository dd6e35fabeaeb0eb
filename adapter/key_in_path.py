"""The API key carried in the URL path, for callers that cannot send a header.

The Stash Sense plugin's backend calls `{sidecar_url}{route}` and sends no header of its own, so a
user whose stash-vision requires `STASH_VISION_API_KEY` sets the plugin's "Stash Sense API URL" to
`http://<host>:8000/stash-sense/key/<API key>`. This ASGI middleware turns
`/stash-sense/key/<key>/<route>` into `/stash-sense/<route>` with the key as an `X-API-Key` header,
before anything else sees the request: the one key check (adapter/ui/auth.py) then applies as for
every caller, and the key never reaches routing, metrics labels or logs."""

from __future__ import annotations

from urllib.parse import unquote

from starlette.types import ASGIApp, Receive, Scope, Send

PREFIX = "/stash-sense/key/"


class KeyInPath:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if scope["type"] in ("http", "websocket") and path.startswith(PREFIX):
            # From the raw path: a key with a "/" arrives as %2F, which `path` has already decoded.
            raw = (scope.get("raw_path") or path.encode()).decode("latin-1")
            key, _, rest = raw[len(PREFIX) :].partition("/")
            headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() != b"x-api-key"]
            headers.append((b"x-api-key", unquote(key).encode("utf-8", "replace")))
            route = "/stash-sense/" + rest
            scope = {**scope, "path": unquote(route), "raw_path": route.encode("latin-1"), "headers": headers}
        await self.app(scope, receive, send)
