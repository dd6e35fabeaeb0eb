"""Stash Sense's answer shapes and ranking rules for the identify routes (contract part A, §A.3.0,
§A.3.2–A.3.4), from the server's face results. Pure functions: the routes (identify.py) call the
server; everything here is unit-tested on protobuf messages.

* A match is a PerformerMatchResponse: `stashdb_id` the stash-box UUID, `endpoint` its bare domain,
  `confidence` = clamp(1 − distance), `image_url` only when absolute (the plugin puts it straight
  into `<img src>`), `already_tagged` when the plugin said the performer is on the scene.
* Scene: an already tagged candidate gains 0.03 in ranking (not in its reported distance), each
  performer is the best match of one person at most, persons with a match come first by frame
  count, and `person_id` is renumbered from 0.
* Gallery: a performer is kept when seen in two images or closer than 0.4, most images first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from stash_vision.adapter.face_replies import face_box, gallery_performer_json, match_json
from stash_vision.v1 import faces_pb2

# Stash Sense adds this to an already tagged candidate's ranking score (scene_matcher.py).
TAGGED_BOOST = 0.03
# Its gallery keeps a performer seen in one image only when the face is this close.
GALLERY_KEEP_DISTANCE = 0.4
# Its gallery answer carries at most this many per-image errors, each cut to this length.
MAX_ERRORS = 10
MAX_ERROR_CHARS = 100


def absolute_url(url: str | None) -> str | None:
    """The URL when a browser can load it as it is (http or https with a host), else None."""
    if not url:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def plugin_match(match: faces_pb2.Match, tagged: frozenset[str] = frozenset()) -> dict[str, Any]:
    body = match_json(match)
    body["confidence"] = min(1.0, max(0.0, 1.0 - match.distance))
    body["image_url"] = absolute_url(body["image_url"])
    body["already_tagged"] = body["stashdb_id"] in tagged
    return body


def _ranking(match: dict[str, Any]) -> float:
    return 1.0 - float(match["distance"]) + (TAGGED_BOOST if match["already_tagged"] else 0.0)


def scene_persons(
    persons: Iterable[faces_pb2.VideoPerson], tagged: frozenset[str], top_k: int
) -> list[dict[str, Any]]:
    """The scene's persons as the plugin reads them (`frame_count`, `best_match`, `all_matches`)."""
    ordered = sorted(persons, key=lambda p: -p.frame_count)  # largest first claim their performer
    taken: set[str] = set()
    shaped: list[dict[str, Any]] = []
    for person in ordered:
        candidates = [person.best_match] if person.HasField("best_match") else []
        candidates += list(person.alternatives)
        ranked = sorted((plugin_match(m, tagged) for m in candidates), key=_ranking, reverse=True)
        free = [m for m in ranked if m["performer_id"] not in taken]
        best = free[0] if free else None
        if best is not None:
            taken.add(best["performer_id"])
            ranked = [best, *(m for m in ranked if m is not best)]
        shaped.append(
            {
                "person_id": 0,
                "frame_count": person.frame_count,
                "best_match": best,
                "all_matches": ranked[:top_k] if best is not None else [],
                "signals_used": ["face"],
                "tattoos_detected": 0,
            }
        )
    shaped.sort(key=lambda p: (p["best_match"] is None, -p["frame_count"]))
    for number, shape in enumerate(shaped):
        shape["person_id"] = number
    return shaped


def image_faces(faces: Sequence[faces_pb2.IdentifiedFace]) -> list[dict[str, Any]]:
    return [{"box": face_box(f.face), "matches": [plugin_match(m) for m in f.matches]} for f in faces]


def gallery_performers(reply: faces_pb2.IdentifyGalleryResponse) -> list[dict[str, Any]]:
    """Performers kept by Stash Sense's rule, most images first, then closest first."""
    ids = list(reply.image_ids)
    kept = []
    for entry in reply.performers:
        body = gallery_performer_json(entry)
        body["performer_id"] = body["stashdb_id"]
        body["image_url"] = absolute_url(body["image_url"])
        body["image_ids"] = [ids[i] for i in entry.image_indexes if 0 <= i < len(ids)]
        if body["image_count"] >= 2 or body["best_distance"] < GALLERY_KEEP_DISTANCE:
            kept.append(body)
    kept.sort(key=lambda p: (-p["image_count"], p["best_distance"]))
    return kept


def gallery_errors(reply: faces_pb2.IdentifyGalleryResponse) -> list[str]:
    ids = list(reply.image_ids)
    errors = []
    for error in reply.errors[:MAX_ERRORS]:
        image = ids[error.image_index] if 0 <= error.image_index < len(ids) else str(error.image_index)
        errors.append(f"Image {image}: {error.message[:MAX_ERROR_CHARS]}")
    return errors


def gallery_note(reply: faces_pb2.IdentifyGalleryResponse) -> str | None:
    """Says so when only part of a large gallery was identified."""
    if reply.images_selected >= reply.total_images:
        return None
    return (
        f"identified {reply.images_selected} of the gallery's {reply.total_images} images, chosen evenly "
        "across it (STASH_VISION_STASH_GALLERY_MAX_IMAGES)"
    )
