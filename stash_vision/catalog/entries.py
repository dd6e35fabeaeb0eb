"""Catalog entries: what each model is, where its weights come from, and what input it expects.

The catalog lives next to Triton's configs in model_repository/<name>/catalog.yaml, so one folder
holds everything about a model except its weights."""

from __future__ import annotations

from enum import StrEnum
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Literal

import yaml
from google.protobuf import text_format
from pydantic import BaseModel, ConfigDict, Field, field_validator
from tritonclient.grpc import model_config_pb2


class CatalogError(ValueError):
    """A catalog entry or model config is missing or malformed."""


class Source(BaseModel):
    model_config = ConfigDict(frozen=True)

    url: str
    # When the weights ship inside an archive (a wheel, a zip): the member's path in it.
    member: str | None = None


class Weights(BaseModel):
    model_config = ConfigDict(frozen=True)

    file: str = "model.onnx"
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(gt=0)
    # Catalogued models name a mirror path and upstream sources; models a user imported (e.g. a
    # converted skier233 TorchScript model) have neither: their weights exist only on this machine.
    mirror_path: str | None = None
    sources: list[Source] = Field(default_factory=list)

    @property
    def imported(self) -> bool:
        return not self.sources and self.mirror_path is None


class ResizeMode(StrEnum):
    STRETCH = "stretch"
    LETTERBOX = "letterbox"
    RESIZE_CENTER_CROP = "resize_center_crop"


class InputContract(BaseModel):
    """How a decoded image becomes the model's input tensor (Frigate-style explicit contract)."""

    model_config = ConfigDict(frozen=True)

    tensor: str
    layout: Literal["NCHW", "NHWC"]
    color_order: Literal["RGB", "BGR"]
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    resize: ResizeMode
    resize_width: int | None = None
    resize_height: int | None = None
    # "auto": area when shrinking, else bilinear. "cubic_antialias" matches torchvision's
    # Resize(bicubic, antialias=True) that skier233 models were trained with.
    interpolation: Literal["auto", "linear", "cubic", "area", "cubic_antialias"] = "auto"
    scale: float = 1.0
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    @field_validator("std")
    @classmethod
    def _no_zero_std(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(v == 0 for v in value):
            raise ValueError("std must not contain 0")
        return value


class TaggerKind(StrEnum):
    NUDENET = "nudenet"
    OPEN_NSFW = "open_nsfw"
    MULTILABEL = "multilabel"


class TaggerSpec(BaseModel):
    """Present when a model tags images for the AITagger plugin: how its outputs become per-tag
    probabilities, and how it introduces itself (AIModelInfo of the v3 API)."""

    model_config = ConfigDict(frozen=True)

    kind: TaggerKind
    # AIModelInfo.name: the skier233 `model_file_name` for imported models.
    display_name: str
    identifier: int
    version: float
    categories: list[str] = Field(min_length=1)
    # Default cut when a request gives no threshold (skier233 `model_threshold`).
    threshold: float = 0.5
    # Folder of category CSVs beside catalog.yaml (skier233 format).
    categories_dir: str = "categories"
    # multilabel: output tensor, activation and the tags file (one tag per line = output index).
    output: str | None = None
    activation: Literal["sigmoid", "none"] = "sigmoid"
    tags_file: str | None = None
    # multilabel with several categories: tag index -> index into `categories` (skier233
    # `category_mappings`); absent means every tag belongs to categories[0].
    category_mappings: dict[int, int] = Field(default_factory=dict)


class CatalogEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    version: int = Field(ge=1)
    task: str
    description: str = ""
    licence: str
    weights: Weights
    input: InputContract
    labels_file: str | None = None
    tagger: TaggerSpec | None = None
    # False for models only some configurations need (the stash-sense profile's 230 MB of
    # embedders): served when the active face profile or STASH_VISION_MODELS names them.
    serve_by_default: bool = True
    # Set by the loader: the folder holding config.pbtxt and this entry.
    folder: Path = Field(default=Path(), exclude=True)

    @cached_property
    def triton_config(self) -> model_config_pb2.ModelConfig:
        return parse_triton_config(self.folder / "config.pbtxt")

    @cached_property
    def labels(self) -> list[str]:
        if not self.labels_file:
            return []
        path = self.folder / self.labels_file
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]

    def weights_path(self, models_dir: Path) -> Path:
        """Where the fetcher puts this model's weights inside the data directory."""
        return models_dir / self.name / str(self.version) / self.weights.file


def parse_triton_config(path: Path) -> model_config_pb2.ModelConfig:
    try:
        return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())
    except (OSError, text_format.ParseError) as error:
        raise CatalogError(f"cannot read Triton config {path}: {error}") from error


def default_repository() -> Path:
    """model_repository/ as installed with the package (the source folder in editable installs)."""
    return Path(str(resources.files("stash_vision.model_repository")))


class Catalog:
    """Every model of a repository folder, by name."""

    def __init__(self, entries: dict[str, CatalogEntry], repository: Path) -> None:
        self._entries = entries
        self.repository = repository

    @classmethod
    def load(cls, repository: Path | None = None, extra: list[Path] | tuple[Path, ...] = ()) -> Catalog:
        """The packaged repository plus `extra` ones (models the user imported into the data
        directory). A name may appear only once across them."""
        repository = repository or default_repository()
        entries: dict[str, CatalogEntry] = {}
        catalog_files = sorted(repository.glob("*/catalog.yaml"))
        for folder in extra:
            catalog_files.extend(sorted(folder.glob("*/catalog.yaml")))
        for catalog_file in catalog_files:
            folder = catalog_file.parent
            try:
                raw = yaml.safe_load(catalog_file.read_text())
                entry = CatalogEntry.model_validate({**raw, "folder": folder})
            except (OSError, yaml.YAMLError, ValueError) as error:
                raise CatalogError(f"invalid catalog entry {catalog_file}: {error}") from error
            if entry.name != folder.name:
                raise CatalogError(
                    f"{catalog_file}: name {entry.name!r} must match its folder {folder.name!r}"
                )
            config = entry.triton_config
            if config.name and config.name != entry.name:
                raise CatalogError(f"{folder}/config.pbtxt names {config.name!r}, expected {entry.name!r}")
            if entry.input.tensor not in {tensor.name for tensor in config.input}:
                raise CatalogError(
                    f"{catalog_file}: input tensor {entry.input.tensor!r} is not in config.pbtxt"
                )
            if entry.name in entries:
                raise CatalogError(
                    f"{catalog_file}: a model named {entry.name!r} exists already in {entries[entry.name].folder}"
                )
            entries[entry.name] = entry
        if not entries:
            raise CatalogError(f"no models found in {repository} (expected <name>/catalog.yaml)")
        return cls(entries, repository)

    def names(self) -> list[str]:
        return sorted(self._entries)

    def get(self, name: str) -> CatalogEntry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self.names())
            raise CatalogError(f"unknown model {name!r}; known models: {known}") from None

    def select(self, names: list[str] | tuple[str, ...]) -> list[CatalogEntry]:
        """The named entries, or every entry served by default when none are named."""
        if names:
            return [self.get(name) for name in dict.fromkeys(names)]
        return [self._entries[name] for name in self.names() if self._entries[name].serve_by_default]
