"""Unit tests for stash_vision.catalog.importers: skier233 packages (TorchScript converted to ONNX)
and ONNX classifiers imported into a user repository.

The skier233 tests build a real, tiny TorchScript tagger (conv -> batch norm -> global pool ->
linear) with its YAML, tags file and category CSV in tmp_path, so the conversion, the verification
against TorchScript and every file written are the real thing, at 32x32 to stay fast."""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import yaml
from google.protobuf import text_format
from onnx import TensorProto, helper, numpy_helper
from tritonclient.grpc import model_config_pb2

from stash_vision import cli
from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.catalog.importers import (
    ModelImportError,
    import_onnx_classifier,
    import_skier233,
    read_skier233_yaml,
    torchscript_to_onnx,
    triton_name,
)
from stash_vision.embedded.ort_runner import OnnxRuntimeRunner
from stash_vision.embedded.runtime_repository import RepositoryMode, assemble
from stash_vision.server.tagging.aitagger_format.categories import load_category_dir

SIZE = 32
TAGS = ["Kissing", "Handjob", "Blowjob"]
CSV_TEXT = (
    "OriginalTag,RenamedTag,MinMarkerDuration,MaxGap,RequiredDuration,TagThreshold\n"
    "Kissing,Kissing_AI,15,6,20s,0.5\n"
    "Handjob,Handjob_AI,15,6,20s,0.5\n"
    "Blowjob,Blowjob_AI,15,6,20s,0.5\n"
)
CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))

# torch.jit.script/save/load announce their deprecation; TorchScript is what skier233 ships.
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning")


class TinyTagger(torch.nn.Module):
    """The shape of a skier233 tagger in miniature: image in, one logit per tag out."""

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.norm = torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = torch.relu(self.norm(self.conv(x)))
        pooled = torch.nn.functional.adaptive_avg_pool2d(features, 1)
        return self.head(torch.flatten(pooled, 1))


def save_tiny_torchscript(path: Path, outputs: int = len(TAGS), seed: int = 0) -> None:
    torch.manual_seed(seed)
    model = TinyTagger(outputs)
    # Non-trivial running statistics: a model exported in training mode would differ.
    model.norm.running_mean.uniform_(-0.5, 0.5)
    model.norm.running_var.uniform_(0.5, 2.0)
    model.train()  # saved as a user might: the importer must switch to eval itself
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.script(model), str(path))


def write_package(
    root: Path,
    *,
    file_name: str = "tiny_tagger",
    layout: str = "flat",
    fields: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    outputs: int | None = None,
    csvs: dict[str, str] | None = None,
) -> Path:
    """A skier233 package; returns the YAML. layout "flat": everything in one folder (the shared
    stand-in); "server": the original server's config/models/*.yaml + models/*.pt +
    config/post_processing/categories/*.csv."""
    tags = TAGS if tags is None else tags
    if layout == "flat":
        yaml_dir = weights_dir = root
        csv_dir = root / "categories"
    else:
        yaml_dir = root / "config" / "models"
        weights_dir = root / "models"
        csv_dir = root / "config" / "post_processing" / "categories"
    document: dict[str, Any] = {
        "type": "model",
        "model_file_name": file_name,
        "model_category": ["actions"],
        "model_version": 1.9,
        "model_identifier": 950,
        "model_image_size": SIZE,
        "model_threshold": 0.4,
        "max_model_batch_size": 12,
    }
    document.update(fields or {})
    yaml_dir.mkdir(parents=True, exist_ok=True)
    yaml_path = yaml_dir / f"{file_name}.yaml"
    yaml_path.write_text(yaml.safe_dump({k: v for k, v in document.items() if v is not None}))
    save_tiny_torchscript(weights_dir / f"{file_name}.pt", outputs or len(tags))
    (weights_dir / f"{file_name}.tags.txt").write_text("".join(f"{t}\n" for t in tags))
    for category, text in ({"actions": CSV_TEXT} if csvs is None else csvs).items():
        (csv_dir / category).parent.mkdir(parents=True, exist_ok=True)
        (csv_dir / f"{category}.csv").write_text(text)
    return yaml_path


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tmp_path / "data"


def repo(data: Path) -> Path:
    return data / "model_repository"


def models(data: Path) -> Path:
    return data / "models"


def leftovers(data: Path) -> list[str]:
    """Everything under the data directory (staging folders included)."""
    return sorted(str(p.relative_to(data)) for p in data.rglob("*")) if data.exists() else []


def read_config(entry: CatalogEntry) -> model_config_pb2.ModelConfig:
    return text_format.Parse((entry.folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def torchscript_logits(pt: Path, batch: np.ndarray) -> np.ndarray:
    module = torch.jit.load(str(pt), map_location="cpu").eval()
    with torch.no_grad():
        result: np.ndarray = module(torch.from_numpy(batch)).numpy()
    return result


def onnx_logits(onnx_path: Path, batch: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    result: np.ndarray = session.run(["OUTPUT__0"], {"INPUT__0": batch})[0]
    return result


# ------------------------------------------------------------------------------------ skier233


def test_import_writes_a_loadable_entry_with_contract_tagger_and_csv(tmp_path: Path, data: Path) -> None:
    yaml_path = write_package(tmp_path / "pkg")
    entry = import_skier233(yaml_path, repo(data), models(data))

    assert entry.name == "tiny_tagger"
    assert entry.folder == repo(data) / "tiny_tagger"
    # The user repository loads beside the packaged catalog, without name clashes.
    catalog = Catalog.load(extra=[repo(data)])
    assert catalog.get("tiny_tagger") == entry
    assert set(Catalog.load().names()) < set(catalog.names())

    assert (entry.version, entry.task, entry.licence) == (
        1,
        "image-tagging",
        "user-supplied (skier233 model)",
    )
    weights = entry.weights_path(models(data))
    assert weights == models(data) / "tiny_tagger" / "1" / "model.onnx"
    assert entry.weights.imported
    assert entry.weights.size == weights.stat().st_size
    assert entry.weights.sha256 == hashlib.sha256(weights.read_bytes()).hexdigest()
    raw = yaml.safe_load((entry.folder / "catalog.yaml").read_text())
    assert set(raw["weights"]) == {"file", "sha256", "size"}  # no sources, no mirror_path

    contract = entry.input
    assert (contract.tensor, contract.layout, contract.color_order) == ("INPUT__0", "NCHW", "RGB")
    assert (contract.width, contract.height, contract.resize.value) == (SIZE, SIZE, "stretch")
    assert contract.interpolation == "cubic_antialias"
    assert contract.scale == pytest.approx(1 / 255)
    # normalization_config absent -> 1 (CLIP), the original's default.
    assert (contract.mean, contract.std) == CLIP

    tagger = entry.tagger
    assert tagger is not None
    assert tagger.kind.value == "multilabel"
    assert (tagger.display_name, tagger.identifier, tagger.version) == ("tiny_tagger", 950, 1.9)
    assert (tagger.categories, tagger.threshold, tagger.categories_dir) == (["actions"], 0.4, "categories")
    assert (tagger.output, tagger.activation, tagger.category_mappings) == ("OUTPUT__0", "sigmoid", {})
    assert tagger.tags_file is not None and tagger.tags_file.endswith(".tags.txt")
    assert (entry.folder / tagger.tags_file).read_text().splitlines() == TAGS

    assert (entry.folder / "categories" / "actions.csv").read_text() == CSV_TEXT
    assert sorted(p.name for p in (entry.folder / "categories").iterdir()) == ["actions.csv"]

    config = read_config(entry)
    assert (config.name, config.backend, config.max_batch_size) == ("tiny_tagger", "onnxruntime", 16)
    assert [(t.name, t.data_type, list(t.dims)) for t in config.input] == [
        ("INPUT__0", model_config_pb2.TYPE_FP32, [3, SIZE, SIZE])
    ]
    assert [(t.name, t.data_type, list(t.dims)) for t in config.output] == [
        ("OUTPUT__0", model_config_pb2.TYPE_FP32, [len(TAGS)])
    ]
    assert config.HasField("dynamic_batching")
    assert [(g.kind, g.count) for g in config.instance_group] == [
        (model_config_pb2.ModelInstanceGroup.KIND_GPU, 1)
    ]
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 1
    assert list(warmup.inputs["INPUT__0"].dims) == [3, SIZE, SIZE]
    assert warmup.inputs["INPUT__0"].zero_data

    # Nothing but the entry and its weights: no staging folders left.
    assert leftovers(data) == [
        "model_repository",
        "model_repository/tiny_tagger",
        "model_repository/tiny_tagger/catalog.yaml",
        "model_repository/tiny_tagger/categories",
        "model_repository/tiny_tagger/categories/actions.csv",
        "model_repository/tiny_tagger/config.pbtxt",
        f"model_repository/tiny_tagger/{tagger.tags_file}",
        "models",
        "models/tiny_tagger",
        "models/tiny_tagger/1",
        "models/tiny_tagger/1/model.onnx",
    ]


def test_onnx_output_equals_torchscript_at_any_batch_size(tmp_path: Path, data: Path) -> None:
    yaml_path = write_package(tmp_path / "pkg")
    entry = import_skier233(yaml_path, repo(data), models(data))
    graph = onnx.load(str(entry.weights_path(models(data))))
    (image,) = graph.graph.input
    assert image.type.tensor_type.elem_type == TensorProto.FLOAT
    assert image.type.tensor_type.shape.dim[0].dim_param  # a named (dynamic) batch axis

    generator = np.random.default_rng(7)
    for batch_size in (1, 5):
        batch = generator.standard_normal((batch_size, 3, SIZE, SIZE)).astype(np.float32)
        expected = torchscript_logits(tmp_path / "pkg" / "tiny_tagger.pt", batch)
        actual = onnx_logits(entry.weights_path(models(data)), batch)
        assert actual.shape == (batch_size, len(TAGS))
        np.testing.assert_allclose(actual, expected, atol=1e-5, rtol=0)


def test_original_server_layout_normalisation_0_run_as_clip_and_a_name_triton_accepts(
    tmp_path: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    yaml_path = write_package(
        tmp_path / "server", layout="server", file_name="Gentle-River v2", fields={"normalization_config": 0}
    )
    with caplog.at_level(logging.INFO, logger="stash_vision.catalog.importers"):
        entry = import_skier233(yaml_path, repo(data), models(data))
    assert entry.name == "gentle_river_v2"
    assert entry.tagger is not None and entry.tagger.display_name == "Gentle-River v2"
    # The original reads `normalization_config or 1`: its answers for a YAML 0 are CLIP's.
    assert (entry.input.mean, entry.input.std) == CLIP != IMAGENET
    assert "says normalization_config 0; importing it with CLIP mean/std" in caplog.text
    # What the YAML said and what is applied are both on record (and mark the entry as current).
    raw = yaml.safe_load((entry.folder / "catalog.yaml").read_text())
    assert raw["skier233"] == {"normalization_config": 0, "normalization_applied": 1}
    assert (entry.folder / "categories" / "actions.csv").read_text() == CSV_TEXT


def test_categories_option_copies_only_the_models_categories_keeping_subfolders(
    tmp_path: Path, data: Path
) -> None:
    yaml_path = write_package(tmp_path / "pkg", csvs={})
    csv_dir = tmp_path / "my_csvs"
    (csv_dir / "sub").mkdir(parents=True)
    (csv_dir / "sub" / "actions.csv").write_text(CSV_TEXT)
    (csv_dir / "bodyparts.csv").write_text("OriginalTag,RenamedTag\nFeet,Feet_AI\n")
    entry = import_skier233(yaml_path, repo(data), models(data), categories_dir=csv_dir)
    copied = sorted(str(p.relative_to(entry.folder)) for p in (entry.folder / "categories").rglob("*.csv"))
    assert copied == ["categories/sub/actions.csv"]
    assert set(load_category_dir(entry.folder / "categories").categories) == {"actions"}

    with pytest.raises(ModelImportError, match=r"categories folder .* does not exist"):
        import_skier233(yaml_path, repo(data), models(data), categories_dir=tmp_path / "nope")


def test_default_csv_per_category_when_none_is_found(
    tmp_path: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    yaml_path = write_package(
        tmp_path / "pkg",
        tags=["69", "Feet", "Rope, red"],
        fields={"model_category": ["actions", "bodyparts"], "category_mappings": {0: 0, 1: 1, 2: 1}},
        csvs={},
    )
    with caplog.at_level(logging.WARNING, logger="stash_vision.catalog.importers"):
        entry = import_skier233(yaml_path, repo(data), models(data))
    assert "no category CSV for actions, bodyparts" in caplog.text
    assert "wrote default CSVs" in caplog.text

    header = "OriginalTag,RenamedTag,MinMarkerDuration,MaxGap,RequiredDuration,TagThreshold\n"
    categories = entry.folder / "categories"
    assert (categories / "actions.csv").read_text() == header + "69,69_AI,,,,\n"
    assert (
        categories / "bodyparts.csv"
    ).read_text() == header + 'Feet,Feet_AI,,,,\n"Rope, red","Rope, red_AI",,,,\n'
    # Empty cells read as the server's csv_defaults.
    loaded = load_category_dir(categories)
    rope = loaded.tag("bodyparts", "Rope, red")
    assert rope is not None and rope.renamed_tag == "Rope, red_AI" and rope.tag_threshold == 0.5
    assert entry.tagger is not None and entry.tagger.category_mappings == {0: 0, 1: 1, 2: 1}


def test_a_csv_missing_some_tags_is_copied_with_a_warning(
    tmp_path: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    partial = "OriginalTag,RenamedTag\nKissing,Kissing_AI\n"
    yaml_path = write_package(tmp_path / "pkg", csvs={"actions": partial})
    with caplog.at_level(logging.WARNING, logger="stash_vision.catalog.importers"):
        entry = import_skier233(yaml_path, repo(data), models(data))
    assert (entry.folder / "categories" / "actions.csv").read_text() == partial
    assert "no row for Handjob, Blowjob" in caplog.text


def test_model_category_as_a_string_is_one_category_with_a_warning(
    tmp_path: Path, data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    yaml_path = write_package(tmp_path / "pkg", fields={"model_category": "actions"})
    with caplog.at_level(logging.WARNING, logger="stash_vision.catalog.importers"):
        entry = import_skier233(yaml_path, repo(data), models(data))
    assert entry.tagger is not None and entry.tagger.categories == ["actions"]
    assert "model_category is the string 'actions'" in caplog.text


def test_yaml_defaults(tmp_path: Path) -> None:
    yaml_path = tmp_path / "m.yaml"
    yaml_path.write_text(
        "type: model\nmodel_file_name: m\nmodel_category: [actions]\nmodel_version: 2\nmodel_identifier: 200\n"
    )
    model = read_skier233_yaml(yaml_path)
    assert (model.image_size, model.normalization, model.threshold) == (512, 1, 0.5)
    assert model.applied_normalization == 1
    assert (model.version, model.identifier, model.license_name, model.max_batch_size) == (
        2.0,
        200,
        None,
        None,
    )


@pytest.mark.parametrize(
    ("line", "as_written", "applied"),
    [
        ("normalization_config: 0", 0, 1),
        ("normalization_config: 1", 1, 1),
        ("normalization_config: null", 1, 1),
        ("", 1, 1),
    ],
)
def test_the_normalisation_applied_is_the_originals_or_1(
    tmp_path: Path, line: str, as_written: int, applied: int
) -> None:
    yaml_path = tmp_path / "m.yaml"
    yaml_path.write_text(
        "type: model\nmodel_file_name: m\nmodel_category: [actions]\nmodel_version: 2\n"
        f"model_identifier: 200\n{line}\n"
    )
    model = read_skier233_yaml(yaml_path)
    assert (model.normalization, model.applied_normalization) == (as_written, applied)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"type": "video_preprocessor"}, "type is 'video_preprocessor', expected 'model'"),
        ({"model_file_name": None}, "model_file_name is required"),
        ({"model_category": []}, "model_category must be a non-empty list"),
        ({"model_category": ["actions", "bdsm"]}, "2 categories .* but no category_mappings"),
        ({"model_version": None}, "model_version is required"),
        ({"model_identifier": "abc"}, "model_identifier must be an integer"),
        ({"model_image_size": 0}, "model_image_size must be positive"),
        ({"normalization_config": 2}, "normalization_config 2 is unknown"),
        ({"model_threshold": 1.5}, r"model_threshold must be within \[0, 1\]"),
    ],
)
def test_invalid_yaml_fields_are_named(
    tmp_path: Path, data: Path, change: dict[str, Any], message: str
) -> None:
    yaml_path = write_package(tmp_path / "pkg")
    document = yaml.safe_load(yaml_path.read_text())
    document.update(change)
    yaml_path.write_text(yaml.safe_dump({k: v for k, v in document.items() if v is not None}))
    with pytest.raises(ModelImportError, match=message):
        import_skier233(yaml_path, repo(data), models(data))
    assert not (repo(data) / "tiny_tagger").exists()


def test_category_mappings_must_cover_every_tag_with_a_valid_category(tmp_path: Path, data: Path) -> None:
    fields = {"model_category": ["actions", "bdsm"], "category_mappings": {0: 0, 1: 1}}
    yaml_path = write_package(tmp_path / "pkg", fields=fields)
    with pytest.raises(
        ModelImportError, match=r"must map every tag index 0..2 .* missing or extra indexes: \[2\]"
    ):
        import_skier233(yaml_path, repo(data), models(data))
    fields["category_mappings"] = {0: 0, 1: 1, 2: 5}
    yaml_path = write_package(tmp_path / "pkg", fields=fields)
    with pytest.raises(ModelImportError, match="values must index model_category"):
        import_skier233(yaml_path, repo(data), models(data))


def test_encrypted_patreon_models_are_refused(tmp_path: Path, data: Path) -> None:
    # A license name marks a paid model even when a .pt is present.
    yaml_path = write_package(tmp_path / "a", fields={"model_license_name": "licenseV2.0"})
    with pytest.raises(ModelImportError) as raised:
        import_skier233(yaml_path, repo(data), models(data))
    message = str(raised.value)
    assert "encrypted Patreon model" in message and "model_license_name: licenseV2.0" in message
    assert "closed-source runtime" in message and "stash-vision cannot run it" in message

    for suffix in (".pt.enc", ".pt2.enc"):
        folder = tmp_path / suffix.strip(".")
        yaml_path = write_package(folder, layout="server")
        pt = folder / "models" / "tiny_tagger.pt"
        pt.rename(pt.with_name(f"tiny_tagger{suffix}"))
        with pytest.raises(
            ModelImportError, match=f"encrypted Patreon model .*only tiny_tagger{suffix} is present"
        ):
            import_skier233(yaml_path, repo(data), models(data))
    assert leftovers(data) == []


def test_missing_weights_or_tags_name_the_folders_searched(tmp_path: Path, data: Path) -> None:
    yaml_path = write_package(tmp_path / "pkg", layout="server")
    (tmp_path / "pkg" / "models" / "tiny_tagger.tags.txt").unlink()
    with pytest.raises(
        ModelImportError, match=r"tags file tiny_tagger.tags.txt not found \(looked in .*models"
    ):
        import_skier233(yaml_path, repo(data), models(data))
    (tmp_path / "pkg" / "models" / "tiny_tagger.pt").unlink()
    with pytest.raises(ModelImportError, match=r"TorchScript file tiny_tagger.pt not found \(looked in"):
        import_skier233(yaml_path, repo(data), models(data))
    assert leftovers(data) == []


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda pkg: (pkg / "tiny_tagger.pt").write_bytes(b"not a model"), "is not a TorchScript model"),
        (
            lambda pkg: (pkg / "tiny_tagger.tags.txt").write_text("a\nb\n"),
            r"outputs shape \[2, 3\] .* has 2 tags",
        ),
        (lambda pkg: (pkg / "tiny_tagger.tags.txt").write_text("a\n\nb\n"), "line 2 is empty"),
        (lambda pkg: (pkg / "tiny_tagger.tags.txt").write_text("a\nb\na\n"), "tags listed twice: a"),
        (
            lambda pkg: (pkg / "categories" / "actions.csv").write_text("Tag,Name\nKissing,K\n"),
            "invalid category CSV: .*lacks column",
        ),
    ],
)
def test_failures_leave_nothing_behind(
    tmp_path: Path, data: Path, damage: Callable[[Path], object], message: str
) -> None:
    yaml_path = write_package(tmp_path / "pkg")
    damage(tmp_path / "pkg")
    with pytest.raises(ModelImportError, match=message):
        import_skier233(yaml_path, repo(data), models(data))
    # The data folders may exist (staging lives in them); nothing may remain inside.
    assert leftovers(data) in ([], ["model_repository", "models"])


def test_a_conversion_that_disagrees_with_torchscript_is_refused(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torchscript_to_onnx, "MAX_LOGIT_DIFFERENCE", 0.0)
    yaml_path = write_package(tmp_path / "pkg")
    with pytest.raises(
        ModelImportError, match=re.escape("disagrees with TorchScript: max |logit difference|")
    ):
        import_skier233(yaml_path, repo(data), models(data))
    assert leftovers(data) == ["model_repository", "models"]


def test_without_torch_the_error_says_what_to_install(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    yaml_path = write_package(tmp_path / "pkg")
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ModelImportError, match=r"needs PyTorch: pip install 'stash-vision\[skier233\]'"):
        import_skier233(yaml_path, repo(data), models(data))


def test_a_packaged_model_name_is_refused(tmp_path: Path, data: Path) -> None:
    yaml_path = write_package(tmp_path / "pkg", file_name="Open-NSFW")
    with pytest.raises(
        ModelImportError, match="'open_nsfw' is the name of a model that ships with stash-vision"
    ):
        import_skier233(yaml_path, repo(data), models(data))


def test_reimport_replaces_the_model_and_a_failed_reimport_keeps_it(tmp_path: Path, data: Path) -> None:
    yaml_path = write_package(tmp_path / "pkg")
    first = import_skier233(yaml_path, repo(data), models(data))

    save_tiny_torchscript(tmp_path / "pkg" / "tiny_tagger.pt", seed=1)
    (tmp_path / "pkg" / "tiny_tagger.tags.txt").write_text("A\nB\nC\n")
    second = import_skier233(yaml_path, repo(data), models(data))
    assert second.weights.sha256 != first.weights.sha256
    assert second.weights.sha256 == hashlib.sha256(second.weights_path(models(data)).read_bytes()).hexdigest()
    assert second.tagger is not None and second.tagger.tags_file is not None
    assert (second.folder / second.tagger.tags_file).read_text() == "A\nB\nC\n"
    assert sorted(p.name for p in repo(data).iterdir()) == ["tiny_tagger"]
    assert sorted(p.name for p in models(data).iterdir()) == ["tiny_tagger"]

    before = {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()}
    (tmp_path / "pkg" / "tiny_tagger.pt").write_bytes(b"broken")
    with pytest.raises(ModelImportError):
        import_skier233(yaml_path, repo(data), models(data))
    assert {p: p.read_bytes() for p in sorted(data.rglob("*")) if p.is_file()} == before


def test_config_runs_natively_and_through_the_embedded_derivation(tmp_path: Path, data: Path) -> None:
    yaml_path = write_package(tmp_path / "pkg")
    entry = import_skier233(yaml_path, repo(data), models(data))

    native = assemble([entry], models(data), tmp_path / "native", RepositoryMode.NATIVE)
    assert (native / "tiny_tagger" / "config.pbtxt").is_file()
    assert (native / "tiny_tagger" / "1" / "model.onnx").read_bytes() == entry.weights_path(
        models(data)
    ).read_bytes()

    embedded = assemble([entry], models(data), tmp_path / "embedded", RepositoryMode.EMBEDDED, ort_threads=1)
    config = text_format.Parse(
        (embedded / "tiny_tagger" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig()
    )
    assert config.backend == "python" and config.max_batch_size == 16
    runner = OnnxRuntimeRunner(
        config.parameters["onnx_path"].string_value,
        [t.name for t in config.input],
        [t.name for t in config.output],
        threads=1,
    )
    batch = np.random.default_rng(3).random((3, 3, SIZE, SIZE), dtype=np.float32)
    # Two requests batched into one ORT call, as Triton's dynamic batcher hands them over.
    results = runner.run_batched([{"INPUT__0": batch[:1]}, {"INPUT__0": batch[1:]}])
    expected = torchscript_logits(tmp_path / "pkg" / "tiny_tagger.pt", batch)
    np.testing.assert_allclose(results[0]["OUTPUT__0"], expected[:1], atol=1e-5, rtol=0)
    np.testing.assert_allclose(results[1]["OUTPUT__0"], expected[1:], atol=1e-5, rtol=0)


def test_triton_name() -> None:
    assert triton_name("vivid_galaxy") == "vivid_galaxy"
    assert triton_name("Vivid Galaxy-2.0") == "vivid_galaxy_2_0"
    with pytest.raises(ModelImportError):
        triton_name("---")


# ------------------------------------------------------------------------------- ONNX classifiers


def write_classifier(
    path: Path, *, labels: int = 4, batch: int | str = "N", layout: str = "NCHW", size: int = 8
) -> None:
    """GlobalAveragePool -> Flatten -> Gemm: a real multi-label head on a [batch, 3, S, S] image
    (NHWC models transpose first)."""
    generator = np.random.default_rng(11)
    weight = numpy_helper.from_array(generator.standard_normal((3, labels)).astype(np.float32), "weight")
    bias = numpy_helper.from_array(generator.standard_normal(labels).astype(np.float32), "bias")
    shape = [batch, 3, size, size] if layout == "NCHW" else [batch, size, size, 3]
    nodes = []
    pooled_input = "pixels"
    if layout == "NHWC":
        nodes.append(helper.make_node("Transpose", ["pixels"], ["nchw"], perm=[0, 3, 1, 2]))
        pooled_input = "nchw"
    nodes += [
        helper.make_node("GlobalAveragePool", [pooled_input], ["pooled"]),
        helper.make_node("Flatten", ["pooled"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "weight", "bias"], ["scores"]),
    ]
    graph = helper.make_graph(
        nodes,
        "classifier",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, [batch, labels])],
        initializer=[weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def write_labels(path: Path, count: int = 4) -> Path:
    path.write_text("".join(f"Label {i}\n" for i in range(count)))
    return path


def test_onnx_classifier_import(tmp_path: Path, data: Path) -> None:
    onnx_path = tmp_path / "My Classifier.onnx"
    write_classifier(onnx_path)
    labels = write_labels(tmp_path / "labels.txt")
    entry = import_onnx_classifier(
        onnx_path,
        labels,
        "scenes",
        repo(data),
        models(data),
        size=8,
        color_order="BGR",
        scale=1.0,
        mean=(104.0, 117.0, 123.0),
        activation="none",
        identifier=7,
        version=2.5,
    )
    assert entry.name == "my_classifier"
    assert Catalog.load(extra=[repo(data)]).get("my_classifier") == entry
    weights = entry.weights_path(models(data))
    assert weights.read_bytes() == onnx_path.read_bytes()
    assert (
        entry.weights.sha256 == hashlib.sha256(onnx_path.read_bytes()).hexdigest() and entry.weights.imported
    )

    contract = entry.input
    assert (contract.tensor, contract.layout, contract.color_order, contract.width) == (
        "pixels",
        "NCHW",
        "BGR",
        8,
    )
    assert (contract.scale, contract.mean, contract.std) == (1.0, (104.0, 117.0, 123.0), (1.0, 1.0, 1.0))
    assert (contract.resize.value, contract.interpolation) == ("stretch", "auto")
    tagger = entry.tagger
    assert tagger is not None
    assert (tagger.display_name, tagger.identifier, tagger.version, tagger.categories) == (
        "My Classifier",
        7,
        2.5,
        ["scenes"],
    )
    assert (tagger.output, tagger.activation) == ("scores", "none")
    assert tagger.tags_file is not None
    assert (entry.folder / tagger.tags_file).read_text() == labels.read_text()
    assert (entry.folder / "categories" / "scenes.csv").read_text().splitlines()[
        1
    ] == "Label 0,Label 0_AI,,,,"

    config = read_config(entry)
    assert (config.backend, config.max_batch_size) == ("onnxruntime", 16)
    assert list(config.input[0].dims) == [3, 8, 8] and list(config.output[0].dims) == [4]
    assert config.HasField("dynamic_batching")
    assert list(config.model_warmup[0].inputs["pixels"].dims) == [3, 8, 8]


def test_onnx_classifier_with_a_fixed_batch_of_one_is_served_unbatched(tmp_path: Path, data: Path) -> None:
    onnx_path = tmp_path / "fixed.onnx"
    write_classifier(onnx_path, batch=1, layout="NHWC")
    entry = import_onnx_classifier(
        onnx_path, write_labels(tmp_path / "l.txt"), "scenes", repo(data), models(data), size=8, layout="NHWC"
    )
    config = read_config(entry)
    assert config.max_batch_size == 0 and not config.HasField("dynamic_batching")
    assert list(config.input[0].dims) == [1, 8, 8, 3] and list(config.output[0].dims) == [1, 4]
    (warmup,) = config.model_warmup
    assert warmup.batch_size == 1 and list(warmup.inputs["pixels"].dims) == [1, 8, 8, 3]


@pytest.mark.parametrize(
    ("build", "options", "message"),
    [
        (
            {},
            {"labels": 5},
            r"output 'scores' has shape \[\?, 4\]; its last dimension must equal the 5 labels",
        ),
        ({}, {"size": 16}, r"has shape \[\?, 3, 8, 8\], but NCHW at size 16 needs 16 on axis 2"),
        ({"layout": "NHWC"}, {}, r"has shape \[\?, 8, 8, 3\], but NCHW at size 8 needs 3 on axis 1"),
        ({"batch": 4}, {}, "input batch dimension is fixed at 4"),
        ({}, {"layout": "nchw"}, "invalid input contract"),
        ({}, {"category": "a/b"}, "not a valid category name"),
    ],
)
def test_onnx_classifier_mismatches_are_refused(
    tmp_path: Path, data: Path, build: dict[str, Any], options: dict[str, Any], message: str
) -> None:
    onnx_path = tmp_path / "c.onnx"
    write_classifier(onnx_path, **build)
    labels = write_labels(tmp_path / "l.txt", options.pop("labels", 4))
    arguments: dict[str, Any] = {"size": 8, "category": "scenes", **options}
    category = arguments.pop("category")
    with pytest.raises(ModelImportError, match=message):
        import_onnx_classifier(onnx_path, labels, category, repo(data), models(data), **arguments)
    assert leftovers(data) in ([], ["model_repository", "models"])


# ------------------------------------------------------------------------------------------- CLI


def test_cli_imports_and_reports(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STASH_VISION_DATA_DIR", str(data))
    monkeypatch.delenv("STASH_VISION_MODELS", raising=False)
    yaml_path = write_package(tmp_path / "pkg")
    assert cli.main(["models", "import-skier233", str(yaml_path)]) == 0
    out = capsys.readouterr().out
    assert (
        "imported tiny_tagger: tiny_tagger version 1.9, identifier 950, 3 tags in actions, input 32x32" in out
    )
    assert "restart `stash-vision serve` to load it" in out
    assert (repo(data) / "tiny_tagger" / "catalog.yaml").is_file()

    onnx_path = tmp_path / "c.onnx"
    write_classifier(onnx_path)
    labels = write_labels(tmp_path / "l.txt")
    argv = ["models", "import-onnx", str(onnx_path), "--labels", str(labels), "--category", "scenes"]
    argv += [
        "--size",
        "8",
        "--mean",
        "0.5",
        "0.5",
        "0.5",
        "--std",
        "0.2",
        "0.2",
        "0.2",
        "--name",
        "Scene Net",
    ]
    assert cli.main(argv) == 0
    assert (
        "imported scene_net: Scene Net version 1, identifier 0, 4 tags in scenes" in capsys.readouterr().out
    )
    entry = Catalog.load(extra=[repo(data)]).get("scene_net")
    assert (entry.input.mean, entry.input.std) == ((0.5, 0.5, 0.5), (0.2, 0.2, 0.2))


def test_cli_errors_exit_1(
    tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("STASH_VISION_DATA_DIR", str(data))
    yaml_path = write_package(tmp_path / "pkg", fields={"model_license_name": "licenseV2.0"})
    assert cli.main(["models", "import-skier233", str(yaml_path)]) == 1
    assert capsys.readouterr().err.startswith("error: tiny_tagger")
    assert cli.main(["models", "import-skier233", str(tmp_path / "missing.yaml")]) == 1
    assert "error: cannot read model YAML" in capsys.readouterr().err
