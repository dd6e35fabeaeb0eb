"""NudeNet: a YOLOv8 detector. For tagging, each label's probability is its best detection's score
anywhere in the image (rows 4.. of output0 hold one score per class and anchor, no objectness)."""

from __future__ import annotations

from collections.abc import Mapping

from stash_vision.server.arrays import AnyArray
from stash_vision.server.tagging.taggers.base import Scores, Tagger

_BOX_ROWS = 4


class NudeNetTagger(Tagger):
    output = "output0"

    @property
    def outputs(self) -> list[str]:
        return [self.output]

    def scores(self, outputs: Mapping[str, AnyArray]) -> Scores:
        detections = outputs[self.output]
        per_class = detections.reshape(detections.shape[-2], detections.shape[-1])[_BOX_ROWS:]
        best = per_class.max(axis=1)
        labels = self.entry.labels
        if len(labels) != len(best):
            raise ValueError(f"{self.model}: {len(best)} class rows but {len(labels)} labels")
        return {self.categories[0]: {label: float(score) for label, score in zip(labels, best, strict=True)}}
