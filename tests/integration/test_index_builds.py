"""Face-index builds from three sources at once on the real stack (SCRFD + MobileFaceNet in Triton):
a stash-box stand-in and an own-Stash stand-in on the real GraphQL schemas, and a folder, with the
real photos of ../shared/testdata/faces/deepface (issue 12, "Face index lifecycle", builds).

Each identity group (extended by the photos the labelled pairs tie to it) is one performer, its
enrolment photos spread over the three sources and pooled by universal id (`127.0.0.1:<uuid>`:
Stash links the performer to the stash-box stand-in's GraphQL URL, the folder's performer.json
names the same URL); one photo per group is held out. A photo of a person in no group is planted
in three performers' stash-box galleries. The stash-box stand-in counts requests (budget) and
answers one 429 during the first build."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stash_vision.server.faces.profile import load_profile
from tests.conftest import shared_dir, shared_file
from tests.integration.test_face_identification import FACES, identity_groups, same_person
from tests.integration.test_jobs import inference_count, results, submit, wait_for
from tests.stack import Stack, start_stack
from tests.standins.fixtures import STASH_KEY, STASHBOX_KEY, stash_schema, stashbox_schema
from tests.standins.stash import STASH_PATH, Fixtures, StashStandIn
from tests.standins.stashbox import StashBoxStandIn, performers_of

pytestmark = pytest.mark.integration

BUDGET = 10  # stash-box requests per minute: the first build needs more (it waits for the next minute)
BOX = "testbox"
PLANTED = "img26.jpg"  # a person in no identity group
PLANTED_IN = ("group00", "group04", "group08")
NEWCOMER = ["img29.jpg", "img30.jpg", "img31.jpg"]  # another person in no group: the third build's
SOURCES = ("stash-box", "stash", "folder")
PROFILE = load_profile("default")
# Per new image: the detector once, each embedder on the largest face (and its mirror when it
# flip-averages).
INFERENCES_PER_IMAGE = 1 + sum(2 if e.flip_average else 1 for e in PROFILE.embedders)


def uuid(n: int) -> str:
    return f"00000000-0000-4000-8000-{n:012d}"


@dataclass
class Library:
    """Who is where: enrolment photos per group and source, held-out photos, and the image each
    face of an index came from (by the key a source gives it)."""

    enrol: dict[str, dict[str, list[str]]] = field(default_factory=dict)  # group -> source -> photos
    held_out: dict[str, str] = field(default_factory=dict)  # photo -> group
    box_images: dict[str, str] = field(default_factory=dict)  # stash-box image id -> photo
    stash_profiles: dict[str, str] = field(default_factory=dict)  # Stash performer id -> photo

    def photos(self, group: str) -> list[str]:
        return [p for files in self.enrol[group].values() for p in files]

    def photo_of(self, key: str) -> str:
        """The photo behind a face's source key (a stash-box or Stash URL, or a path)."""
        if "/images/" in key:
            return self.box_images[key.split("/images/", 1)[1].split("?", 1)[0]]
        if "/performer/" in key:
            return self.stash_profiles[key.split("/performer/", 1)[1].split("/", 1)[0]]
        return Path(key).name


def extended_groups() -> dict[str, list[str]]:
    """identity_groups.txt, each group extended by the photos the labelled pairs tie to it."""
    find = same_person()
    photos = sorted(p.name for p in shared_dir().joinpath(FACES).glob("img*.jpg") if "_" not in p.name)
    groups = {}
    for group, files in identity_groups().items():
        roots = {find(f) for f in files}
        groups[group] = files + [p for p in photos if p not in files and find(p) in roots]
    return groups


def plan() -> Library:
    """Holds out each group's last identity_groups.txt photo; spreads the rest over the sources."""
    library = Library()
    for g, (group, files) in enumerate(extended_groups().items()):
        held = identity_groups()[group][-1]
        library.held_out[held] = group
        enrol = [f for f in files if f != held]
        library.enrol[group] = {s: [] for s in SOURCES}
        for j, photo in enumerate(enrol):
            library.enrol[group][SOURCES[(g + j) % len(SOURCES)]].append(photo)
    return library


def box_performers(library: Library, extra: int = 20) -> dict[str, dict[str, Any]]:
    """One per group (the planted photo last in three galleries), and `extra` without images so
    that the walk takes two pages; performer n is `uuid(n)`."""
    faces = shared_dir() / FACES
    people = []
    for name, sources in library.enrol.items():
        files = [*sources["stash-box"], PLANTED] if name in PLANTED_IN else sources["stash-box"]
        people.append((name, [faces / f for f in files]))
    performers = performers_of(people + [(f"Extra {n}", []) for n in range(extra)])
    library.box_images = {i: path.name for p in performers.values() for i, path in p["_images"]}
    return performers


def stash_fixtures(library: Library, box_endpoint: str) -> Fixtures:
    """One Stash performer per group linked to the stash-box performer: its first photo is the
    profile image (downloaded from Stash), the others solo images (read from the mapped path)."""
    testdata = shared_dir() / "testdata"
    fx = Fixtures()
    for n, (group, sources) in enumerate(library.enrol.items()):
        pid, files = str(n + 1), sources["stash"]
        profile = testdata / FACES.removeprefix("testdata/") / files[0] if files else None
        fx.performers[pid] = {
            "id": pid,
            "name": f"{group} (Stash)",
            "alias_list": [],
            "stash_ids": [
                {"endpoint": box_endpoint, "stash_id": uuid(n), "updated_at": "2025-01-01T00:00:00Z"}
            ],
            "custom_fields": {},
            "_real": profile,
        }
        if files:
            library.stash_profiles[pid] = files[0]
        for photo in files[1:]:
            iid = str(len(fx.images) + 1)
            fx.images[iid] = {
                "id": iid,
                "_real": testdata / FACES.removeprefix("testdata/") / photo,
                "_path": f"{STASH_PATH}/{FACES.removeprefix('testdata/')}/{photo}",
                "_zip": None,
                "_performers": [pid],
            }
    return fx


def write_folder(root: Path, library: Library, box_endpoint: str, groups: dict[str, list[str]]) -> Path:
    """FOLDER/<group>/<photos> with a performer.json naming the stash-box performer."""
    for group, photos in groups.items():
        folder = root / group
        folder.mkdir(parents=True, exist_ok=True)
        if group in library.enrol:
            stash_ids = [{"endpoint": box_endpoint, "stash_id": uuid(list(library.enrol).index(group))}]
            (folder / "performer.json").write_text(json.dumps({"name": group, "stash_ids": stash_ids}))
        for photo in photos:
            os.symlink(shared_file(f"{FACES}/{photo}"), folder / photo)
    return root


@dataclass
class Scenario:
    stack: Stack
    box: StashBoxStandIn
    stash: StashStandIn
    library: Library
    folder: Path
    work: Path


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Scenario]:
    work = tmp_path_factory.mktemp("index-builds")
    library = plan()
    box = StashBoxStandIn(stashbox_schema(), box_performers(library), api_key=STASHBOX_KEY)
    with box:
        endpoint = f"{box.url}/graphql"
        stash = StashStandIn(stash_schema(), stash_fixtures(library, endpoint), api_key=STASH_KEY)
        with stash:
            folder = write_folder(
                work / "enrol", library, endpoint, {g: s["folder"] for g, s in library.enrol.items()}
            )
            boxes = [
                {
                    "name": BOX,
                    "endpoint": endpoint,
                    "api_key": STASHBOX_KEY,
                    "max_requests_per_minute": BUDGET,
                }
            ]
            stack = start_stack(
                work,
                shared_dir() / "models",
                models=["scrfd_500m", "mobilefacenet"],
                extra_env={
                    "STASH_VISION_STASH_URL": stash.url,
                    "STASH_VISION_STASH_API_KEY": STASH_KEY,
                    "STASH_VISION_STASHBOX_ENDPOINTS": json.dumps(boxes),
                    "STASH_VISION_PATH_MAPPINGS": json.dumps({STASH_PATH: str(shared_dir() / "testdata")}),
                },
            )
            try:
                yield Scenario(stack, box, stash, library, folder, work)
            finally:
                stack.stop()


def sources(folder: Path) -> list[dict[str, Any]]:
    return [{"kind": "stash-box", "name": BOX}, {"kind": "stash"}, {"kind": "folder", "path": str(folder)}]


def build(stack: Stack, params: dict[str, Any]) -> dict[str, Any]:
    """Runs a build-face-index job to the end; its result."""
    job = submit(stack, "build-face-index", params)
    done = wait_for(stack, job["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", (done, stack.log()[-4000:])
    [item] = results(stack, job["id"])
    assert item["state"] == "done", item
    result: dict[str, Any] = item["result"]
    return result


def indexed_faces(stack: Stack, version: str) -> list[tuple[str, str]]:
    """(performer universal id, source key) of every face in a version's performers.db."""
    db = stack.data_dir / "face_indexes" / "default" / version / "performers.db"
    with sqlite3.connect(db) as connection:
        rows = connection.execute(
            "SELECT p.universal_id, f.source_endpoint FROM faces f JOIN performers p ON p.id = f.performer_id"
        ).fetchall()
    return [(str(a), str(b)) for a, b in rows]


def top1_accuracy(stack: Stack, library: Library, version: str) -> float:
    """Held-out photos whose best match (HTTP /identify) is their group's performer."""
    expected = {group: f"127.0.0.1:{uuid(n)}" for n, group in enumerate(library.enrol)}
    correct = 0
    for photo, group in library.held_out.items():
        response = httpx.post(
            f"{stack.http}/identify",
            json={"image_path": str(shared_file(f"{FACES}/{photo}")), "top_k": 1},
            timeout=60,
        )
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["index_version"] == version
        matches = answer["faces"][0]["matches"] if answer["faces"] else []
        correct += bool(matches) and matches[0]["performer_id"] == expected[group]
    return correct / len(library.held_out)


@dataclass(frozen=True)
class FirstBuild:
    result: dict[str, Any]
    top1: float  # on the held-out photos
    graphql_requests: int  # at the stash-box


@pytest.fixture(scope="module")
def first(scenario: Scenario) -> FirstBuild:
    """The first build (stash-box answers its first request with a 429), and its top-1."""
    before = scenario.box.traffic.count("/graphql")
    scenario.box.fail_next(429, retry_after="1")
    result = build(scenario.stack, {"sources": sources(scenario.folder)})
    requests = scenario.box.traffic.count("/graphql") - before
    return FirstBuild(result, top1_accuracy(scenario.stack, scenario.library, result["version"]), requests)


def test_three_sources_build_one_version_with_per_source_statistics(
    scenario: Scenario, first: FirstBuild
) -> None:
    result = first.result
    library = scenario.library
    assert result["activated"] and result["performers"] == len(library.enrol), result
    stats = result["sources"]
    names = {
        "stash-box": f"stash-box:{BOX}",
        "stash": f"stash:Stash at {scenario.stash.url}",
        "folder": f"folder:{scenario.folder.resolve()}",
    }
    assert set(stats) == set(names.values())
    box, stash, folder = (stats[names[s]] for s in SOURCES)
    planted = len(PLANTED_IN)
    # Performers without images (the extras, groups with no photo there) are skipped.
    assert box["performers"] == sum(1 for g, s in library.enrol.items() if s["stash-box"] or g in PLANTED_IN)
    assert box["images"] == sum(len(s["stash-box"]) for s in library.enrol.values()) + planted, box
    assert stash["performers"] == sum(1 for s in library.enrol.values() if s["stash"]), stash
    assert stash["images"] == sum(len(s["stash"]) for s in library.enrol.values()), stash
    assert folder["performers"] == sum(1 for s in library.enrol.values() if s["folder"]), folder
    assert folder["images"] == sum(len(s["folder"]) for s in library.enrol.values()), folder
    assert sum(s["faces_kept"] for s in stats.values()) == result["faces"]
    # Pooled: one performer per group, with faces from every source it is in.
    faces = indexed_faces(scenario.stack, result["version"])
    assert {pid for pid, _ in faces} == {f"127.0.0.1:{uuid(n)}" for n in range(len(library.enrol))}
    group00 = {library.photo_of(key) for pid, key in faces if pid == f"127.0.0.1:{uuid(0)}"}
    assert all(group00 & set(photos) for photos in library.enrol["group00"].values()), group00


def test_the_planted_photo_is_rejected_3_of_3_and_the_true_photos_kept(
    scenario: Scenario, first: FirstBuild
) -> None:
    result = first.result
    library = scenario.library
    box = result["sources"][f"stash-box:{BOX}"]
    faces = indexed_faces(scenario.stack, result["version"])
    kept = {(pid, library.photo_of(key)) for pid, key in faces}
    assert not any(photo == PLANTED for _, photo in kept), "no planted photo in the index"
    assert box["rejected"].get("outlier", 0) >= len(PLANTED_IN), box
    true = {
        (f"127.0.0.1:{uuid(n)}", p) for n, group in enumerate(library.enrol) for p in library.photos(group)
    }
    assert kept <= true, kept - true
    assert len(kept) >= 0.95 * len(true), (len(kept), len(true), sorted(true - kept))
    outliers = sum(s["rejected"].get("outlier", 0) for s in result["sources"].values())
    assert outliers - len(PLANTED_IN) <= len(true) - len(kept), "every other outlier is a true photo lost"


def test_stash_box_requests_keep_to_the_budget_and_a_429_is_retried(
    scenario: Scenario, first: FirstBuild
) -> None:
    # One query page per 25 performers (29 here: two pages), plus the one answered 429.
    assert first.graphql_requests == 3
    assert not any(f.count for f in scenario.box.faults), "the 429 was served"
    assert scenario.box.traffic.count() > BUDGET, "the budget was binding"
    assert scenario.box.traffic.max_in_window(60.0) <= BUDGET


def test_a_rebuild_runs_no_inference_and_a_new_performer_only_its_own(
    scenario: Scenario, first: FirstBuild
) -> None:
    stack, library = scenario.stack, scenario.library
    before, downloads = inference_count(stack), scenario.box.traffic.count("/images/")
    again = build(stack, {"sources": sources(scenario.folder)})
    assert inference_count(stack) == before, "unchanged inputs: Triton ran no inference"
    assert again["faces"] == first.result["faces"] and again["performers"] == first.result["performers"]
    assert all(s["cached"] == s["images"] for s in again["sources"].values()), again["sources"]

    write_folder(scenario.folder, library, "", {"Newcomer": NEWCOMER})
    before = inference_count(stack)
    third = build(stack, {"sources": sources(scenario.folder)})
    assert inference_count(stack) - before == INFERENCES_PER_IMAGE * len(NEWCOMER)
    folder = third["sources"][f"folder:{scenario.folder.resolve()}"]
    assert folder["images"] - folder["cached"] == len(NEWCOMER), folder
    assert third["performers"] == first.result["performers"] + 1
    assert ("local:newcomer", "img29.jpg") in {
        (pid, library.photo_of(key)) for pid, key in indexed_faces(stack, third["version"])
    }
    # Nothing changed on the stash-box: incremental builds download none of its images again.
    assert scenario.box.traffic.count("/images/") == downloads
    assert scenario.box.traffic.max_in_window(60.0) <= BUDGET


def test_identification_is_at_least_as_good_as_a_folder_only_build(
    scenario: Scenario, first: FirstBuild
) -> None:
    library = scenario.library
    only = write_folder(
        scenario.work / "folder-only",
        library,
        f"{scenario.box.url}/graphql",
        {g: library.photos(g) for g in library.enrol},
    )
    result = build(scenario.stack, {"sources": [{"kind": "folder", "path": str(only)}]})
    folder_only = top1_accuracy(scenario.stack, library, result["version"])
    combined = first.top1
    assert combined >= folder_only, (combined, folder_only)
    assert combined >= 0.85, combined
