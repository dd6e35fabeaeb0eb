"""Unit tests for stash_vision.embedded.runtime_repository: the runnable Triton repository derived
from model_repository/, in native (onnxruntime backend) and embedded (Python backend + ORT) modes.

The weights are stand-in files (unique bytes per model) in a tmp data directory: these tests check
the assembled layout and configs only, not that anything runs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.embedded import runtime_repository
from stash_vision.embedded.runtime_repository import (
    RepositoryMode,
    WeightsMissing,
    assemble,
    with_request_priorities,
)


def _prioritised(source: model_config_pb2.ModelConfig) -> model_config_pb2.ModelConfig:
    """The source config plus the one change both modes make: two request priority levels."""
    config = model_config_pb2.ModelConfig()
    config.CopyFrom(source)
    with_request_priorities(config)
    return config


RUNNER = Path(runtime_repository.__file__).with_name("ort_runner.py")


def entries() -> list[CatalogEntry]:
    return Catalog.load().select([])


def fake_weights(models_dir: Path, selected: list[CatalogEntry]) -> dict[str, bytes]:
    contents: dict[str, bytes] = {}
    for entry in selected:
        path = entry.weights_path(models_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        contents[entry.name] = f"stand-in weights of {entry.name}\n".encode() * 10
        path.write_bytes(contents[entry.name])
    return contents


def read_config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


# ---------------------------------------------------------------------------------------------- embedded


def test_embedded_assembly_swaps_backend_and_keeps_batching_io_and_warmup(data_dir: Path) -> None:
    models_dir = data_dir / "models"
    selected = entries()
    fake_weights(models_dir, selected)
    out = assemble(
        selected, models_dir, data_dir / "runtime" / "repo", RepositoryMode.EMBEDDED, ort_threads=3
    )
    assert out == data_dir / "runtime" / "repo"
    assert sorted(p.name for p in out.iterdir()) == sorted(e.name for e in selected)

    for entry in selected:
        source = entry.triton_config
        config = read_config(out / entry.name / "config.pbtxt")
        assert config.name == entry.name
        assert config.backend == "python"
        assert config.platform == ""
        assert not config.HasField("optimization")
        assert len(config.instance_group) == 1
        assert config.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
        assert config.instance_group[0].count == 1
        assert config.max_batch_size == source.max_batch_size
        assert config.HasField("dynamic_batching")
        assert config.dynamic_batching == _prioritised(source).dynamic_batching
        assert list(config.input) == list(source.input)
        assert list(config.output) == list(source.output)
        assert list(config.model_warmup) == list(source.model_warmup)
        assert len(config.model_warmup) >= 1
        weights = entry.weights_path(models_dir).resolve()
        assert config.parameters["onnx_path"].string_value == str(weights)
        assert Path(config.parameters["onnx_path"].string_value).is_absolute()
        assert config.parameters["intra_op_threads"].string_value == "3"

        version_dir = out / entry.name / str(entry.version)
        assert (version_dir / "model.py").read_bytes() == RUNNER.read_bytes()
        # The embedded runner reads the weights from onnx_path; none are copied in.
        assert sorted(p.name for p in version_dir.iterdir()) == ["model.py"]

        if entry.labels_file:
            copied = out / entry.name / entry.labels_file
            assert copied.read_bytes() == (entry.folder / entry.labels_file).read_bytes()
        else:
            assert sorted(p.name for p in (out / entry.name).iterdir()) == ["1", "config.pbtxt"]


def test_embedded_config_equals_source_apart_from_the_documented_changes(data_dir: Path) -> None:
    models_dir = data_dir / "models"
    selected = entries()
    fake_weights(models_dir, selected)
    out = assemble(selected, models_dir, data_dir / "repo", RepositoryMode.EMBEDDED)
    for entry in selected:
        config = read_config(out / entry.name / "config.pbtxt")
        expected = model_config_pb2.ModelConfig()
        expected.CopyFrom(_prioritised(entry.triton_config))
        for field in ("backend", "platform", "optimization", "instance_group", "parameters"):
            expected.ClearField(field)
            config.ClearField(field)
        assert config == expected, entry.name


# ------------------------------------------------------------------------------------------------ native


def test_native_assembly_keeps_config_and_places_weights(data_dir: Path) -> None:
    models_dir = data_dir / "models"
    selected = entries()
    contents = fake_weights(models_dir, selected)
    out = assemble(selected, models_dir, data_dir / "repo", RepositoryMode.NATIVE)
    for entry in selected:
        config = read_config(out / entry.name / "config.pbtxt")
        assert config == _prioritised(entry.triton_config), entry.name
        assert config.backend == "onnxruntime"
        placed = out / entry.name / "1" / "model.onnx"
        assert placed.is_file()
        assert placed.read_bytes() == contents[entry.name]
        assert not (out / entry.name / "1" / "model.py").exists()
        source = entry.weights_path(models_dir)
        # Same filesystem here, so a hard link (no second copy of hundreds of MB).
        assert os.path.samefile(placed, source)
        if entry.labels_file:
            assert (out / entry.name / entry.labels_file).is_file()


def test_native_assembly_of_a_subset_only_contains_that_subset(data_dir: Path) -> None:
    models_dir = data_dir / "models"
    selected = Catalog.load().select(["yunet", "open_nsfw"])
    fake_weights(models_dir, selected)
    out = assemble(selected, models_dir, data_dir / "repo", RepositoryMode.NATIVE)
    assert sorted(p.name for p in out.iterdir()) == ["open_nsfw", "yunet"]


# ---------------------------------------------------------------------------------------------- failures


def test_missing_weights_raise_naming_models_and_fetch_command(data_dir: Path) -> None:
    models_dir = data_dir / "models"
    selected = entries()
    fake_weights(models_dir, [e for e in selected if e.name not in ("yunet", "open_nsfw")])
    out = data_dir / "repo"
    with pytest.raises(WeightsMissing) as raised:
        assemble(selected, models_dir, out, RepositoryMode.EMBEDDED)
    message = str(raised.value)
    assert "stash-vision models fetch open_nsfw yunet" in message
    assert "mobilefacenet" not in message
    assert str(data_dir) in message
    assert not out.exists()


def test_reassembly_replaces_the_folder_whole(data_dir: Path) -> None:
    models_dir = data_dir / "models"
    selected = entries()
    fake_weights(models_dir, selected)
    parent = data_dir / "runtime"
    out = parent / "repo"
    assemble(selected, models_dir, out, RepositoryMode.NATIVE)
    stale = out / "stale_model"
    stale.mkdir()
    (stale / "config.pbtxt").write_text('name: "stale_model"')
    (out / "yunet" / "extra.txt").write_text("left over")

    assemble(Catalog.load().select(["yunet"]), models_dir, out, RepositoryMode.EMBEDDED)
    assert sorted(p.name for p in out.iterdir()) == ["yunet"]
    assert not (out / "yunet" / "extra.txt").exists()
    assert (out / "yunet" / "1" / "model.py").is_file()
    assert not (out / "yunet" / "1" / "model.onnx").exists()
    # No staging or backup folder is left beside it.
    assert sorted(p.name for p in parent.iterdir()) == ["repo"]


def test_failed_reassembly_keeps_the_previous_repository(data_dir: Path) -> None:
    models_dir = data_dir / "models"
    selected = entries()
    fake_weights(models_dir, selected)
    out = data_dir / "runtime" / "repo"
    assemble(selected, models_dir, out, RepositoryMode.NATIVE)
    entry = Catalog.load().get("yunet")
    entry.weights_path(models_dir).unlink()
    with pytest.raises(WeightsMissing, match="yunet"):
        assemble(selected, models_dir, out, RepositoryMode.NATIVE)
    assert sorted(p.name for p in out.iterdir()) == sorted(e.name for e in selected)
    assert sorted(p.name for p in out.parent.iterdir()) == ["repo"]


def test_embedded_warmup_runs_the_largest_batch_the_caps_allow(data_dir: Path) -> None:
    """ONNX Runtime's arena is sized by the largest batch run; warming up at it keeps memory flat
    afterwards. Capped by each model's max_batch_size; native configs are left alone."""
    models_dir = data_dir / "models"
    selected = Catalog.load().select(["mobilefacenet", "scrfd_500m"])
    fake_weights(models_dir, selected)
    out = assemble(selected, models_dir, data_dir / "embedded", RepositoryMode.EMBEDDED, 2, warmup_batch=32)
    for entry in selected:
        config = text_format.Parse(
            (out / entry.name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
        )
        assert [w.batch_size for w in config.model_warmup] == [min(32, entry.triton_config.max_batch_size)]
    out = assemble(selected, models_dir, data_dir / "embedded", RepositoryMode.EMBEDDED, 2, warmup_batch=8)
    config = text_format.Parse(
        (out / "mobilefacenet" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert [w.batch_size for w in config.model_warmup] == [8]
    native = assemble(selected, models_dir, data_dir / "native", RepositoryMode.NATIVE, 2, warmup_batch=8)
    config = text_format.Parse(
        (native / "mobilefacenet" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert [w.batch_size for w in config.model_warmup] == [1]
