"""What the AI Overhaul plugin sends, and the gateway's error replies (contract B.1).

Request models follow the gateway's `schemas/api_schema.py`: unknown fields are ignored (the plugin
sends `entity.url`), limits as there, an invalid body is FastAPI's 422 `{"detail": [...]}`. Bodies
are read with a size cap before any parsing, so a huge gallery costs at most the cap in memory."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal, Self, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from stash_vision.server.jobs.kinds.stash_ai_results import utc_iso

M = TypeVar("M", bound=BaseModel)


def gateway_error(status: int, message: str) -> JSONResponse:
    """The gateway's own error body (its HTTPException handler), used for our 404s, 413s, 503s."""
    return JSONResponse(
        {"success": False, "error": message, "code": str(status), "timestamp": utc_iso()}, status_code=status
    )


class BodyTooLarge(Exception):
    pass


async def read_capped(request: Request, limit: int) -> bytes:
    """The request body, or BodyTooLarge as soon as it passes `limit` bytes (declared or sent)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


def too_large(limit: int) -> JSONResponse:
    return gateway_error(
        413,
        f"request body over {limit // (1024 * 1024)} MiB (STASH_VISION_STASH_AI_MAX_BODY_BYTES); "
        "send fewer or smaller images",
    )


def parse_body(model: type[M], body: bytes) -> M:
    """The validated model; RequestValidationError (FastAPI's 422 body) otherwise."""
    try:
        return model.model_validate_json(body or b"null")
    except ValidationError as error:
        raise RequestValidationError([_located(e) for e in error.errors(include_url=False)]) from None


def _located(error: Any) -> dict[str, Any]:
    """The error under `body`. An unparsable body's `input` is the raw bytes, which FastAPI's 422
    answer would decode as UTF-8 (a 500 on invalid UTF-8, found by fuzzing): it carries them as
    text with the bad bytes replaced."""
    raw = error.get("input")
    shown = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    return {**error, "loc": ("body", *error["loc"]), "input": shown}


def decode_base64(text: str) -> bytes:
    """Standard base64, optionally as a data URL (`data:image/jpeg;base64,...`); ValueError if not."""
    payload = text.strip()
    if payload.startswith("data:"):
        header, comma, payload = payload.partition(",")
        if not comma or not header.endswith(";base64"):
            raise ValueError("a data: URL without ';base64,'")
    try:
        data = base64.b64decode("".join(payload.split()), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("not valid base64") from None
    if not data:
        raise ValueError("empty image data")
    return data


# ------------------------------------------------------------------------------------------ models


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore")


class StashEntity(_Lenient):
    id: Annotated[str, Field(min_length=1, max_length=200)]
    type: Literal["scene", "gallery", "image", "performer", "group"]
    title: Annotated[str, Field(max_length=2000)] | None = None
    path: Annotated[str, Field(max_length=4000)] | None = None
    metadata: dict[str, Any] | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) and not isinstance(value, bool) else value

    def stored(self) -> dict[str, Any]:
        """What a job keeps of it (metadata is the plugin's and may be large)."""
        return self.model_dump(include={"id", "type", "title", "path"}, exclude_none=True)


class ImageData(_Lenient):
    data: str
    format: str = "jpeg"
    _bytes: bytes = PrivateAttr(b"")

    @model_validator(mode="after")
    def _decode(self) -> Self:
        self._bytes = decode_base64(self.data)  # ValueError: a 422 naming image_data.data
        return self

    @property
    def content(self) -> bytes:
        return self._bytes


class RequestBase(_Lenient):
    request_id: str | None = None
    client_id: str | None = None
    priority: Annotated[int, Field(ge=1, le=10)] = 1
    timeout: Annotated[int, Field(ge=5, le=300)] = 30


class FacialRecognitionRequest(RequestBase):
    entity: StashEntity
    image_data: ImageData | None = None
    threshold: Annotated[float, Field(ge=0.0, le=1.0)] = 0.5
    max_results: Annotated[int, Field(ge=1, le=50)] = 5
    batch_job_id: str | None = None

    def job_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {
            "entity": self.entity.stored(),
            "threshold": self.threshold,
            "max_results": self.max_results,
        }
        if self.request_id is not None:
            params["request_id"] = self.request_id
        return params


class SceneIdentificationRequest(FacialRecognitionRequest):
    analyze_frames: bool = True
    frame_interval: Annotated[int, Field(ge=1, le=60)] = 10
    use_existing_screenshots: bool = True


class GalleryImage(_Lenient):
    """One image of a gallery body. Bad base64 is not a 422 here: like the original, one bad image
    does not refuse the gallery; it is reported as that image's error."""

    id: str | int | None = None
    url: str | None = None
    title: str | None = None
    base64: str | None = None

    def decoded(self) -> bytes | str:
        """The bytes, or why there are none."""
        if not self.base64:
            return "the plugin sent no image data for this image"
        try:
            return decode_base64(self.base64)
        except ValueError as error:
            return f"image data is {error}"

    def meta(self) -> dict[str, Any]:
        return {"id": None if self.id is None else str(self.id), "url": self.url, "title": self.title}


class GalleryIdentificationRequest(FacialRecognitionRequest):
    batch_size: Annotated[int, Field(ge=1, le=100)] = 10
    skip_low_quality: bool = True
    images: list[GalleryImage] | None = None


class FaceComparisonRequest(RequestBase):
    performer1_id: str
    performer2_id: str
    comparison_models: list[str] = Field(default_factory=lambda: ["arcface", "facenet"])
