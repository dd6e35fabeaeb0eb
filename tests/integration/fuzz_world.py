"""The world the fuzzers run against (issue 17, Fuzzing): the Stash Sense world (the Stash stand-in
on Stash's real schema, a face index of three performers, path mappings) with a tagger as well, so
the AITagger routes, the identify routes and the compatibility routes all do real work."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.integration.stash_sense_world import MODELS, World, stash_sense_world

TAGGER = "open_nsfw"


@contextmanager
def fuzz_world(work: Path, extra_env: dict[str, str] | None = None) -> Iterator[World]:
    with stash_sense_world(work / "world", models=[*MODELS, TAGGER], extra_env=extra_env) as world:
        yield world
