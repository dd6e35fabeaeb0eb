"""A Stash stand-in on Stash's real schema (../shared/stash-api/stash/schema): fixture performers,
scenes, images and galleries pointing at ../shared/testdata, resolvers for exactly the queries
stash-vision sends, and Stash's media routes (`/scene/{id}/stream` with HTTP Range,
`/image/{id}/image`, `/performer/{id}/image`) behind the same ApiKey check.

Paths in answers are as STASH sees them (`/stash-media/...`), so tests exercise path mappings; a
scene under `/remote-only/` is not readable here and must be streamed."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ariadne import MutationType, ObjectType, UnionType
from starlette.requests import Request
from starlette.responses import FileResponse, PlainTextResponse, Response
from starlette.routing import Route

from tests.standins import stash_performer_writes, stash_tag_writes
from tests.standins.graphql_server import StandInServer, base_url

STASH_PATH = "/stash-media"  # where Stash sees ../shared/testdata
REMOTE_PATH = "/remote-only"  # a folder nothing maps to: only Stash can read it
VERSION = "v0.30.1"
STASHDB = "https://stashdb.org/graphql"
FANSDB = "https://fansdb.cc/graphql"


@dataclass
class Fixtures:
    """Objects keyed by id; `_real` is the file the stand-in serves, `path` what Stash reports."""

    performers: dict[str, dict[str, Any]] = field(default_factory=dict)
    scenes: dict[str, dict[str, Any]] = field(default_factory=dict)
    images: dict[str, dict[str, Any]] = field(default_factory=dict)
    galleries: dict[str, list[str]] = field(default_factory=dict)  # gallery id -> image ids
    tags: dict[str, dict[str, Any]] = field(default_factory=dict)
    markers: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every mutation the stand-in executed, in order: (mutation field name, its arguments).
    mutations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


def default_fixtures(testdata: Path, zip_path: Path | None = None, extra_performers: int = 30) -> Fixtures:
    faces = testdata / "faces" / "deepface"
    fx = Fixtures()

    def performer(
        pid: str, name: str, image: Path | None, aliases: list[str], stash_ids: list[tuple[str, str]]
    ) -> None:
        fx.performers[pid] = {
            "id": pid,
            "name": name,
            "alias_list": aliases,
            "stash_ids": [
                {"endpoint": e, "stash_id": s, "updated_at": "2025-01-01T00:00:00Z"} for e, s in stash_ids
            ],
            "custom_fields": {},
            "_real": image,
        }

    performer("1", "Alice", faces / "img1.jpg", ["Ally"], [(STASHDB, "6f6a-alice")])
    performer("2", "Bea", faces / "img13.jpg", [], [])
    performer("3", "Cora", faces / "img20.jpg", ["C."], [(STASHDB, "6f6a-cora"), (FANSDB, "77aa-cora")])
    for n in range(extra_performers):
        performer(str(100 + n), f"Extra {n}", None, [], [])

    def image(
        iid: str, real: Path, performers: list[str], galleries: list[str], path: str | None = None
    ) -> None:
        fx.images[iid] = {
            "id": iid,
            "_real": real,
            "_path": path or f"{STASH_PATH}/{real.relative_to(testdata)}",
            "_zip": None,
            "_performers": performers,
        }
        for g in galleries:
            fx.galleries.setdefault(g, []).append(iid)

    image("1", faces / "img2.jpg", ["1"], ["1"])
    image("2", faces / "img4.jpg", ["1", "2"], ["1"])
    image("3", faces / "img5.jpg", ["1"], [])
    image("4", faces / "img14.jpg", ["2"], ["1"])
    image("5", faces / "couple.jpg", ["1", "2"], [])
    image("6", testdata / "images" / "building.jpg", [], ["1"])
    image("7", faces / "img6.jpg", ["1"], [], path=f"{REMOTE_PATH}/img6.jpg")
    image("90", testdata / "faces" / "deepface" / "identity_groups.txt", [], [])  # served, but no image
    if zip_path is not None:
        image("8", zip_path, ["3"], ["2"], path=f"{STASH_PATH}/archive.zip/inner/img21.jpg")
        fx.images["8"]["_zip"] = (f"{STASH_PATH}/archive.zip", "inner/img21.jpg")

    video = testdata / "video"
    fx.scenes["1"] = {
        "id": "1",
        "_real": video / "box.mp4",
        "_path": f"{STASH_PATH}/video/box.mp4",
        "_performers": ["1"],
    }
    fx.scenes["2"] = {
        "id": "2",
        "_real": video / "cup.mp4",
        "_path": f"{REMOTE_PATH}/cup.mp4",
        "_performers": ["1", "3"],
    }
    fx.scenes["3"] = {  # Cora alone, only streamable: a solo scene a face source reads over HTTP
        "id": "3",
        "_real": video / "Megamind.avi",
        "_path": f"{REMOTE_PATH}/Megamind.avi",
        "_performers": ["3"],
    }
    return fx


def make_zip(testdata: Path, folder: Path) -> Path:
    """A gallery zip whose member `inner/img21.jpg` is Cora's face (Stash reports zip members as
    `<zip path>/<member>`)."""
    path = folder / "archive.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.write(testdata / "faces" / "deepface" / "img21.jpg", "inner/img21.jpg")
    return path


def _page(items: list[Any], flt: dict[str, Any] | None) -> list[Any]:
    flt = flt or {}
    per_page = flt.get("per_page") or 25
    if per_page == -1:
        return items
    page = flt.get("page") or 1
    return items[(page - 1) * per_page : page * per_page]


def _ids(criterion: dict[str, Any]) -> set[str]:
    return set(criterion.get("value") or [])


class StashStandIn(StandInServer):
    def __init__(self, schema_dir: Path, fixtures: Fixtures, api_key: str | None = None) -> None:
        self.fx = fixtures
        query, scene, image, performer = (ObjectType(n) for n in ("Query", "Scene", "Image", "Performer"))
        query.set_field("version", lambda *_: {"version": VERSION, "hash": "abc", "build_time": "now"})
        query.set_field("findScene", lambda _, __, id=None, **___: self.fx.scenes.get(str(id)))
        query.set_field("findImage", lambda _, __, id=None, **___: self.fx.images.get(str(id)))
        query.set_field("findImages", self._find_images)
        query.set_field("findGallery", self._find_gallery)
        query.set_field("findScenes", self._find_scenes)
        query.set_field("findPerformers", self._find_performers)
        scene.set_field("files", self._scene_files)
        scene.set_field("paths", self._scene_paths)
        scene.set_field("performers", lambda obj, _: [self.fx.performers[p] for p in obj["_performers"]])
        image.set_field("visual_files", self._image_files)
        image.set_field("paths", lambda obj, info: {"image": f"{base_url(info)}/image/{obj['id']}/image"})
        image.set_field("performers", lambda obj, _: [self.fx.performers[p] for p in obj["_performers"]])
        performer.set_field("image_path", self._performer_image)
        mutation = MutationType()
        extra: list[ObjectType | UnionType] = []
        # Writes (and the reads that go with them) live in their own modules, one per concern.
        for module in (stash_performer_writes, stash_tag_writes):
            extra.extend(
                module.bind(self, query, mutation, {"Scene": scene, "Image": image, "Performer": performer})
            )
        routes = [
            Route("/scene/{id}/stream", self._stream),
            Route("/scene/{id}/screenshot", self._screenshot),
            Route("/image/{id}/image", self._image),
            Route("/performer/{id}/image", self._performer_image_file),
        ]
        super().__init__(
            schema_dir,
            [query, mutation, scene, image, performer, UnionType("VisualFile"), *extra],
            routes,
            api_key=api_key,
            allow_query_key=True,
        )

    # ----------------------------------------------------------------------------- resolvers
    def _find_images(
        self,
        _: Any,
        __: Any,
        image_filter: dict[str, Any] | None = None,
        filter: dict[str, Any] | None = None,
        ids: list[str] | None = None,
    ) -> dict[str, Any]:
        images = sorted(self.fx.images.values(), key=lambda i: int(i["id"]))
        if ids is not None:
            images = [i for i in images if i["id"] in ids]
        for key, crit in (image_filter or {}).items():
            if key == "galleries" and crit["modifier"] == "INCLUDES":
                wanted = {i for g in _ids(crit) for i in self.fx.galleries.get(g, [])}
                images = [i for i in images if i["id"] in wanted]
            elif key == "performers" and crit["modifier"] in ("INCLUDES", "INCLUDES_ALL"):
                test = any if crit["modifier"] == "INCLUDES" else all
                images = [i for i in images if test(p in i["_performers"] for p in _ids(crit))]
            elif key == "performer_count" and crit["modifier"] == "EQUALS":
                images = [i for i in images if len(i["_performers"]) == crit["value"]]
            else:
                raise ValueError(f"stand-in: image_filter {key} {crit} not implemented")
        return {"count": len(images), "megapixels": 0.0, "filesize": 0.0, "images": _page(images, filter)}

    def _find_gallery(self, _: Any, __: Any, id: str | None = None) -> dict[str, Any] | None:
        images = self.fx.galleries.get(str(id))
        return None if images is None else {"id": str(id), "image_count": len(images)}

    def _find_scenes(
        self,
        _: Any,
        __: Any,
        scene_filter: dict[str, Any] | None = None,
        filter: dict[str, Any] | None = None,
        **___: Any,
    ) -> dict[str, Any]:
        scenes = sorted(self.fx.scenes.values(), key=lambda s: int(s["id"]))
        for key, crit in (scene_filter or {}).items():
            if key == "performers" and crit["modifier"] == "INCLUDES":
                scenes = [s for s in scenes if _ids(crit) & set(s["_performers"])]
            elif key == "performer_count" and crit["modifier"] == "EQUALS":
                scenes = [s for s in scenes if len(s["_performers"]) == crit["value"]]
            else:
                raise ValueError(f"stand-in: scene_filter {key} {crit} not implemented")
        return {"count": len(scenes), "duration": 0.0, "filesize": 0.0, "scenes": _page(scenes, filter)}

    def _find_performers(
        self,
        _: Any,
        __: Any,
        performer_filter: dict[str, Any] | None = None,
        filter: dict[str, Any] | None = None,
        **___: Any,
    ) -> dict[str, Any]:
        if performer_filter:
            raise ValueError(f"stand-in: performer_filter {performer_filter} not implemented")
        performers = sorted(self.fx.performers.values(), key=lambda p: int(p["id"]))
        return {"count": len(performers), "performers": _page(performers, filter)}

    def _scene_files(self, obj: dict[str, Any], _: Any) -> list[dict[str, Any]]:
        import av

        with av.open(str(obj["_real"])) as container:
            stream = container.streams.video[0]
            duration = float(container.duration or 0) / 1_000_000
            rate = float(stream.average_rate or 0)
            width, height = stream.codec_context.width, stream.codec_context.height
        return [
            {"path": obj["_path"], "duration": duration, "width": width, "height": height, "frame_rate": rate}
        ]

    def _scene_paths(self, obj: dict[str, Any], info: Any) -> dict[str, Any]:
        base = f"{base_url(info)}/scene/{obj['id']}"
        key = f"?apikey={self.api_key}" if self.api_key else ""  # as Stash's own stream URLs
        return {
            "stream": f"{base}/stream{key}",
            "screenshot": f"{base}/screenshot",
            "sprite": None,
            "vtt": None,
        }

    def _image_files(self, obj: dict[str, Any], _: Any) -> list[dict[str, Any]]:
        zip_file = {"path": obj["_zip"][0]} if obj["_zip"] else None
        return [
            {"__typename": "ImageFile", "path": obj["_path"], "width": 1, "height": 1, "zip_file": zip_file}
        ]

    def _performer_image(self, obj: dict[str, Any], info: Any) -> str:
        url = f"{base_url(info)}/performer/{obj['id']}/image"
        return url if obj["_real"] is not None else url + "?default=true"  # as Stash does

    # ----------------------------------------------------------------------------- media routes
    async def _stream(self, request: Request) -> Response:
        scene = self.fx.scenes.get(request.path_params["id"])
        if scene is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(scene["_real"], media_type="video/mp4")

    async def _screenshot(self, request: Request) -> Response:
        """A scene's `_screenshot` file; 404 (as for a scene Stash made no screenshot of) without one."""
        scene = self.fx.scenes.get(request.path_params["id"])
        if scene is None or scene.get("_screenshot") is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(scene["_screenshot"], media_type="image/jpeg")

    async def _image(self, request: Request) -> Response:
        image = self.fx.images.get(request.path_params["id"])
        if image is None:
            return PlainTextResponse("not found", status_code=404)
        if image["_zip"]:
            with zipfile.ZipFile(image["_real"]) as archive:
                return Response(archive.read(image["_zip"][1]), media_type="image/jpeg")
        if image["_real"].suffix == ".txt":
            return PlainTextResponse(image["_real"].read_text())
        return FileResponse(image["_real"], media_type="image/jpeg")

    async def _performer_image_file(self, request: Request) -> Response:
        performer = self.fx.performers.get(request.path_params["id"])
        if performer is None or performer["_real"] is None:
            return PlainTextResponse("not found", status_code=404)
        return FileResponse(performer["_real"], media_type="image/jpeg")
