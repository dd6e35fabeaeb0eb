"""The planning of `sync-to-stash`: the wanted state from a tagging answer (the AITagger plugin's
rules), its difference from what a scene or image carries, and the undo items read back from the
records."""

from __future__ import annotations

import pytest

from stash_vision.server.connections.stash_tagging import StashMarker, TaggedItem
from stash_vision.server.errors import InvalidInput
from stash_vision.server.jobs.kinds.stash_sync_plan import (
    AI_TAGGED,
    UndoItem,
    Wanted,
    WantedMarker,
    WantedPerformer,
    decode_undo_item,
    plan_item,
    undo_item,
    wanted_for_image,
    wanted_for_scene,
)
from stash_vision.server.jobs.kinds.stash_sync_session import has_marker_ends

# The contract's example answer (aitagger-contract.md §1.3), trimmed.
VIDEO_TAG_INFO = {
    "video_duration": 61.5,
    "video_tags": {"actions": ["Blowjob_AI"], "bodyparts": ["Boobs_AI"]},
    "tag_totals": {"actions": {"Blowjob": 28.0}},
    "tag_timespans": {
        "actions": {
            "Kissing_AI": [{"start": 0.0, "end": 8.0, "totalConfidence": 7.7}],
            "Blowjob_AI": [{"start": 10.0, "end": 40.0, "totalConfidence": 71.04}],
            "Cumshot_AI": [],
        },
        "bodyparts": {},
    },
}


def scene(
    tags: frozenset[str] = frozenset(),
    markers: tuple[StashMarker, ...] = (),
    performers: frozenset[str] = frozenset(),
) -> TaggedItem:
    return TaggedItem("scene", "7", "/stash/a.mp4", None, tags, performers, markers)


def test_a_scene_wants_the_union_of_its_video_tags_ai_tagged_and_a_marker_per_span() -> None:
    wanted = wanted_for_scene(VIDEO_TAG_INFO, markers=True)
    assert wanted.tags == ("Blowjob_AI", "Boobs_AI", AI_TAGGED)
    assert wanted.markers == (WantedMarker("Kissing_AI", 0.0, 8.0), WantedMarker("Blowjob_AI", 10.0, 40.0))
    assert wanted_for_scene(VIDEO_TAG_INFO, markers=False).markers == ()


def test_a_span_that_ends_where_it_starts_has_no_end_seconds() -> None:
    info = {
        "video_tags": {},
        "tag_timespans": {"a": {"X_AI": [{"start": 4.0, "end": 4.0, "totalConfidence": 1}]}},
    }
    assert wanted_for_scene(info, markers=True).markers == (WantedMarker("X_AI", 4.0, None),)


def test_an_image_wants_every_tag_of_every_category_once() -> None:
    wanted = wanted_for_image(
        {"actions": ["Kissing_AI", ["Face_AI", 0.9]], "bodyparts": ["Face_AI"], "x": []}
    )
    assert wanted.tags == ("Kissing_AI", "Face_AI", AI_TAGGED)


def test_a_fresh_scene_gets_everything_with_unknown_tags_to_create() -> None:
    wanted = wanted_for_scene(VIDEO_TAG_INFO, markers=True)
    plan = plan_item(wanted, scene(), {"blowjob_ai": "11", "ai_tagged": "2"})
    # Marker tags join the scene's tags, as the plugin's scene tags always include them.
    assert plan.tags == [("Blowjob_AI", "11"), ("Boobs_AI", None), (AI_TAGGED, "2"), ("Kissing_AI", None)]
    assert plan.markers == list(wanted.markers)
    assert plan.unchanged == {"tags": 0, "markers": 0, "performers": 0}


def test_what_is_there_already_is_not_planned_again() -> None:
    known = {"blowjob_ai": "11", "boobs_ai": "12", "ai_tagged": "2", "kissing_ai": "13"}
    present = scene(
        tags=frozenset({"11", "12", "2", "13", "99"}),  # 99: a user's own tag, never touched
        markers=(StashMarker("5", "13", 0.001, 8.0), StashMarker("6", "11", 10.0, 40.0)),
        performers=frozenset({"3"}),
    )
    wanted = wanted_for_scene(VIDEO_TAG_INFO, markers=True)
    wanted = Wanted(wanted.tags, wanted.markers, (WantedPerformer("3", "Alice", 0.9),))
    plan = plan_item(wanted, present, known)
    assert plan.empty
    assert plan.unchanged == {"tags": 4, "markers": 2, "performers": 1}


def test_a_marker_at_another_time_or_with_another_tag_is_a_new_one() -> None:
    known = {"blowjob_ai": "11", "kissing_ai": "13"}
    present = scene(
        tags=frozenset({"11", "13"}),
        markers=(StashMarker("5", "11", 0.0, 8.0), StashMarker("6", "11", 12.0, None)),
    )
    wanted = Wanted((), (WantedMarker("Kissing_AI", 0.0, 8.0), WantedMarker("Blowjob_AI", 10.0, 40.0)))
    assert plan_item(wanted, present, known).markers == list(wanted.markers)


def test_performers_already_on_the_item_are_kept_and_others_added_once() -> None:
    wanted = Wanted(
        (),
        (),
        (
            WantedPerformer("3", "Alice", 0.9),
            WantedPerformer("4", "Bea", 0.8),
            WantedPerformer("4", "Bea", 0.75),
        ),
    )
    plan = plan_item(wanted, scene(performers=frozenset({"3"})), {})
    assert [p.id for p in plan.performers] == ["4"] and plan.unchanged["performers"] == 1


def test_undo_items_round_trip_and_bad_ones_are_refused() -> None:
    item = UndoItem("scene", "12", tags=("4", "5"), markers=("9",), performers=("3",), created=("5", "1"))
    assert item.encode() == "scene:12 tags=4,5 markers=9 performers=3 created=5,1"
    assert decode_undo_item(item.encode()) == item
    assert decode_undo_item("image:3 tags=7") == UndoItem("image", "3", tags=("7",))
    for bad in ("gallery:1", "scene:1 colour=red", "scene:1 tags=", "/a/path.jpg"):
        with pytest.raises(InvalidInput, match="not an undo item"):
            decode_undo_item(bad)


def test_undo_item_from_a_record_lists_created_tags_it_touched_and_then_the_parents() -> None:
    record = {
        "media": "scene",
        "id": "1",
        "applied": True,
        "tags_created": [{"id": "20", "name": "AI"}, {"id": "21", "name": "Kissing_AI"}],
        "tags_added": [
            {"id": "21", "name": "Kissing_AI"},
            {"id": "22", "name": "Face_AI"},
            {"id": "2", "name": AI_TAGGED},
        ],
        "markers_created": [{"id": "9", "tag": "Kissing_AI", "seconds": 0.0, "end_seconds": 8.0}],
        "performers_added": [],
    }
    undo = undo_item(record, created_by_job={"20", "21", "22", "23"}, parents=["20"])
    assert undo == UndoItem("scene", "1", tags=("21", "22", "2"), markers=("9",), created=("21", "22", "20"))


def test_a_dry_run_or_a_record_without_writes_has_nothing_to_undo() -> None:
    dry = {"media": "image", "id": "1", "applied": False, "tags_added": [{"name": "X_AI"}]}
    assert undo_item(dry, set()) is None
    nothing = {"media": "image", "id": "1", "applied": True, "tags_added": [], "markers_created": []}
    assert undo_item(nothing, {"5"}, ["5"]) is None


@pytest.mark.parametrize(
    ("version", "ends"),
    [
        ("v0.30.1", True),
        ("v0.28.0", True),
        ("v0.27.2-76648-gabc", False),
        ("v0.25.1", False),
        (None, True),
        ("dev", True),
    ],
)
def test_markers_get_an_end_only_on_a_stash_that_takes_one(version: str | None, ends: bool) -> None:
    assert has_marker_ends(version) is ends
