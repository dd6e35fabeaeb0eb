"""The skier233 stand-in imported as a user imports it, with its precision variants derived on
the shared test images (what `stash-vision models precision --calibration DIR` does), so a stack
started on it serves what STASH_VISION_PRECISION (default `auto`) chooses on this machine."""

from __future__ import annotations

from pathlib import Path

from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.catalog.importers import import_skier233
from stash_vision.precision.selection import Precision, choose
from stash_vision.precision.variants import derive_variants
from stash_vision.settings import Settings


def import_with_variants(package: Path, data_dir: Path, shared: Path) -> CatalogEntry:
    """Imports `package` into data_dir, derives its variants, prints each verdict and what the
    precision setting in this process's environment will serve; returns the catalog entry."""
    entry = import_skier233(package, data_dir / "model_repository", data_dir / "models")
    catalog = Catalog.load(extra=[data_dir / "model_repository"])
    entries = {name: catalog.get(name) for name in catalog.names()}
    manifest = derive_variants(entry, data_dir / "models", shared / "testdata", entries)
    for variant in manifest.variants:
        print(f"  {variant.summary()}", flush=True)
    precision = Settings().precision
    served = choose(entry, data_dir / "models", Precision(precision))
    print(f"  STASH_VISION_PRECISION={precision} serves {served.variant}", flush=True)
    return entry
