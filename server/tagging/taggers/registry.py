"""TaggerKind -> implementation."""

from __future__ import annotations

from stash_vision.catalog.entries import CatalogEntry, TaggerKind
from stash_vision.server.tagging.taggers.base import Tagger
from stash_vision.server.tagging.taggers.multilabel import MultiLabelTagger
from stash_vision.server.tagging.taggers.nudenet import NudeNetTagger
from stash_vision.server.tagging.taggers.open_nsfw import OpenNsfwTagger

KINDS: dict[TaggerKind, type[Tagger]] = {
    TaggerKind.NUDENET: NudeNetTagger,
    TaggerKind.OPEN_NSFW: OpenNsfwTagger,
    TaggerKind.MULTILABEL: MultiLabelTagger,
}


def build_taggers(entries: list[CatalogEntry]) -> list[Tagger]:
    """A tagger for every served model that declares one."""
    return [KINDS[entry.tagger.kind](entry) for entry in entries if entry.tagger is not None]
