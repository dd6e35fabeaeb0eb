"""`stash-vision models precision [NAMES] [--calibration DIR] [--force]`: derive each model's
reduced-precision variants and judge them with the accuracy guard (stash_vision/precision). `models
fetch` and the imports run it too, when a calibration set exists and precision is not fp32; `models
list` shows what it found."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from stash_vision.catalog.entries import Catalog, CatalogEntry
from stash_vision.catalog.fetcher import is_fetched
from stash_vision.settings import Settings


def add_parser(models: Any) -> None:
    parser = models.add_parser(
        "precision", help="derive reduced-precision variants and check them against fp32 on real images"
    )
    parser.add_argument("names", nargs="*", help="models (default: the served ones)")
    parser.add_argument("--calibration", metavar="DIR", help="folder of real images (searched recursively)")
    parser.add_argument(
        "--force", action="store_true", help="derive again even when cached variants are intact"
    )


def calibration_dir(settings: Settings, given: str | None = None) -> Path | None:
    """--calibration, else STASH_VISION_PRECISION_CALIBRATION_DIR. No default folder: the images
    should be like the ones the user tags (the project's own figures use ../shared/testdata)."""
    if given:
        return Path(given).expanduser()
    return settings.precision_calibration_dir


def derive(settings: Settings, entries: list[CatalogEntry], folder: Path | None, force: bool = False) -> int:
    """Derives and reports; 1 when a model could not be judged at all (its weights or images missing)."""
    from stash_vision.precision.variants import derive_variants

    if folder is None:
        print(
            "error: no calibration images: pass --calibration DIR or set STASH_VISION_PRECISION_CALIBRATION_DIR "
            "to a folder of real images like those you tag",
            file=sys.stderr,
        )
        return 1
    catalog = Catalog.load(extra=[settings.user_repository])
    known = {name: catalog.get(name) for name in catalog.names()}
    failed = 0
    for entry in entries:
        if not is_fetched(entry, settings.models_dir):
            print(
                f"error: {entry.name}: weights not fetched (stash-vision models fetch {entry.name})",
                file=sys.stderr,
            )
            failed += 1
            continue
        manifest = derive_variants(
            entry, settings.models_dir, folder, known, threads=settings.effective_ort_threads, force=force
        )
        print(
            f"{entry.name}: fp32 {manifest.fp32_images_per_s:.1f} images/s; {manifest.calibration or manifest.note}"
        )
        for variant in manifest.variants:
            print(f"  {variant.summary()}")
        failed += bool(manifest.note)
    return 1 if failed else 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    from stash_vision.catalog.serving import served_entries

    catalog = Catalog.load(extra=[settings.user_repository])
    entries = catalog.select(args.names) if args.names else served_entries(settings, catalog)
    return derive(settings, entries, calibration_dir(settings, args.calibration), args.force)


def after_fetch_or_import(settings: Settings, entries: list[CatalogEntry]) -> None:
    """Variants are derived once, when weights arrive: quietly skipped where there is nothing to
    calibrate on or precision is fp32 (say so, so the user knows how to get them)."""
    if settings.precision == "fp32":
        return
    folder = calibration_dir(settings)
    if folder is None:
        print(
            "precision: no calibration images, models stay fp32 (see `stash-vision models precision --help`)"
        )
        return
    derive(settings, [e for e in entries if is_fetched(e, settings.models_dir)], folder)


def precision_cell(settings: Settings, entry: CatalogEntry) -> str:
    """What `models list` shows: the variant served under the current setting, and why."""
    from stash_vision.precision.selection import Precision, choose

    if not is_fetched(entry, settings.models_dir):
        return "-"
    choice = choose(entry, settings.models_dir, Precision(settings.precision))
    return f"{choice.variant}: {choice.reason}"
