"""Category CSVs (contract §3.2): columns, defaults for empty cells, durations, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from stash_vision.server.tagging.aitagger_format.categories import (
    UNKNOWN_CATEGORY,
    CategoryConfig,
    CsvDefaults,
    Duration,
    load_category_csv,
    load_category_dir,
    parse_category_rows,
)

HEADER = "OriginalTag,RenamedTag,MinMarkerDuration,MaxGap,RequiredDuration,TagThreshold"


def _write(path: Path, *lines: str, bom: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(("\ufeff" if bom else "") + "\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_sample_row_is_read_as_is(tmp_path: Path) -> None:
    settings = load_category_csv(_write(tmp_path / "actions.csv", HEADER, "Blowjob,Blowjob_AI,15,6,20s,0.5"))

    assert settings.name == "actions"
    tag = settings.get("Blowjob")
    assert tag is not None
    assert tag.category == "actions"
    assert tag.renamed_tag == "Blowjob_AI"
    assert tag.min_marker_duration == Duration(15.0)
    assert tag.max_gap == Duration(6.0)
    assert tag.required_duration == Duration(20.0)
    assert tag.tag_threshold == 0.5
    assert settings.get("Kissing") is None


def test_empty_cells_take_the_csv_defaults() -> None:
    settings = parse_category_rows([HEADER, "Kissing,Kissing_AI,,,,"], "actions", "actions.csv")

    tag = settings.tags["Kissing"]
    assert tag.min_marker_duration.seconds(100.0) == 12.0
    assert tag.max_gap.seconds(100.0) == 6.0
    assert tag.required_duration.seconds(100.0) == 20.0
    assert tag.tag_threshold == 0.5


def test_missing_optional_columns_take_the_csv_defaults() -> None:
    settings = parse_category_rows(["OriginalTag,RenamedTag", "Kissing,Kissing_AI"], "actions", "a.csv")

    assert settings.tags["Kissing"].required_duration == Duration(20.0)


def test_configured_csv_defaults_are_used_for_empty_cells() -> None:
    defaults = CsvDefaults.from_config(
        {"MinMarkerDuration": 8, "RequiredDuration": "10%", "TagThreshold": 0.7}
    )
    settings = parse_category_rows([HEADER, "Kissing,Kissing_AI,,,,"], "actions", "a.csv", defaults)

    tag = settings.tags["Kissing"]
    assert tag.min_marker_duration.seconds(50.0) == 8.0
    assert tag.max_gap.seconds(50.0) == 6.0  # not configured: built-in default
    assert tag.required_duration.seconds(50.0) == 5.0
    assert tag.tag_threshold == 0.7


def test_csv_defaults_reject_bad_values() -> None:
    with pytest.raises(ValueError, match=r"csv_defaults\.MaxGap"):
        CsvDefaults.from_config({"MaxGap": "soon"})
    with pytest.raises(ValueError, match=r"csv_defaults\.TagThreshold"):
        CsvDefaults.from_config({"TagThreshold": "high"})


@pytest.mark.parametrize(
    ("text", "video_duration", "seconds"),
    [
        ("15", 100.0, 15.0),
        ("15s", 100.0, 15.0),
        (" 15s ", 100.0, 15.0),
        ("2.5", 100.0, 2.5),
        ("-1", 100.0, -1.0),
        ("10%", 61.5, 10 / 100 * 61.5),  # 6.15 computed as the original does
        ("50%", 120.0, 60.0),
        ("0%", 120.0, 0.0),
    ],
)
def test_durations_in_seconds_or_percent_of_video(text: str, video_duration: float, seconds: float) -> None:
    assert Duration.parse(text).seconds(video_duration) == seconds


def test_percent_duration_follows_video_length() -> None:
    settings = parse_category_rows([HEADER, "Kissing,Kissing_AI,10%,5%,25%,0.4"], "actions", "a.csv")

    tag = settings.tags["Kissing"]
    assert tag.min_marker_duration == Duration(10.0, percent=True)
    assert tag.min_marker_duration.seconds(200.0) == 20.0
    assert tag.max_gap.seconds(200.0) == 10.0
    assert tag.required_duration.seconds(40.0) == 10.0
    assert tag.tag_threshold == 0.4


@pytest.mark.parametrize("text", ["", "s", "%", "fifteen", "15m", "1e999", "nan"])
def test_bad_durations_are_rejected(text: str) -> None:
    with pytest.raises(ValueError):
        Duration.parse(text)


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("Kissing,Kissing_AI,abc,6,20s,0.5", r"a\.csv: row 3: MinMarkerDuration: 'abc' is not a duration"),
        ("Kissing,Kissing_AI,10,6x,20s,0.5", r"a\.csv: row 3: MaxGap"),
        ("Kissing,Kissing_AI,10,6,20 min,0.5", r"a\.csv: row 3: RequiredDuration"),
        ("Kissing,Kissing_AI,10,6,20s,high", r"a\.csv: row 3: TagThreshold: 'high' is not a number"),
        ("Kissing,,10,6,20s,0.5", r"a\.csv: row 3: RenamedTag is empty for tag 'Kissing'"),
        (",Kissing_AI,10,6,20s,0.5", r"a\.csv: row 3: OriginalTag is empty"),
    ],
)
def test_malformed_rows_name_file_row_and_column(row: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_category_rows([HEADER, "Blowjob,Blowjob_AI,15,6,20s,0.5", row], "actions", "a.csv")


def test_header_without_required_columns_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"b\.csv: row 1: .*lacks column\(s\) RenamedTag"):
        parse_category_rows(["OriginalTag,NewName", "Kissing,Kissing_AI"], "actions", "b.csv")
    with pytest.raises(ValueError, match=r"c\.csv: row 1"):
        parse_category_rows([], "actions", "c.csv")


def test_blank_rows_bom_and_spaced_header_are_tolerated(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bodyparts.csv",
        "OriginalTag, RenamedTag ,MinMarkerDuration,MaxGap,RequiredDuration,TagThreshold",
        "Boobs,Boobs_AI,-1,6,20s,0.5",
        "",
        ",,,,,",
        "Face,Face_AI,,,,",
        bom=True,
    )

    settings = load_category_csv(path)

    assert list(settings.tags) == ["Boobs", "Face"]
    assert settings.tags["Boobs"].min_marker_duration.seconds(10.0) == -1.0


def test_repeated_tag_keeps_last_row_as_the_original() -> None:
    settings = parse_category_rows(
        [HEADER, "Kissing,Kissing_AI,10,6,20s,0.5", "Kissing,Kiss_AI,10,6,20s,0.5"], "actions", "a.csv"
    )

    assert settings.tags["Kissing"].renamed_tag == "Kiss_AI"


def test_load_folder_maps_tags_to_categories(tmp_path: Path) -> None:
    _write(
        tmp_path / "actions.csv", HEADER, "Blowjob,Blowjob_AI,15,6,20s,0.5", "Kissing,Kissing_AI,10,4,20s,0.5"
    )
    _write(tmp_path / "bodyparts.csv", HEADER, "Boobs,Boobs_AI,-1,6,20s,0.5")
    _write(tmp_path / "extra" / "bdsm.csv", HEADER, "Bondage,Bondage_AI,,,,")
    (tmp_path / "notes.txt").write_text("not a csv", encoding="utf-8")

    config = load_category_dir(tmp_path)

    assert sorted(config.categories) == ["actions", "bdsm", "bodyparts"]
    assert config.category_of_original("Boobs") == "bodyparts"
    assert config.category_of_original("Bondage") == "bdsm"
    assert config.category_of_original("Mystery") == UNKNOWN_CATEGORY
    assert config.category_of_renamed("Kissing_AI") == "actions"
    assert config.category_of_renamed("Kissing") == UNKNOWN_CATEGORY
    tag = config.tag("actions", "Kissing")
    assert tag is not None and tag.min_marker_duration == Duration(10.0)
    assert config.tag("nope", "Kissing") is None


def test_load_folder_error_names_the_file(tmp_path: Path) -> None:
    _write(
        tmp_path / "actions.csv", HEADER, "Blowjob,Blowjob_AI,15,6,20s,0.5", "Kissing,Kissing_AI,x,4,20s,0.5"
    )

    with pytest.raises(ValueError, match=r"actions\.csv: row 3: MinMarkerDuration"):
        load_category_dir(tmp_path)


def test_missing_folder_is_reported(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="categories"):
        load_category_dir(tmp_path / "categories")


def test_settings_are_immutable() -> None:
    config = CategoryConfig.of([parse_category_rows([HEADER, "Kissing,Kissing_AI,,,,"], "actions", "a.csv")])
    tag = config.tag("actions", "Kissing")
    assert tag is not None

    with pytest.raises(dataclasses.FrozenInstanceError):
        tag.tag_threshold = 0.1  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.categories["x"] = config.categories["actions"]  # type: ignore[index]
