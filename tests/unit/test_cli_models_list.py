"""`stash-vision models list`: one row per catalogued model, columns that never run together."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest

from stash_vision.catalog.entries import default_repository
from stash_vision.cli import main

LONG_NAME = "vivid_galaxy_standin1_with_a_long_name"


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _import_copy(data_dir: Path, name: str) -> None:
    """A user-imported model under a long name: a renamed copy of a real model folder."""
    folder = data_dir / "model_repository" / name
    shutil.copytree(default_repository() / "open_nsfw", folder)
    for file in ("catalog.yaml", "config.pbtxt"):
        path = folder / file
        text = (
            path.read_text().replace('"open_nsfw"', f'"{name}"').replace("name: open_nsfw", f"name: {name}")
        )
        path.write_text(text)


def test_long_imported_name_keeps_every_column_apart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _import_copy(tmp_path, LONG_NAME)
    monkeypatch.setenv("STASH_VISION_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("STASH_VISION_TRITON_URL", f"127.0.0.1:{_closed_port()}")

    assert main(["models", "list"]) == 0

    lines = capsys.readouterr().out.splitlines()
    header = lines[0]
    row = next(line for line in lines if line.startswith(LONG_NAME))
    version_column = header.index("version")
    assert row[:version_column].rstrip() == LONG_NAME, "the name ends before the version column"
    assert row[version_column - 1] == " "
    assert row[version_column:].split()[0].isdigit(), "the version stands under its header"
    assert row.split()[:2] == [LONG_NAME, row[version_column:].split()[0]]
    assert "not reachable" in lines[-1]
