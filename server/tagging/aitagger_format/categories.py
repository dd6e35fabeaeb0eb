"""Category CSVs of the skier233 server, read as-is (contract §3.2).

One CSV per category (file stem = category name) with the columns
`OriginalTag,RenamedTag,MinMarkerDuration,MaxGap,RequiredDuration,TagThreshold`. OriginalTag is
the model's output name, RenamedTag the Stash tag name the plugin creates (e.g. `Blowjob_AI`).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

# Tags of a `.AI.json` v0 file or of an optimize request that no CSV knows land in this category
# (contract §1.4, §1.6).
UNKNOWN_CATEGORY = "Unknown"

REQUIRED_COLUMNS = ("OriginalTag", "RenamedTag")
OPTIONAL_COLUMNS = ("MinMarkerDuration", "MaxGap", "RequiredDuration", "TagThreshold")


@dataclass(frozen=True, slots=True)
class Duration:
    """A CSV duration: seconds (`"15"`, `"15s"`) or a percentage of the video length (`"10%"`)."""

    amount: float
    percent: bool = False

    @classmethod
    def parse(cls, text: str) -> Duration:
        """Parse a CSV cell; raises ValueError on anything but a finite number with optional s/%."""
        cleaned = text.strip()
        percent = cleaned.endswith("%")
        number = cleaned[:-1] if percent or cleaned[-1:] in ("s", "S") else cleaned
        try:
            amount = float(number)
        except ValueError:
            raise ValueError(
                f"{text!r} is not a duration (seconds like 15 or 15s, or a percentage like 10%)"
            ) from None
        if not math.isfinite(amount):
            raise ValueError(f"{text!r} is not a finite duration")
        return cls(amount, percent)

    def seconds(self, video_duration: float) -> float:
        """Seconds for a video of `video_duration` seconds."""
        if self.percent:
            # Same operation order as the original (value / 100 * duration), so results match to the bit.
            return self.amount / 100 * video_duration
        return self.amount


@dataclass(frozen=True, slots=True)
class CsvDefaults:
    """Values used for empty cells: `post_processing_config.yaml: csv_defaults` (contract §3.2)."""

    min_marker_duration: Duration = Duration(12.0)
    max_gap: Duration = Duration(6.0)
    required_duration: Duration = Duration(20.0)
    tag_threshold: float = 0.5

    @classmethod
    def from_config(cls, values: Mapping[str, object]) -> CsvDefaults:
        """Build from a `csv_defaults` mapping keyed by CSV column names; absent keys keep defaults."""
        base = cls()

        def duration(key: str, fallback: Duration) -> Duration:
            value = values.get(key)
            if value is None or value == "":
                return fallback
            try:
                return Duration.parse(str(value))
            except ValueError as exc:
                raise ValueError(f"csv_defaults.{key}: {exc}") from None

        threshold = values.get("TagThreshold")
        tag_threshold = base.tag_threshold
        if threshold is not None and threshold != "":
            try:
                tag_threshold = _parse_threshold(str(threshold))
            except ValueError as exc:
                raise ValueError(f"csv_defaults.TagThreshold: {exc}") from None
        return cls(
            min_marker_duration=duration("MinMarkerDuration", base.min_marker_duration),
            max_gap=duration("MaxGap", base.max_gap),
            required_duration=duration("RequiredDuration", base.required_duration),
            tag_threshold=tag_threshold,
        )


@dataclass(frozen=True, slots=True)
class TagSettings:
    """One CSV row."""

    category: str
    original_tag: str
    renamed_tag: str
    # ≤ 0 means "never a marker" (the 1.x `-1` convention, contract §1.3 and §3.6.3).
    min_marker_duration: Duration
    # Read for completeness: the active Clustering method does not use it (contract §3.6.3).
    max_gap: Duration
    required_duration: Duration
    tag_threshold: float


@dataclass(frozen=True, slots=True)
class CategorySettings:
    """One CSV file: its tags keyed by OriginalTag, in file order."""

    name: str
    tags: Mapping[str, TagSettings] = field(default_factory=lambda: MappingProxyType({}))

    def get(self, original_tag: str) -> TagSettings | None:
        return self.tags.get(original_tag)


@dataclass(frozen=True, slots=True)
class CategoryConfig:
    """All category CSVs of a server, keyed by category name."""

    categories: Mapping[str, CategorySettings] = field(default_factory=lambda: MappingProxyType({}))

    @classmethod
    def of(cls, categories: Iterable[CategorySettings]) -> CategoryConfig:
        return cls(MappingProxyType({c.name: c for c in categories}))

    def get(self, category: str) -> CategorySettings | None:
        return self.categories.get(category)

    def tag(self, category: str, original_tag: str) -> TagSettings | None:
        settings = self.categories.get(category)
        return None if settings is None else settings.get(original_tag)

    def category_of_original(self, original_tag: str) -> str:
        """Category of a model tag name; a tag in several CSVs maps to the last one, as the original
        builds its reverse map by overwriting (v0 conversion, contract §1.6)."""
        found = UNKNOWN_CATEGORY
        for settings in self.categories.values():
            if original_tag in settings.tags:
                found = settings.name
        return found

    def category_of_renamed(self, renamed_tag: str) -> str:
        """Category of a Stash tag name (RenamedTag), as the optimize endpoint maps it (contract §1.4)."""
        found = UNKNOWN_CATEGORY
        for settings in self.categories.values():
            if any(t.renamed_tag == renamed_tag for t in settings.tags.values()):
                found = settings.name
        return found


def _parse_threshold(text: str) -> float:
    try:
        value = float(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    return value


def _cell_duration(cells: Mapping[str, str], column: str, fallback: Duration, where: str) -> Duration:
    text = cells.get(column, "")
    if not text:  # empty cell or missing column -> csv_defaults (contract §3.2)
        return fallback
    try:
        return Duration.parse(text)
    except ValueError as exc:
        raise ValueError(f"{where}: {column}: {exc}") from None


def parse_category_rows(
    lines: Iterable[str], category: str, source: str, defaults: CsvDefaults | None = None
) -> CategorySettings:
    """Parse the text lines of one category CSV. `source` names the file in error messages."""
    defaults = defaults or CsvDefaults()
    reader = csv.DictReader(lines)
    header = [name.strip() for name in (reader.fieldnames or [])]
    missing = [name for name in REQUIRED_COLUMNS if name not in header]
    if missing:
        raise ValueError(
            f"{source}: row 1: header {header!r} lacks column(s) {', '.join(missing)} "
            f"(expected {','.join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)})"
        )
    reader.fieldnames = header  # tolerate spaces around header names

    tags: dict[str, TagSettings] = {}
    for row in reader:
        where = f"{source}: row {reader.line_num}"
        cells = {key: (value or "").strip() for key, value in row.items() if isinstance(key, str)}
        if not any(cells.values()):
            continue  # a row of empty cells (spreadsheet export) carries nothing
        original = cells.get("OriginalTag", "")
        renamed = cells.get("RenamedTag", "")
        if not original:
            raise ValueError(f"{where}: OriginalTag is empty")
        if not renamed:
            raise ValueError(f"{where}: RenamedTag is empty for tag {original!r}")

        threshold_text = cells.get("TagThreshold", "")
        try:
            threshold = _parse_threshold(threshold_text) if threshold_text else defaults.tag_threshold
        except ValueError as exc:
            raise ValueError(f"{where}: TagThreshold: {exc}") from None

        # A repeated OriginalTag overrides the earlier row, as the original's dict does.
        tags[original] = TagSettings(
            category=category,
            original_tag=original,
            renamed_tag=renamed,
            min_marker_duration=_cell_duration(
                cells, "MinMarkerDuration", defaults.min_marker_duration, where
            ),
            max_gap=_cell_duration(cells, "MaxGap", defaults.max_gap, where),
            required_duration=_cell_duration(cells, "RequiredDuration", defaults.required_duration, where),
            tag_threshold=threshold,
        )
    return CategorySettings(category, MappingProxyType(tags))


def load_category_csv(path: Path, defaults: CsvDefaults | None = None) -> CategorySettings:
    """Read one category CSV; the category is the file stem."""
    # utf-8-sig: CSVs saved by spreadsheet programs often start with a BOM.
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return parse_category_rows(handle, path.stem, str(path), defaults)


def load_category_dir(directory: Path, defaults: CsvDefaults | None = None) -> CategoryConfig:
    """Read every `*.csv` under `directory` (recursively, like the original's os.walk), in path order.

    Files with the same stem in different subfolders form one category, later rows overriding.
    """
    if not directory.is_dir():
        raise FileNotFoundError(f"category CSV folder {directory} does not exist")
    merged: dict[str, dict[str, TagSettings]] = {}
    for path in sorted(p for p in directory.rglob("*.csv") if p.is_file()):
        settings = load_category_csv(path, defaults)
        merged.setdefault(settings.name, {}).update(settings.tags)
    return CategoryConfig.of(CategorySettings(name, MappingProxyType(tags)) for name, tags in merged.items())
