"""Face identification's start-up line: a tagging-only server by choice is told at INFO, a profile
whose models are missing by mistake at ERROR; either way face calls answer with the reason."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import cast

import pytest

from stash_vision.catalog.entries import Catalog
from stash_vision.catalog.serving import active_profile
from stash_vision.server.app import build_face_identification
from stash_vision.server.faces.identification import ProfileUnavailable
from stash_vision.server.image_source import ImageLoader
from stash_vision.server.media.images import ImageLimits
from stash_vision.server.media.paths import MediaPaths
from stash_vision.server.triton_session import InferenceSession
from stash_vision.server.workers import CpuPool
from stash_vision.settings import Settings

# Never reached: the pipeline is refused before any inference.
_NO_TRITON = cast(InferenceSession, object())


def _start(tmp_path: Path, models: list[str], caplog: pytest.LogCaptureFixture) -> logging.LogRecord:
    settings = Settings(data_dir=tmp_path, models=models)
    entries = Catalog.load().select(models)
    loader = ImageLoader(MediaPaths([], {}), ImageLimits(10**8, 1 << 28))
    with caplog.at_level(logging.INFO, logger="stash_vision.server"):
        faces = build_face_identification(settings, entries, _NO_TRITON, loader, CpuPool(1))
    with pytest.raises(ProfileUnavailable, match="needs model"):
        faces.pipeline  # noqa: B018 - the property raises the reason face calls answer with
    [record] = [r for r in caplog.records if "face identification" in r.getMessage()]
    return record


def test_tagging_only_models_are_information(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    record = _start(tmp_path, ["open_nsfw"], caplog)
    assert record.levelno == logging.INFO
    assert "face identification off" in record.getMessage()


def test_a_profile_missing_one_of_its_models_is_an_error(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # The default profile needs a detector and an embedder; serving only the detector is a mistake.
    detector = active_profile(Settings(data_dir=tmp_path)).models[0]
    record = _start(tmp_path, ["open_nsfw", detector], caplog)
    assert record.levelno == logging.ERROR
    assert "face identification unavailable" in record.getMessage()
