"""The dashboard's pages under /ui/: server-rendered Jinja2 templates, with small scripts that call
the same JSON routes other tools use (jobs, their SSE stream, index versions, identify, video).
`/` redirects here; the login form exists only when STASH_VISION_API_KEY is set."""

from __future__ import annotations

import mimetypes
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from fastapi import APIRouter, HTTPException, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse
from fastapi.templating import Jinja2Templates

from stash_vision import __version__
from stash_vision.adapter.ui import auth, context

router = APIRouter(include_in_schema=False)

_HERE = Path(__file__).parent
templates = Jinja2Templates(directory=_HERE / "templates")
_STATIC = resources.files("stash_vision.adapter.ui").joinpath("static")
_LOGIN_FORM_MAX_BYTES = 4096

# Pages carry a session's CSRF token: never cached, never framed by another site, and only our own
# scripts and styles run in them (the canvas of Try it draws data: and blob: images).
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
}

PAGES = (
    ("overview", "/ui/", "Overview"),
    ("jobs", "/ui/jobs", "Jobs"),
    ("indexes", "/ui/indexes", "Indexes"),
    ("models", "/ui/models", "Models"),
    ("try", "/ui/try", "Try it"),
    ("settings", "/ui/settings", "Settings"),
)


def _render(request: Request, template: str, page: str, data: dict[str, Any], status: int = 200) -> Response:
    key = context.settings_of(request).api_key
    cookie = request.cookies.get(auth.COOKIE)
    values = {
        "page": page,
        "pages": PAGES,
        "version": __version__,
        "login_required": bool(key),
        "csrf": auth.csrf_token(key, cookie) if key else "",
        **data,
    }
    response = templates.TemplateResponse(request, template, values, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response


@router.get("/")
async def root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui")
async def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=307)


@router.get("/ui/", response_class=HTMLResponse)
async def overview_page(request: Request) -> Response:
    return _render(request, "overview.html", "overview", await context.overview(request))


@router.get("/ui/jobs", response_class=HTMLResponse)
async def jobs_page(request: Request) -> Response:
    return _render(request, "jobs.html", "jobs", await context.jobs_page(request))


@router.get("/ui/jobs/{job_id}", response_class=HTMLResponse)
async def job_page(request: Request, job_id: str) -> Response:
    try:
        data = await context.job_page(request, job_id)
    except HTTPException as error:
        return _render(request, "error.html", "jobs", {"problem": error.detail}, error.status_code)
    return _render(request, "job.html", "jobs", data)


@router.get("/ui/indexes", response_class=HTMLResponse)
async def indexes_page(request: Request) -> Response:
    return _render(request, "indexes.html", "indexes", await context.indexes_page(request))


@router.get("/ui/models", response_class=HTMLResponse)
async def models_page(request: Request) -> Response:
    return _render(request, "models.html", "models", await context.models_page(request))


@router.get("/ui/try", response_class=HTMLResponse)
async def try_page(request: Request) -> Response:
    return _render(request, "try.html", "try", {})


@router.get("/ui/settings", response_class=HTMLResponse)
async def settings_page(request: Request) -> Response:
    settings = context.settings_of(request)
    return _render(request, "settings.html", "settings", {"rows": context.effective_settings(settings)})


# ------------------------------------------------------------------------------------------- login


@router.get("/ui/login", response_class=HTMLResponse)
async def login_form(request: Request, next: str = "/ui/") -> Response:
    if not context.settings_of(request).api_key:
        return RedirectResponse("/ui/", status_code=303)
    return _render(request, "login.html", "login", {"next": auth.safe_next(next), "failed": False})


@router.post("/ui/login", response_class=HTMLResponse)
async def login(request: Request) -> Response:
    key = context.settings_of(request).api_key
    if not key:
        return RedirectResponse("/ui/", status_code=303)
    raw = await request.body()
    form = parse_qs(raw[:_LOGIN_FORM_MAX_BYTES].decode("utf-8", "replace"))
    presented = (form.get("key") or [""])[0]
    target = auth.safe_next((form.get("next") or ["/ui/"])[0])
    if not auth.key_matches(key, presented):
        return _render(request, "login.html", "login", {"next": target, "failed": True}, status=401)
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        auth.COOKIE,
        auth.new_session(key),
        max_age=auth.SESSION_MAX_AGE_S,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )
    return response


@router.post("/ui/logout")
async def logout() -> Response:
    response = RedirectResponse("/ui/login", status_code=303)
    response.delete_cookie(auth.COOKIE, path="/")
    return response


# ------------------------------------------------------------------------------------------ static


@router.get("/ui/static/{name}")
async def static_file(name: str) -> Response:
    """A file shipped in the package's static/ folder (flat: no sub-paths, no traversal)."""
    entry = _STATIC.joinpath(name)
    if "/" in name or name.startswith(".") or not entry.is_file():
        raise HTTPException(status_code=404, detail=f"no static file {name!r}")
    media_type = mimetypes.guess_type(name)[0] or "application/octet-stream"
    return Response(
        entry.read_bytes(), media_type=media_type, headers={"Cache-Control": "public, max-age=300"}
    )
