"""Multi-label classifiers: skier233 TorchScript models (converted to ONNX on import) and any ONNX
classifier with a tags file. One output value per tag, sigmoid unless the model applies it."""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property

import numpy as np

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.server.arrays import AnyArray
from stash_vision.server.tagging.taggers.base import Scores, Tagger


class MultiLabelTagger(Tagger):
    def __init__(self, entry: CatalogEntry) -> None:
        super().__init__(entry)
        if not self.spec.output or not self.spec.tags_file:
            raise ValueError(f"model {entry.name}: a multilabel tagger needs `output` and `tags_file`")

    @property
    def outputs(self) -> list[str]:
        return [self.spec.output or ""]

    @cached_property
    def tags(self) -> list[str]:
        path = self.entry.folder / (self.spec.tags_file or "")
        return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    @cached_property
    def tag_categories(self) -> list[str]:
        # skier233 `category_mappings`: tag index -> category index; without it, one category.
        mapping = self.spec.category_mappings
        return [self.categories[mapping.get(index, 0)] for index in range(len(self.tags))]

    def scores(self, outputs: Mapping[str, AnyArray]) -> Scores:
        values = outputs[self.spec.output or ""].reshape(-1).astype(np.float64)
        if len(values) != len(self.tags):
            raise ValueError(f"{self.model}: {len(values)} outputs but {len(self.tags)} tags")
        if self.spec.activation == "sigmoid":
            values = 1.0 / (1.0 + np.exp(-values))
        result: Scores = {category: {} for category in self.categories}
        for tag, category, value in zip(self.tags, self.tag_categories, values, strict=True):
            result[category][tag] = float(value)
        return result
