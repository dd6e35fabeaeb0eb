"""Face jobs on the real stack (SCRFD + MobileFaceNet in Triton, real photos): `build-face-index`
enrols a folder of performers and publishes the version the server then answers with;
`identify-library` finds the held-out photos' people, per item."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import shared_dir, shared_file
from tests.integration.test_face_identification import FACES, identity_groups
from tests.integration.test_jobs import results, submit, wait_for
from tests.stack import Stack, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def face_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    running = start_stack(
        tmp_path_factory.mktemp("face-jobs"), shared_dir() / "models", models=["scrfd_500m", "mobilefacenet"]
    )
    try:
        yield running
    finally:
        running.stop()


def test_build_an_index_then_identify_a_library(face_stack: Stack, tmp_path: Path) -> None:
    enrol, library = tmp_path / "enrol", tmp_path / "library"
    library.mkdir()
    held_out: dict[str, str] = {}
    for group, files in identity_groups().items():
        (enrol / group).mkdir(parents=True)
        if len(files) >= 2:
            held_out[files[-1]] = group
            os.symlink(shared_file(f"{FACES}/{files[-1]}"), library / files[-1])
            files = files[:-1]
        for name in files:
            os.symlink(shared_file(f"{FACES}/{name}"), enrol / group / name)

    build = submit(face_stack, "build-face-index", {"folder": str(enrol)})
    built = wait_for(face_stack, build["id"], "succeeded", "failed")
    assert built["state"] == "succeeded", built
    [item] = results(face_stack, build["id"])
    report: dict[str, Any] = item["result"]
    assert report["performers"] == len(identity_groups()) and report["version"] and report["activated"]
    stats = report["sources"][f"folder:{enrol.resolve()}"]
    assert stats["performers"] == len(identity_groups()) and stats["faces_kept"] == report["faces"]
    index = httpx.get(f"{face_stack.http}/faces/index", timeout=30)
    assert index.status_code == 200, index.text
    assert report["version"] in index.text, "the server answers with the version the job published"

    identify = submit(face_stack, "identify-library", {"roots": [str(library)], "top_k": 1})
    done = wait_for(face_stack, identify["id"], "succeeded", "failed")
    assert done["state"] == "succeeded", done
    found = {Path(i["item"]).name: i["result"] for i in results(face_stack, identify["id"])}
    assert set(found) == set(held_out)
    correct = sum(
        1
        for photo, group in held_out.items()
        if found[photo]["faces"]
        and found[photo]["faces"][0]["matches"]
        and found[photo]["faces"][0]["matches"][0]["name"] == group
    )
    assert correct >= 0.8 * len(held_out), (correct, len(held_out), found)
    assert all(r["answered_by"] == report["version"] for r in found.values())
