"""Stash Sense: the scene modal's performer buttons (contract A.3.5–A.3.7, A.4): search the local
performers ("Add as…"), create one from a stash-box performer and add it to the scene ("Add to
Stash + Scene"), add an existing one to the scene and optionally link its stash-box id.

The adapter talks to Stash itself here, as /health does: these are a few GraphQL calls on the
user's own Stash, with no model work for the server. Errors follow R1 (a non-empty `detail`) with
statuses a person can act on, where the original answered plain-text 500s: 400 Stash or the
stash-box not configured (or a bad id), 404 no such scene / performer / stash-box performer, 502
Stash or the stash-box refused the key or answered with an error, 503 unreachable."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictStr

from stash_vision.server.connections import StashConnection
from stash_vision.server.connections.errors import (
    SourceAuthFailed,
    SourceError,
    SourceNotFound,
    SourceUnreachable,
)
from stash_vision.server.connections.stash_performers import StashPerformers
from stash_vision.server.errors import InvalidInput
from stash_vision.settings import Settings

router = APIRouter()

# The plugin waits 30 s for create-performer: each GraphQL call gets 5 s and two retries, so an
# unreachable Stash is reported well inside that.
_TIMEOUT_S = 5.0
_RETRIES = 2


# Ids are strings in the plugin's bodies; a number is taken as its text, blanks are refused.
_ID = Annotated[str, Field(min_length=1)]
_BODY = ConfigDict(coerce_numbers_to_str=True, str_strip_whitespace=True)


class SearchRequest(BaseModel):
    query: StrictStr = ""


class CreateRequest(BaseModel):
    model_config = _BODY

    scene_id: _ID
    endpoint: _ID = "stashdb.org"  # the JS sends the match's domain, stashdb.org when it had none
    stashdb_id: _ID


class StashIdIn(BaseModel):
    model_config = _BODY

    endpoint: _ID
    stash_id: _ID


class LinkRequest(BaseModel):
    model_config = _BODY

    scene_id: _ID
    performer_id: _ID
    stash_ids: list[StashIdIn] = Field(default_factory=list)
    update_metadata: bool = False


def stash_performers(request: Request) -> StashPerformers:
    """One per app, made on first use from the app's settings; 400 when no Stash is configured."""
    state = request.app.state
    if getattr(state, "stash_performers", None) is None:
        settings: Settings = getattr(state, "settings", None) or Settings()
        stash = StashConnection.from_settings(settings, timeout_s=_TIMEOUT_S, retries=_RETRIES)
        if stash is None:
            raise HTTPException(
                status_code=400,
                detail="STASH_URL not configured: set STASH_VISION_STASH_URL (and STASH_VISION_STASH_API_KEY) "
                "to your Stash, e.g. http://localhost:9999, and restart stash-vision",
            )
        state.stash_performers = StashPerformers(stash, settings.stashbox_endpoints)
    performers: StashPerformers = state.stash_performers
    return performers


def source_http_error(error: Exception) -> HTTPException:
    """A Stash or stash-box failure as the status a person can act on (the message names the
    server and what to do)."""
    if isinstance(error, InvalidInput):
        return HTTPException(status_code=400, detail=str(error))
    if isinstance(error, SourceNotFound):
        return HTTPException(status_code=404, detail=str(error))
    if isinstance(error, SourceUnreachable):
        return HTTPException(status_code=503, detail=str(error))
    if isinstance(error, SourceAuthFailed):
        return HTTPException(status_code=502, detail=str(error))
    return HTTPException(status_code=502, detail=str(error) or type(error).__name__)


@router.post("/stash/search-performers")
async def search_performers(request: Request, body: SearchRequest) -> list[dict[str, Any]]:
    """A bare array, as the original (the JS also accepts {performers: [...]})."""
    actions = stash_performers(request)
    try:
        hits = await actions.search(body.query)
    except (SourceError, InvalidInput) as error:
        raise source_http_error(error) from None
    return [
        {
            "id": h.id,
            "name": h.name,
            "disambiguation": h.disambiguation,
            "alias_list": h.alias_list,
            "image_path": h.image_path,
        }
        for h in hits
    ]


@router.post("/stash/create-performer")
async def create_performer(request: Request, body: CreateRequest) -> dict[str, Any]:
    actions = stash_performers(request)
    try:
        created = await actions.create_from_stashbox(body.scene_id, body.endpoint, body.stashdb_id)
    except (SourceError, InvalidInput) as error:
        raise source_http_error(error) from None
    return {
        "performer_id": created.id,
        "name": created.name,
        "success": True,
        "created": created.created,
        "added_to_scene": created.added_to_scene,
    }


@router.post("/stash/link-performer")
async def link_performer(request: Request, body: LinkRequest) -> dict[str, Any]:
    actions = stash_performers(request)
    pairs = [(s.endpoint, s.stash_id) for s in body.stash_ids]
    try:
        linked = await actions.link(body.scene_id, body.performer_id, pairs, body.update_metadata)
    except (SourceError, InvalidInput) as error:
        raise source_http_error(error) from None
    return {
        "success": True,
        "added_to_scene": linked.added_to_scene,
        "stash_ids_added": [{"endpoint": e, "stash_id": s} for e, s in linked.stash_ids_added],
    }
