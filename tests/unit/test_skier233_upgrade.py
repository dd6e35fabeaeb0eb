"""Upgrade of skier233 models imported by an earlier stash-vision, which applied a YAML's
`normalization_config: 0` as ImageNet mean/std where the original server runs CLIP mean/std
(`normalization_config or 1`). `served_entries` (what `serve` and the server process load) corrects
them on disk once, with one log line each; nothing else in the user repository is touched."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import yaml

from stash_vision.catalog.entries import Catalog
from stash_vision.catalog.importers import import_onnx_classifier, import_skier233, skier233_upgrade
from stash_vision.catalog.serving import served_entries
from stash_vision.settings import Settings
from tests.unit.test_importers import CLIP, IMAGENET, write_package

pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")

LOGGER = "stash_vision.catalog.importers"


def catalog_file(data: Path, name: str) -> Path:
    return data / "model_repository" / name / "catalog.yaml"


def import_as_before(tmp_path: Path, data: Path, name: str, normalization: int) -> Path:
    """What the earlier importer wrote: the same entry without the provenance block, and the
    YAML's normalisation index taken at its word."""
    yaml_path = write_package(tmp_path / name, file_name=name, fields={"normalization_config": normalization})
    import_skier233(yaml_path, data / "model_repository", data / "models")
    path = catalog_file(data, name)
    document = yaml.safe_load(path.read_text())
    del document["skier233"]
    mean, std = IMAGENET if normalization == 0 else CLIP
    document["input"]["mean"], document["input"]["std"] = list(mean), list(std)
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def settings_for(data: Path, *names: str) -> Settings:
    return Settings(data_dir=data, models=list(names))


def test_an_earlier_import_of_a_yaml_0_model_is_corrected_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    path = import_as_before(tmp_path, data, "old_zero", 0)
    before = yaml.safe_load(path.read_text())
    assert (tuple(before["input"]["mean"]), tuple(before["input"]["std"])) == IMAGENET

    with caplog.at_level(logging.INFO, logger=LOGGER):
        (entry,) = served_entries(settings_for(data, "old_zero"))
    assert (entry.input.mean, entry.input.std) == CLIP
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER)]
    assert len(lines) == 1, lines
    assert "old_zero: input normalisation corrected from ImageNet to CLIP mean/std" in lines[0]
    assert "no re-import needed" in lines[0]

    # On disk: only the contract's mean/std changed, and the record says why.
    after = yaml.safe_load(path.read_text())
    assert after["skier233"] == {
        "normalization_config": 0,
        "normalization_applied": 1,
        "corrected_on_upgrade": True,
    }
    assert {k: v for k, v in after.items() if k != "skier233"} == {
        **before,
        "input": {**before["input"], "mean": list(CLIP[0]), "std": list(CLIP[1])},
    }
    assert Catalog.load(extra=[data / "model_repository"]).get("old_zero").input == entry.input

    # Once: the next start finds nothing to do and leaves the file alone.
    text = path.read_text()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        (again,) = served_entries(settings_for(data, "old_zero"))
    assert again.input == entry.input
    assert not [r for r in caplog.records if r.name.startswith(LOGGER)]
    assert path.read_text() == text


def test_entries_that_need_no_correction_are_left_alone(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data = tmp_path / "data"
    repository = data / "model_repository"
    # An earlier import of a YAML that said 1: CLIP already, no provenance block.
    old_one = import_as_before(tmp_path, data, "old_one", 1)
    # A current import of a YAML that says 0: CLIP, with its provenance block.
    current = write_package(tmp_path / "current", file_name="current", fields={"normalization_config": 0})
    import_skier233(current, repository, data / "models")
    # An ONNX classifier the user declared with ImageNet mean/std: not a skier233 model.
    onnx_source = data / "models" / "current" / "1" / "model.onnx"
    labels = tmp_path / "labels.txt"
    labels.write_text("Kissing\nHandjob\nBlowjob\n")
    import_onnx_classifier(
        onnx_source,
        labels,
        "mine",
        repository,
        data / "models",
        name="declared",
        size=32,
        mean=IMAGENET[0],
        std=IMAGENET[1],
    )
    files = {name: catalog_file(data, name) for name in ("old_one", "current", "declared")}
    texts = {name: path.read_text() for name, path in files.items()}
    assert old_one == files["old_one"]

    caplog.clear()
    with caplog.at_level(logging.INFO, logger=LOGGER):
        entries = served_entries(settings_for(data, "old_one", "current", "declared"))
    assert not [r for r in caplog.records if r.name.startswith(LOGGER)]
    assert {name: path.read_text() for name, path in files.items()} == texts
    means = {entry.name: entry.input.mean for entry in entries}
    assert means == {"old_one": CLIP[0], "current": CLIP[0], "declared": IMAGENET[0]}


def test_an_entry_that_cannot_be_rewritten_gets_one_line_saying_what_to_re_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "data"
    path = import_as_before(tmp_path, data, "stuck", 0)
    text = path.read_text()

    def refuse(_path: Path, _text: str) -> None:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(skier233_upgrade, "_replace", refuse)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        (entry,) = served_entries(settings_for(data, "stuck"))
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(LOGGER)]
    assert len(lines) == 1, lines
    assert "cannot be corrected (Permission denied)" in lines[0]
    assert "re-run `stash-vision models import-skier233 <stuck's model YAML>`" in lines[0]
    assert path.read_text() == text
    assert (entry.input.mean, entry.input.std) == IMAGENET


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX file modes")
def test_the_rewrite_keeps_the_files_mode_and_leaves_no_temporary_file(tmp_path: Path) -> None:
    data = tmp_path / "data"
    path = import_as_before(tmp_path, data, "modes", 0)
    path.chmod(0o644)
    assert skier233_upgrade.upgrade_skier233_imports(data / "model_repository") == ["modes"]
    assert path.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []
