"""Who may call the adapter when STASH_VISION_API_KEY is set: the X-API-Key header as before, or the
dashboard's session cookie. The session is stateless (nothing to store or expire server-side): the
cookie is `<issued>.<nonce>.<HMAC(key, issued.nonce)>`, so changing the API key logs every browser
out, and the CSRF token is a second HMAC of the same nonce, rendered into each page and required
as the X-CSRF-Token header on every state-changing request that authenticates with the cookie.
A request with the key header needs no CSRF token: a browser cannot be made to send that header
cross-site."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from urllib.parse import quote

from fastapi import Request, Response
from fastapi.responses import JSONResponse, RedirectResponse

COOKIE = "stash_vision_session"
CSRF_HEADER = "x-csrf-token"
SESSION_MAX_AGE_S = 7 * 24 * 3600
# What anyone may load: the probes Stash and Prometheus use, the login form and its assets.
OPEN_PATHS = frozenset({"/ready", "/health", "/metrics", "/ui/login"})
OPEN_PREFIXES = ("/ui/static/",)
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _sign(key: str, purpose: str, value: str) -> str:
    return hmac.new(key.encode(), f"{purpose}:{value}".encode(), hashlib.sha256).hexdigest()


def new_session(key: str, now: float | None = None) -> str:
    """A fresh cookie value for someone who just presented the key."""
    body = f"{int(now if now is not None else time.time())}.{secrets.token_urlsafe(18)}"
    return f"{body}.{_sign(key, 'session', body)}"


def session_body(key: str, cookie: str | None, now: float | None = None) -> str | None:
    """The cookie's signed body when it is ours, signed with this key and not too old; else None."""
    if not cookie or cookie.count(".") != 2:
        return None
    body, signature = cookie.rsplit(".", 1)
    if not _same(signature, _sign(key, "session", body)):
        return None
    issued = body.split(".", 1)[0]
    current = now if now is not None else time.time()
    if not issued.isdigit() or current - int(issued) > SESSION_MAX_AGE_S:
        return None
    return body


def csrf_token(key: str, cookie: str | None) -> str:
    """The token the pages of this session send back; empty without a valid session."""
    body = session_body(key, cookie)
    return _sign(key, "csrf", body) if body else ""


def _same(presented: str, expected: str) -> bool:
    """Constant time, and as bytes: hmac.compare_digest raises on a str with non-ASCII characters,
    which anyone can put in a header or cookie."""
    return hmac.compare_digest(presented.encode("utf-8", "surrogateescape"), expected.encode())


def key_matches(key: str, presented: str) -> bool:
    return _same(presented, key)


def presented_key(request: Request) -> str:
    """The X-API-Key header, or a bearer token (as before the dashboard)."""
    authorization = request.headers.get("authorization", "")
    bearer = authorization[7:] if authorization[:7].lower() == "bearer " else ""
    return request.headers.get("x-api-key") or bearer


def is_open(path: str) -> bool:
    return path in OPEN_PATHS or path.startswith(OPEN_PREFIXES)


def refusal(request: Request, key: str | None) -> Response | None:
    """None when the request may go on; else the answer that refuses it. Without an API key every
    request goes on (loopback by default, as before the dashboard)."""
    if not key or is_open(request.url.path):
        return None
    if key_matches(key, presented_key(request)):
        return None
    cookie = request.cookies.get(COOKIE)
    body = session_body(key, cookie)
    if body is not None:
        if request.method in _SAFE_METHODS:
            return None
        sent = request.headers.get(CSRF_HEADER, "")
        if sent and _same(sent, _sign(key, "csrf", body)):
            return None
        return JSONResponse(
            {"detail": "missing or wrong CSRF token (X-CSRF-Token header); reload the page and try again"},
            status_code=403,
        )
    path = request.url.path
    is_page = path == "/" or (path.startswith("/ui") and not path.startswith("/ui/api/"))
    if request.method in _SAFE_METHODS and is_page:
        return RedirectResponse(f"/ui/login?next={quote(path)}", status_code=303)
    return JSONResponse(
        {"detail": "missing or wrong API key (X-API-Key header, or log in at /ui/login)"}, status_code=401
    )


def safe_next(target: str | None) -> str:
    """Where to go after logging in: only a page of the dashboard (no open redirect)."""
    if target and target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/"
