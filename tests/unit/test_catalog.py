"""Unit tests for stash_vision.catalog.entries: the real catalog in model_repository/ and the errors a
malformed entry raises.

The real entries are checked against the shared models mirror: the sha256 and size of each catalog
entry must equal both the row of <shared>/models/README.md and the actual file. A missing mirror
fails the test (it never skips)."""

from __future__ import annotations

import hashlib
import re
import shutil
from pathlib import Path

import pytest
import yaml

from stash_vision.catalog.entries import (
    Catalog,
    CatalogEntry,
    CatalogError,
    ResizeMode,
    default_repository,
    parse_triton_config,
)

EXPECTED_MODELS = ["mobilefacenet", "nudenet_320n", "open_nsfw", "scrfd_500m", "yunet"]
# The stash-sense profile's embedders: catalogued with Stash Sense's release URL and sha256 (from
# its models.json), not in the offline mirror, served only when that profile is active.
STASH_SENSE_MODELS = {
    "arcface": ("2eff37a187485caef7ffb3bbb3a542132d195bbdc02e071f20e80614477b735c", 136564309),
    "facenet512": ("4b6fcd19d0355d532d25007989d62cdfb5f86d761e52c6287aac9d821011a9e6", 93985006),
}


# --------------------------------------------------------------------------------------------- helpers


def readme_rows(shared: Path) -> dict[str, tuple[int, str]]:
    """The sha256 table of <shared>/models/README.md: mirror path -> (bytes, sha256)."""
    readme = shared / "models" / "README.md"
    if not readme.is_file():
        pytest.fail(f"shared models README missing: {readme} (set STASH_VISION_SHARED_DIR)", pytrace=False)
    rows: dict[str, tuple[int, str]] = {}
    for line in readme.read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not re.fullmatch(r"[0-9a-f]{64}", cells[2]):
            continue
        rows[cells[0]] = (int(cells[1].replace(",", "")), cells[2])
    assert rows, f"no sha256 rows parsed from {readme}"
    return rows


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def copy_model(tmp_path: Path, name: str = "yunet") -> Path:
    """A repository in tmp_path holding a copy of one real model folder; returns the repository."""
    repository = tmp_path / "repo"
    shutil.copytree(default_repository() / name, repository / name)
    return repository


def rewrite_catalog(folder: Path, **changes: object) -> Path:
    catalog_file = folder / "catalog.yaml"
    raw = yaml.safe_load(catalog_file.read_text())
    for dotted, value in changes.items():
        target = raw
        *parents, leaf = dotted.split("__")
        for key in parents:
            target = target[key]
        target[leaf] = value
    catalog_file.write_text(yaml.safe_dump(raw))
    return catalog_file


# ------------------------------------------------------------------------------------- the real catalog


def test_real_catalog_loads_exactly_the_five_models() -> None:
    catalog = Catalog.load()
    assert catalog.names() == sorted([*EXPECTED_MODELS, *STASH_SENSE_MODELS])
    assert catalog.repository == default_repository()
    assert [entry.name for entry in catalog.select([])] == EXPECTED_MODELS
    assert [entry.name for entry in catalog.select(["yunet"])] == ["yunet"]


@pytest.mark.parametrize("name", EXPECTED_MODELS)
def test_real_config_parses_with_batching_and_the_catalog_input_tensor(name: str) -> None:
    entry = Catalog.load().get(name)
    config = parse_triton_config(entry.folder / "config.pbtxt")
    assert config.name == name
    assert config.max_batch_size > 0
    assert config.HasField("dynamic_batching")
    inputs = {tensor.name: tensor for tensor in config.input}
    assert entry.input.tensor in inputs, f"{name}: catalog input {entry.input.tensor!r} not in {list(inputs)}"
    assert len(config.output) >= 1
    # The contract's geometry and layout must agree with the tensor shape Triton is told about.
    contract = entry.input
    expected = (
        [3, contract.height, contract.width]
        if contract.layout == "NCHW"
        else [contract.height, contract.width, 3]
    )
    assert list(inputs[contract.tensor].dims) == expected
    # Every warmup feeds the catalog input with the same dims.
    for warmup in config.model_warmup:
        assert list(warmup.inputs[contract.tensor].dims) == expected


@pytest.mark.parametrize("name", EXPECTED_MODELS)
def test_real_catalog_weights_match_shared_readme_row_and_mirror_file(name: str, shared: Path) -> None:
    entry = Catalog.load().get(name)
    rows = readme_rows(shared)
    mirror_path = entry.weights.mirror_path
    assert mirror_path in rows, f"{name}: {mirror_path} has no row in {shared / 'models/README.md'}"
    size, sha256 = rows[mirror_path]
    assert entry.weights.size == size
    assert entry.weights.sha256 == sha256
    mirror_file = shared / "models" / mirror_path
    if not mirror_file.is_file():
        pytest.fail(f"mirror file missing: {mirror_file}", pytrace=False)
    assert mirror_file.stat().st_size == entry.weights.size
    assert sha256_file(mirror_file) == entry.weights.sha256


def test_labels_files_are_read_and_match_the_models() -> None:
    catalog = Catalog.load()
    assert catalog.get("open_nsfw").labels == ["sfw", "nsfw"]
    nudenet = catalog.get("nudenet_320n")
    assert len(nudenet.labels) == 18
    # Rows 0-3 of output0 are the box, rows 4-21 the 18 classes.
    assert nudenet.triton_config.output[0].dims[0] == 4 + len(nudenet.labels)
    assert catalog.get("yunet").labels == []


def test_weights_path_is_inside_models_dir_by_name_and_version(tmp_path: Path) -> None:
    entry = Catalog.load().get("yunet")
    assert entry.weights_path(tmp_path) == tmp_path / "yunet" / "1" / "model.onnx"


def test_get_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(CatalogError, match="unknown model 'nope'") as raised:
        Catalog.load().get("nope")
    for name in EXPECTED_MODELS:
        assert name in str(raised.value)


def test_contract_resize_modes_are_enums() -> None:
    catalog = Catalog.load()
    assert catalog.get("open_nsfw").input.resize is ResizeMode.RESIZE_CENTER_CROP
    assert catalog.get("yunet").input.resize is ResizeMode.LETTERBOX
    assert catalog.get("mobilefacenet").input.resize is ResizeMode.STRETCH


# ------------------------------------------------------------------------------------- invalid entries


def test_copied_valid_model_loads_from_a_tmp_repository(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    catalog = Catalog.load(repository)
    assert catalog.names() == ["yunet"]
    assert isinstance(catalog.get("yunet"), CatalogEntry)
    assert catalog.get("yunet").folder == repository / "yunet"


def test_bad_sha256_raises_catalog_error_naming_the_file(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    catalog_file = rewrite_catalog(repository / "yunet", weights__sha256="not-a-sha")
    with pytest.raises(CatalogError) as raised:
        Catalog.load(repository)
    assert str(catalog_file) in str(raised.value)
    assert "sha256" in str(raised.value)


def test_uppercase_sha256_is_refused(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    sha = Catalog.load().get("yunet").weights.sha256.upper()
    catalog_file = rewrite_catalog(repository / "yunet", weights__sha256=sha)
    with pytest.raises(CatalogError, match=re.escape(str(catalog_file))):
        Catalog.load(repository)


def test_name_differing_from_folder_raises_catalog_error_naming_the_file(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    catalog_file = rewrite_catalog(repository / "yunet", name="yunet_other")
    with pytest.raises(CatalogError) as raised:
        Catalog.load(repository)
    message = str(raised.value)
    assert str(catalog_file) in message
    assert "yunet_other" in message
    assert "folder" in message


def test_unknown_input_tensor_raises_catalog_error_naming_the_file(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    catalog_file = rewrite_catalog(repository / "yunet", input__tensor="no_such_tensor")
    with pytest.raises(CatalogError) as raised:
        Catalog.load(repository)
    message = str(raised.value)
    assert str(catalog_file) in message
    assert "no_such_tensor" in message
    assert "config.pbtxt" in message


def test_missing_config_pbtxt_raises_catalog_error_naming_the_config(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    config = repository / "yunet" / "config.pbtxt"
    config.unlink()
    with pytest.raises(CatalogError) as raised:
        Catalog.load(repository)
    assert str(config) in str(raised.value)


def test_unparsable_config_pbtxt_raises_catalog_error_naming_the_config(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    config = repository / "yunet" / "config.pbtxt"
    config.write_text('name: "yunet"\nmax_batch_size: "sixteen"\n')
    with pytest.raises(CatalogError) as raised:
        Catalog.load(repository)
    assert str(config) in str(raised.value)


def test_config_naming_another_model_raises_catalog_error(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    config = repository / "yunet" / "config.pbtxt"
    config.write_text(config.read_text().replace('name: "yunet"', 'name: "someone_else"', 1))
    with pytest.raises(CatalogError) as raised:
        Catalog.load(repository)
    assert "someone_else" in str(raised.value)
    assert str(repository / "yunet") in str(raised.value)


def test_malformed_yaml_raises_catalog_error_naming_the_file(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    catalog_file = repository / "yunet" / "catalog.yaml"
    catalog_file.write_text("name: [unterminated\n")
    with pytest.raises(CatalogError, match=re.escape(str(catalog_file))):
        Catalog.load(repository)


def test_zero_std_is_refused(tmp_path: Path) -> None:
    repository = copy_model(tmp_path)
    catalog_file = rewrite_catalog(repository / "yunet", input__std=[1.0, 0.0, 1.0])
    with pytest.raises(CatalogError, match=re.escape(str(catalog_file))):
        Catalog.load(repository)


def test_empty_repository_raises_catalog_error(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="no models found"):
        Catalog.load(tmp_path)


@pytest.mark.parametrize("name", sorted(STASH_SENSE_MODELS))
def test_stash_sense_embedders_are_catalogued_but_not_served_by_default(name: str) -> None:
    entry = Catalog.load().get(name)
    sha256, size = STASH_SENSE_MODELS[name]
    assert (entry.weights.sha256, entry.weights.size) == (sha256, size)
    assert not entry.serve_by_default
    assert [s.url for s in entry.weights.sources] == [
        f"https://github.com/carrotwaxr/stash-sense/releases/download/models/{name}.onnx"
    ]
    config = entry.triton_config
    assert config.max_batch_size > 0 and config.HasField("dynamic_batching")
    assert entry.input.layout == "NHWC"
