"""An async GraphQL-over-HTTP client for Stash and stash-box.

Why not a generic GraphQL library: both servers need the same few things on top of a POST — the
ApiKey header, a request budget shared by every call to one endpoint (stash-box has no server-side
limiter), retries with exponential back-off that honour Retry-After, and errors a person can act
on that name the server. Downloads (images, streams) go through the same budget and retries."""

from __future__ import annotations

import asyncio
import email.utils
import logging
import random
import time
from typing import Any
from urllib.parse import urlsplit

import httpx

from stash_vision.server.connections.errors import (
    SourceAuthFailed,
    SourceBadContent,
    SourceError,
    SourceNotFound,
    SourceQueryFailed,
    SourceUnreachable,
)
from stash_vision.server.connections.rate import RateBudget

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_AUTH_WORDS = ("unauthorized", "not authorized", "forbidden", "unauthenticated")


def _retry_after_s(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date); None when absent or unreadable."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin(url: str) -> tuple[str, str, int | None]:
    """(scheme, host, port) with the scheme's default port filled in; ("", "", None) if unusable."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        return "", "", None
    return scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme)


def same_origin(a: str, b: str) -> bool:
    """The key goes only to the server it belongs to, never to a host an answer points at."""
    x, y = urlsplit(a), urlsplit(b)
    return (x.scheme, x.netloc.lower()) == (y.scheme, y.netloc.lower())


class GraphQLClient:
    """One endpoint. `name` is how errors refer to it ("Stash at http://…", "StashDB");
    `key_hint` says where its key is configured."""

    def __init__(
        self,
        name: str,
        url: str,
        api_key: str | None = None,
        *,
        key_hint: str = "",
        timeout_s: float = 10.0,
        retries: int = 3,
        backoff_s: float = 0.5,
        max_backoff_s: float = 30.0,
        budget: RateBudget | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        subdomains: bool = False,
    ) -> None:
        self.name = name
        self.url = url
        # URLs in answers are fetched only from this server (no SSRF through an answer that points
        # at 169.254.169.254 or the LAN); `subdomains` also allows its subdomains on the same
        # scheme and port, where stash-box serves images (StashDB's cdn.stashdb.org).
        self.subdomains = subdomains
        self.api_key = api_key or None
        self.key_hint = key_hint
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.budget = budget
        self._transport = transport
        self._http: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def _client(self) -> httpx.AsyncClient:
        # httpx clients are bound to the loop that opened their connections.
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop:
            self._http = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s),
                transport=self._transport,
                follow_redirects=True,
                event_hooks={"request": [self._check_hop]},  # every redirect too
            )
            self._loop = loop
        return self._http

    async def aclose(self) -> None:
        if self._http is not None and self._loop is asyncio.get_running_loop():
            await self._http.aclose()
        self._http = None

    def fetchable(self, url: str) -> bool:
        scheme, host, port = origin(url)
        own_scheme, own_host, own_port = origin(self.url)
        if scheme not in _DEFAULT_PORTS or not host or (scheme, port) != (own_scheme, own_port):
            return False
        return host == own_host or (self.subdomains and host.endswith("." + own_host))

    def check_url(self, url: str) -> None:
        """SourceBadContent, before anything is sent, for a URL not on this server."""
        if not self.fetchable(url):
            scheme, host, port = origin(url)
            shown = f"{scheme}://{host}:{port}" if host else repr(url[:80])
            own = "{}://{}:{}".format(*origin(self.url)) + (" and its subdomains" if self.subdomains else "")
            raise SourceBadContent(
                self.name,
                f"{self.name} answered a URL on another server ({shown}); stash-vision fetches only "
                f"from {own}, so nothing was requested",
            )

    async def _check_hop(self, request: httpx.Request) -> None:
        self.check_url(str(request.url))

    def headers_for(self, url: str) -> dict[str, str]:
        """The ApiKey header for URLs of this server; nothing for any other host."""
        if self.api_key and same_origin(url, self.url):
            return {"ApiKey": self.api_key}
        return {}

    def _auth_error(self, detail: str) -> SourceAuthFailed:
        what = "is wrong or lacks permission" if self.api_key else "is required and none is configured"
        hint = f" (set {self.key_hint})" if self.key_hint else ""
        return SourceAuthFailed(self.name, f"the API key of {self.name} {what}{hint}: {detail}")

    def _backoff(self, attempt: int) -> float:
        delay: float = min(self.max_backoff_s, self.backoff_s * 2**attempt)
        return float(delay * random.uniform(0.8, 1.0))

    async def _send(
        self, method: str, url: str, json: Any, headers: dict[str, str], max_bytes: int | None
    ) -> httpx.Response:
        """The body is read as it streams in and refused beyond `max_bytes`, so a huge or endless
        answer never sits in memory."""
        client = self._client()
        response = await client.send(
            client.build_request(method, url, json=json, headers=headers), stream=True
        )
        try:
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if max_bytes is not None and size > max_bytes:
                    raise SourceBadContent(
                        self.name, f"{url} from {self.name} is larger than {max_bytes} bytes; refused"
                    )
                chunks.append(chunk)
        finally:
            await response.aclose()
        return httpx.Response(
            response.status_code, headers=response.headers, content=b"".join(chunks), request=response.request
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        headers: dict[str, str] | None = None,
        max_bytes: int | None = None,
    ) -> httpx.Response:
        """One HTTP request with the budget, retries and error mapping. Answers other than 2xx that
        are not retried come back as they are for the caller to judge (GraphQL 4xx bodies)."""
        self.check_url(url)
        all_headers = {**self.headers_for(url), **(headers or {})}
        last = ""
        for attempt in range(self.retries + 1):
            # The client is made before the budget is taken, so that its set-up (TLS context) does
            # not delay this request toward the next one's slot.
            self._client()
            ticket = await self.budget.acquire() if self.budget is not None else None
            wait: float | None = None
            try:
                try:
                    response = await self._send(method, url, json, all_headers, max_bytes)
                finally:
                    if self.budget is not None and ticket is not None:
                        self.budget.done(ticket)
            except httpx.TimeoutException:
                last = f"no answer within {self.timeout_s:g} s"
            except httpx.TransportError as error:
                last = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
            else:
                if response.status_code in (401, 403):
                    raise self._auth_error(f"HTTP {response.status_code} from {url}")
                if response.status_code == 404:
                    raise SourceNotFound(self.name, f"{self.name} has nothing at {url} (HTTP 404)")
                if response.status_code not in RETRY_STATUSES:
                    return response
                last = f"HTTP {response.status_code}"
                wait = _retry_after_s(response)
                if wait is not None and wait > self.max_backoff_s:
                    raise SourceUnreachable(
                        self.name,
                        f"{self.name} is busy ({last}) and asks to wait {wait:.0f} s; try again later",
                    )
            if attempt < self.retries:
                delay = wait if wait is not None else self._backoff(attempt)
                log.info("%s: %s; retry %d in %.2f s", self.name, last, attempt + 1, delay)
                await asyncio.sleep(delay)
        raise SourceUnreachable(
            self.name,
            f"{self.name} is unreachable at {url} ({last}, {self.retries + 1} attempts); "
            "check that it is running and that the URL is right",
        )

    async def execute(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        """The `data` of a query or mutation; GraphQL `errors` raise SourceQueryFailed."""
        response = await self.request("POST", self.url, json={"query": query, "variables": variables or {}})
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise SourceQueryFailed(
                self.name,
                f"{self.name} did not answer as a GraphQL server (HTTP {response.status_code}, "
                f"{response.headers.get('content-type', 'no content type')}); check the URL",
            )
        errors = body.get("errors")
        if errors:
            messages = "; ".join(str(e.get("message", e)) if isinstance(e, dict) else str(e) for e in errors)
            if any(word in messages.lower() for word in _AUTH_WORDS):
                raise self._auth_error(messages)
            raise SourceQueryFailed(self.name, f"{self.name} answered with a GraphQL error: {messages}")
        data = body.get("data")
        if response.status_code >= 400 or not isinstance(data, dict):
            raise SourceQueryFailed(
                self.name, f"{self.name} answered HTTP {response.status_code} without data"
            )
        return data

    async def download(
        self, url: str, *, max_bytes: int, params: dict[str, str] | None = None
    ) -> httpx.Response:
        """A GET of at most `max_bytes` (checked while the body streams in)."""
        if params:
            url = str(httpx.URL(url).copy_merge_params(params))
        response = await self.request("GET", url, max_bytes=max_bytes)
        if response.status_code >= 400:
            raise SourceError(self.name, f"{self.name} answered HTTP {response.status_code} for {url}")
        return response
