"""Which catalogued models a configuration serves: STASH_VISION_MODELS when set, otherwise every
model served by default plus the models the active face profile needs."""

from __future__ import annotations

from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.catalog.importers.skier233_upgrade import upgrade_skier233_imports
from stash_vision.server.faces.profile import FaceProfile, load_profile
from stash_vision.settings import Settings


def active_profile(settings: Settings) -> FaceProfile:
    return load_profile(settings.face_profile, [settings.user_profiles_dir])


def served_names(settings: Settings, catalog: Catalog) -> list[str]:
    if settings.models:
        return list(settings.models)
    defaults = [entry.name for entry in catalog.select([])]
    return list(dict.fromkeys([*defaults, *active_profile(settings).models]))


def served_entries(settings: Settings, catalog: Catalog | None = None) -> list[CatalogEntry]:
    if catalog is None:
        # Both `serve` and the server process come here first: skier233 models imported by an
        # earlier version are corrected on disk before anything reads their input contract.
        upgrade_skier233_imports(settings.user_repository)
        catalog = Catalog.load(extra=[settings.user_repository])
    return catalog.select(served_names(settings, catalog))
