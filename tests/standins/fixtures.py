"""pytest fixtures that start the stand-ins once per test module (import them into a test module)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import shared_dir
from tests.standins.stash import StashStandIn, default_fixtures, make_zip
from tests.standins.stashbox import StashBoxStandIn, default_performers

STASH_KEY = "stash-secret"
STASHBOX_KEY = "box-secret"


def free_port() -> int:
    """A loopback port nothing listens on (for "unreachable" tests)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stash_schema() -> Path:
    return shared_dir() / "stash-api" / "stash" / "schema"


def stashbox_schema() -> Path:
    return shared_dir() / "stash-api" / "stash-box" / "schema"


@pytest.fixture(scope="module")
def stash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StashStandIn]:
    testdata = shared_dir() / "testdata"
    fixtures = default_fixtures(testdata, make_zip(testdata, tmp_path_factory.mktemp("zip")))
    with StashStandIn(stash_schema(), fixtures, api_key=STASH_KEY) as server:
        yield server


@pytest.fixture(scope="module")
def stashbox_server() -> Iterator[StashBoxStandIn]:
    performers = default_performers(shared_dir() / "testdata")
    with StashBoxStandIn(stashbox_schema(), performers, api_key=STASHBOX_KEY) as server:
        yield server
