"""open_nsfw: a softmax over [sfw, nsfw]; the nsfw probability becomes one tag."""

from __future__ import annotations

from collections.abc import Mapping

from stash_vision.server.arrays import AnyArray
from stash_vision.server.tagging.taggers.base import Scores, Tagger


class OpenNsfwTagger(Tagger):
    output = "outputs"
    tag = "NSFW"

    @property
    def outputs(self) -> list[str]:
        return [self.output]

    def scores(self, outputs: Mapping[str, AnyArray]) -> Scores:
        probabilities = outputs[self.output].reshape(-1)
        return {self.categories[0]: {self.tag: float(probabilities[1])}}
