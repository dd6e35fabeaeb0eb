"""Fixtures shared by all tests: the shared data folder (models mirror and media) and a real
embedded stack (tritonserver + gRPC server + HTTP adapter) on free loopback ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.stack import Stack, start_stack

REPO = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """STASH_VISION_SHARED_DIR, default ../shared. Missing data fails the run; it never skips."""
    path = Path(os.environ.get("STASH_VISION_SHARED_DIR") or REPO.parent / "shared")
    if not (path / "models").is_dir() or not (path / "testdata").is_dir():
        pytest.fail(
            f"shared test data not found at {path}: set STASH_VISION_SHARED_DIR to the folder holding models/ "
            "and testdata/ (CI points it at ../shared)",
            pytrace=False,
        )
    return path


def shared_file(relative: str) -> Path:
    path = shared_dir() / relative
    if not path.exists():
        pytest.fail(f"shared test file missing: {path}", pytrace=False)
    return path


@pytest.fixture(scope="session")
def shared() -> Path:
    return shared_dir()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One stack with every catalogued model, shared by the integration tests that only read."""
    running = start_stack(tmp_path_factory.mktemp("stack"), shared_dir() / "models")
    try:
        yield running
    finally:
        running.stop()
