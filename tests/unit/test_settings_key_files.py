"""API keys read from files (systemd's LoadCredential puts them in $CREDENTIALS_DIRECTORY): the
NixOS module and the systemd unit pass STASH_VISION_API_KEY_FILE / STASH_VISION_STASH_API_KEY_FILE
instead of the keys themselves."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from stash_vision import cli
from stash_vision.settings import Settings


@pytest.fixture(autouse=True)
def _no_keys_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_KEY", "API_KEY_FILE", "STASH_API_KEY", "STASH_API_KEY_FILE"):
        monkeypatch.delenv(f"STASH_VISION_{name}", raising=False)


def test_keys_are_read_from_their_files_trimmed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "api-key").write_text("s3cret\n")
    (tmp_path / "stash-api-key").write_text("  eyJhbGciOi.stash  \n")
    monkeypatch.setenv("STASH_VISION_API_KEY_FILE", str(tmp_path / "api-key"))
    monkeypatch.setenv("STASH_VISION_STASH_API_KEY_FILE", str(tmp_path / "stash-api-key"))
    settings = Settings()
    assert settings.api_key == "s3cret"
    assert settings.stash_api_key == "eyJhbGciOi.stash"


def test_keys_without_files_are_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STASH_VISION_API_KEY", "direct")
    settings = Settings()
    assert settings.api_key == "direct"
    assert settings.stash_api_key is None


@pytest.mark.parametrize("name", ["API_KEY", "STASH_API_KEY"])
def test_a_key_and_its_file_together_are_refused(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "key").write_text("from-file")
    monkeypatch.setenv(f"STASH_VISION_{name}", "direct")
    monkeypatch.setenv(f"STASH_VISION_{name}_FILE", str(tmp_path / "key"))
    with pytest.raises(ValidationError, match=f"set STASH_VISION_{name} or STASH_VISION_{name}_FILE"):
        Settings()


def test_a_missing_or_empty_key_file_is_refused_by_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STASH_VISION_API_KEY_FILE", str(tmp_path / "absent"))
    with pytest.raises(ValidationError, match=r"cannot read STASH_VISION_API_KEY_FILE .*absent"):
        Settings()
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv("STASH_VISION_API_KEY_FILE", str(tmp_path / "empty"))
    with pytest.raises(ValidationError, match=r"STASH_VISION_API_KEY_FILE .*empty is empty"):
        Settings()


def test_the_command_line_reports_a_bad_key_file_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STASH_VISION_STASH_API_KEY_FILE", str(tmp_path / "absent"))
    assert cli.main(["models", "list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: invalid settings:")
    assert "cannot read STASH_VISION_STASH_API_KEY_FILE" in err
    assert "Traceback" not in err
