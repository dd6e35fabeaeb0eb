"""A stash-box stand-in on stash-box's real schema (../shared/stash-api/stash-box/schema):
fixture performers with face images from ../shared/testdata, `findPerformer`, `queryPerformers` honouring page,
per_page, sort (UPDATED_AT, CREATED_AT, NAME) and direction, and `/images/{id}?size=` scaling the
image like stash-box does. Any other filter the client might send fails loudly rather than being
ignored."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ariadne import ObjectType
from PIL import Image
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from tests.standins.graphql_server import StandInServer, base_url

VERSION = "0.6.9"
EPOCH = datetime(2025, 1, 1, tzinfo=UTC)
_DEFAULTS = {"page", "per_page", "sort", "direction"}
_SORT_KEYS = {"UPDATED_AT": "_updated", "CREATED_AT": "_created", "NAME": "name"}


def default_performers(testdata: Path, extra: int = 27) -> dict[str, dict[str, Any]]:
    """Five performers with faces (groups of identity_groups.txt) and `extra` without images;
    performer n was updated n hours after EPOCH."""
    faces = testdata / "faces" / "deepface"
    people = [
        ("Alice", ["img1.jpg", "img2.jpg"]),
        ("Bea", ["img13.jpg"]),
        ("Cora", ["img20.jpg", "img21.jpg"]),
        ("Dana", ["img16.jpg"]),
        ("Eve", ["img3.jpg"]),
    ] + [(f"Extra {n}", []) for n in range(extra)]
    return performers_of([(name, [faces / f for f in files]) for name, files in people])


def performers_of(people: list[tuple[str, list[Path]]]) -> dict[str, dict[str, Any]]:
    """Performer n (id `00000000-0000-4000-8000-<n>`) with its images (ids `<n>-<k>`), updated n
    hours after EPOCH."""
    performers: dict[str, dict[str, Any]] = {}
    for n, (name, files) in enumerate(people):
        pid = f"00000000-0000-4000-8000-{n:012d}"
        performers[pid] = {
            "id": pid,
            "name": name,
            "disambiguation": None,
            "aliases": [f"{name} A."],
            "gender": "FEMALE",
            "country": "US",
            "deleted": False,
            "merged_into_id": None,
            "_created": EPOCH,
            "_updated": EPOCH + timedelta(hours=n),
            "_images": [(f"{pid[-12:]}-{k}", path) for k, path in enumerate(files)],
        }
    return performers


class StashBoxStandIn(StandInServer):
    def __init__(
        self, schema_dir: Path, performers: dict[str, dict[str, Any]], api_key: str | None = None
    ) -> None:
        self.performers = performers
        self.image_sizes: list[str] = []
        query, performer = ObjectType("Query"), ObjectType("Performer")
        query.set_field(
            "version", lambda *_: {"version": VERSION, "hash": "x", "build_time": "x", "build_type": "x"}
        )
        query.set_field("queryPerformers", self._query_performers)
        query.set_field("findPerformer", lambda _, __, id: self.performers.get(str(id)))
        performer.set_field("updated", lambda obj, _: obj["_updated"].isoformat().replace("+00:00", "Z"))
        performer.set_field("images", self._images)
        performer.set_field("urls", lambda obj, _: obj.get("urls") or [])  # fixtures may leave it out
        super().__init__(
            schema_dir, [query, performer], [Route("/images/{id}", self._image)], api_key=api_key
        )

    def touch(self, pid: str, when: datetime) -> None:
        self.performers[pid]["_updated"] = when

    def _query_performers(self, _: Any, __: Any, input: dict[str, Any]) -> dict[str, Any]:
        unknown = set(input) - _DEFAULTS
        if unknown:
            raise ValueError(f"stand-in: PerformerQueryInput {sorted(unknown)} not implemented")
        key = _SORT_KEYS[input["sort"]]
        rows = sorted(
            self.performers.values(), key=lambda p: (p[key], p["id"]), reverse=input["direction"] == "DESC"
        )
        page, per_page = input["page"], input["per_page"]
        return {"count": len(rows), "performers": rows[(page - 1) * per_page : page * per_page]}

    def _images(self, obj: dict[str, Any], info: Any) -> list[dict[str, Any]]:
        images = []
        for image_id, path in obj["_images"]:
            with Image.open(path) as image:
                width, height = image.size
            images.append(
                {
                    "id": image_id,
                    "url": f"{base_url(info)}/images/{image_id}",
                    "width": width,
                    "height": height,
                }
            )
        return images

    async def _image(self, request: Request) -> Response:
        size = request.query_params.get("size", "full")
        self.image_sizes.append(size)
        found = [
            path
            for p in self.performers.values()
            for i, path in p["_images"]
            if i == request.path_params["id"]
        ]
        if not found or size not in ("300", "600", "1280", "full"):
            return PlainTextResponse("not found", status_code=404)
        with Image.open(found[0]) as image:
            if size != "full":
                image.thumbnail((int(size), int(size)))
            out = io.BytesIO()
            image.convert("RGB").save(out, "JPEG")
        return Response(out.getvalue(), media_type="image/jpeg")
