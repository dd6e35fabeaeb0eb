"""What every tagger kind provides. A tagger knows which Triton outputs it needs and how to turn
them into probabilities; everything else (thresholds, CSV naming, batching) is shared."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from functools import cached_property
from typing import Any

from stash_vision.catalog.entries import CatalogEntry, TaggerSpec
from stash_vision.server.arrays import AnyArray
from stash_vision.server.tagging.aitagger_format.categories import CategoryConfig, load_category_dir

Scores = dict[str, dict[str, float]]
"""category -> tag (the model's own name) -> probability, in model output order."""


class Tagger(ABC):
    def __init__(self, entry: CatalogEntry) -> None:
        if entry.tagger is None:
            raise ValueError(f"model {entry.name} has no tagger block in its catalog entry")
        self.entry = entry
        self.spec: TaggerSpec = entry.tagger

    @property
    def model(self) -> str:
        return self.entry.name

    @property
    def identity(self) -> dict[str, Any]:
        """What makes this tagger's scores what they are: a stored score is reused only for the same
        model, weights and input contract (server/results)."""
        return {
            "model": self.entry.name,
            "version": self.entry.version,
            "weights": self.entry.weights.sha256,
            "input": self.entry.input.model_dump(mode="json"),
            "kind": str(self.spec.kind),
        }

    @property
    def categories(self) -> list[str]:
        return list(self.spec.categories)

    @cached_property
    def category_config(self) -> CategoryConfig:
        """The tagger's category CSVs; a category without a CSV is not configured and is dropped."""
        folder = self.entry.folder / self.spec.categories_dir
        return load_category_dir(folder) if folder.is_dir() else CategoryConfig()

    @property
    @abstractmethod
    def outputs(self) -> list[str]:
        """Triton output tensors this tagger reads."""

    @abstractmethod
    def scores(self, outputs: Mapping[str, AnyArray]) -> Scores:
        """Probabilities for ONE image from its outputs (batch dimension of 1 included)."""
