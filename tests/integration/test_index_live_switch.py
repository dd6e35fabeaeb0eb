"""Index versions on the real stack (SCRFD + MobileFaceNet in Triton, real photos).

Live switch: two versions built with `stash-vision index build`; 8 concurrent clients make
>= 1,000 IdentifyImage calls while the active version is switched 10 times: zero failed calls,
and every answer names one of the two versions. Release round trip: `index export`, then
`index import --activate` into a fresh data dir served by a second stack: identical answers."""

from __future__ import annotations

import asyncio
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import pytest

from stash_vision.v1 import faces_pb2, faces_pb2_grpc, indexes_pb2, indexes_pb2_grpc, media_pb2
from tests.conftest import shared_dir, shared_file
from tests.integration.test_face_identification import FACES, identity_groups
from tests.stack import Stack, cli, start_stack

pytestmark = pytest.mark.integration

MODELS = ["scrfd_500m", "mobilefacenet"]
CLIENTS = 8
CALLS_PER_CLIENT = 130  # 1,040 calls
SWITCHES = 10


def _stack(workdir: Path) -> Stack:
    return start_stack(workdir, shared_dir() / "models", models=MODELS)


def _build(stack: Stack, folder: Path) -> str:
    result = cli({**stack.env, "STASH_VISION_SERVER_URL": stack.grpc_target}, "index", "build", str(folder))
    assert result.returncode == 0, result.stdout + result.stderr
    found = re.search(r"index (\S+) of profile", result.stdout)
    assert found, result.stdout
    return found.group(1)


def _enrol(folder: Path, groups: dict[str, list[str]]) -> tuple[Path, list[str]]:
    """FOLDER/<group>/<photos> minus one photo per group of two or more; returns the held-out photos."""
    held: list[str] = []
    for group, files in groups.items():
        (folder / group).mkdir(parents=True)
        if len(files) >= 2:
            held.append(files[-1])
            files = files[:-1]
        for name in files:
            os.symlink(shared_file(f"{FACES}/{name}"), folder / group / name)
    return folder, held


def _request(name: str) -> faces_pb2.IdentifyImageRequest:
    return faces_pb2.IdentifyImageRequest(
        image=media_pb2.ImageSource(path=str(shared_file(f"{FACES}/{name}"))),
        options=faces_pb2.IdentifyOptions(top_k=3),
    )


def _answer(reply: faces_pb2.IdentifyImageResponse) -> list[list[tuple[str, float]]]:
    return [[(m.performer.id, round(m.distance, 5)) for m in face.matches] for face in reply.faces]


@dataclass
class SwitchRun:
    failures: list[str] = field(default_factory=list)
    answered: dict[str, int] = field(default_factory=dict)
    switches: list[float] = field(default_factory=list)
    elapsed: float = 0.0


async def _live_switch(target: str, versions: list[str], photos: list[str]) -> SwitchRun:
    run = SwitchRun()
    failures, answered, switches = run.failures, run.answered, run.switches
    async with grpc.aio.insecure_channel(target) as channel:
        faces = faces_pb2_grpc.FaceServiceStub(channel)
        indexes = indexes_pb2_grpc.IndexServiceStub(channel)

        async def client(n: int) -> None:
            for i in range(CALLS_PER_CLIENT):
                try:
                    reply = await faces.IdentifyImage(_request(photos[(n + i) % len(photos)]), timeout=60)
                except grpc.aio.AioRpcError as error:
                    failures.append(f"{error.code().name}: {error.details()}")
                    continue
                version = reply.answered_by.index_version
                answered[version] = answered.get(version, 0) + 1

        async def switcher() -> None:
            for k in range(SWITCHES):
                await asyncio.sleep(0.3)  # spread over the calls (about 5 s in all)
                started = time.perf_counter()
                await indexes.ActivateIndexVersion(
                    indexes_pb2.ActivateIndexVersionRequest(version=versions[(k + 1) % 2]), timeout=120
                )
                switches.append(time.perf_counter() - started)

        started = time.perf_counter()
        await asyncio.gather(switcher(), *(client(n) for n in range(CLIENTS)))
        run.elapsed = time.perf_counter() - started
    return run


def test_live_switch_and_release_round_trip(tmp_path: Path) -> None:
    groups = identity_groups()
    first_enrol, held = _enrol(tmp_path / "enrol-all", groups)
    fewer = dict(list(groups.items())[: max(2, len(groups) - 3)])
    second_enrol, _ = _enrol(tmp_path / "enrol-fewer", fewer)
    photos = held + [files[0] for files in groups.values()][:4]

    stack = _stack(tmp_path / "a")
    try:
        v1 = _build(stack, first_enrol)
        time.sleep(1.1)  # versions are named by the second
        v2 = _build(stack, second_enrol)
        assert v1 != v2
        result = asyncio.run(_live_switch(stack.grpc_target, [v1, v2], photos))
        print(
            f"\nlive switch: {CLIENTS * CALLS_PER_CLIENT} calls from {CLIENTS} clients in {result.elapsed:.1f} s, "
            f"{len(result.switches)} switches (each {max(result.switches):.3f} s at most), "
            f"failures {len(result.failures)}, answered by {result.answered}"
        )
        assert result.failures == []
        assert len(result.switches) == SWITCHES
        assert set(result.answered) == {v1, v2}, (
            "every answer names one of the two versions, and both answered"
        )
        assert sum(result.answered.values()) == CLIENTS * CALLS_PER_CLIENT

        env = {**stack.env, "STASH_VISION_SERVER_URL": stack.grpc_target}
        activated = cli(env, "index", "activate", v1)
        assert activated.returncode == 0, activated.stderr
        release = tmp_path / "release.zip"
        exported = cli(env, "index", "export", v1, "-o", str(release))
        assert exported.returncode == 0 and release.is_file(), exported.stderr
        before = asyncio.run(_answers(stack.grpc_target, photos))
    finally:
        stack.stop()

    fresh = _stack(tmp_path / "b")
    try:
        env = {**fresh.env, "STASH_VISION_SERVER_URL": fresh.grpc_target}
        imported = cli(env, "index", "import", str(release), "--activate")
        assert imported.returncode == 0, imported.stdout + imported.stderr
        after = asyncio.run(_answers(fresh.grpc_target, photos))
    finally:
        fresh.stop()
    assert after == before
    assert any(faces and faces[0] for faces, _ in before.values()), "someone was identified"


async def _answers(target: str, photos: list[str]) -> dict[str, tuple[list[list[tuple[str, float]]], str]]:
    async with grpc.aio.insecure_channel(target) as channel:
        stub = faces_pb2_grpc.FaceServiceStub(channel)
        answers = {}
        for name in photos:
            reply = await stub.IdentifyImage(_request(name), timeout=120)
            answers[name] = (_answer(reply), reply.answered_by.index_version)
        return answers
