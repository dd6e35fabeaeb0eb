"""Drift check: the committed gRPC stubs in stash_vision/v1 are exactly what scripts/gen-proto
generates from proto/ with the pinned grpcio-tools."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
COMMITTED = REPO / "stash_vision" / "v1"
FIX = "the committed stubs in stash_vision/v1 are stale: run scripts/gen-proto and commit the result"


def generated_files(folder: Path) -> dict[str, bytes]:
    return {
        path.name: path.read_bytes()
        for path in sorted(folder.iterdir())
        if path.is_file() and path.name.endswith(("_pb2.py", "_pb2.pyi", "_pb2_grpc.py"))
    }


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Runs scripts/gen-proto itself (so its protoc arguments are the ones checked) into a tmp folder."""
    out = tmp_path_factory.mktemp("gen-proto")
    env = dict(os.environ)
    # The script calls `python`: make it this interpreter (the venv with the pinned grpcio-tools).
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    result = subprocess.run(
        ["bash", str(REPO / "scripts" / "gen-proto"), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"scripts/gen-proto failed:\n{result.stdout}\n{result.stderr}"
    folder = out / "stash_vision" / "v1"
    assert folder.is_dir(), f"scripts/gen-proto wrote nothing under {folder}"
    return generated_files(folder)


def test_every_proto_has_generated_stubs(regenerated: dict[str, bytes]) -> None:
    protos = sorted(p.stem for p in (REPO / "proto" / "stash_vision" / "v1").glob("*.proto"))
    assert protos, "no .proto files found"
    expected = sorted(
        f"{stem}{suffix}" for stem in protos for suffix in ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")
    )
    assert sorted(regenerated) == expected


def test_committed_stub_set_matches_generated_set(regenerated: dict[str, bytes]) -> None:
    committed = generated_files(COMMITTED)
    missing = sorted(set(regenerated) - set(committed))
    extra = sorted(set(committed) - set(regenerated))
    assert not missing and not extra, f"{FIX} (missing: {missing}, not generated any more: {extra})"


def test_committed_stubs_are_byte_identical_to_generated(regenerated: dict[str, bytes]) -> None:
    committed = generated_files(COMMITTED)
    drifted = sorted(name for name, data in regenerated.items() if committed.get(name) != data)
    assert not drifted, f"{FIX} (differs: {', '.join(drifted)})"
