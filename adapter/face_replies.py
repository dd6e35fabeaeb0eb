"""Face answers as JSON, shaped like Stash Sense's (PerformerMatchResponse, persons, boxes,
timings): shared by the path-based face routes (routes/faces.py) and the Stash Sense plugin's
id-based routes (routes/stash_sense/), so both answer the same shapes."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from stash_vision.v1 import faces_pb2


def answered_by(answered_by: faces_pb2.AnsweredBy) -> dict[str, Any]:
    return {"profile": answered_by.profile, "index_version": answered_by.index_version}


def face_box(face: faces_pb2.Face) -> dict[str, Any]:
    return {
        "x": round(face.box.x),
        "y": round(face.box.y),
        "width": round(face.box.width),
        "height": round(face.box.height),
        "confidence": round(face.confidence, 4),
    }


def embedder_distances(distances: Iterable[faces_pb2.EmbedderDistance]) -> dict[str, float]:
    return {f"{d.embedder}_distance": d.distance for d in distances}


def performer_ids(performer: faces_pb2.Performer) -> tuple[str, str | None]:
    """stashdb_id (the uuid part of the universal id) and endpoint (its domain part)."""
    domain, colon, uuid = performer.id.partition(":")
    if colon:
        return uuid, domain
    return performer.id, performer.stash_ids[0].endpoint if performer.stash_ids else None


def match_json(match: faces_pb2.Match) -> dict[str, Any]:
    performer = match.performer
    stashdb_id, endpoint = performer_ids(performer)
    return {
        "stashdb_id": stashdb_id,
        "performer_id": performer.id,
        "name": performer.name,
        "confidence": match.confidence,
        "distance": match.distance,
        **embedder_distances(match.embedder_distances),
        "country": performer.country or None,
        "image_url": performer.image_url or None,
        "endpoint": endpoint,
        "aliases": list(performer.aliases),
        "stash_ids": [{"endpoint": s.endpoint, "stash_id": s.stash_id} for s in performer.stash_ids],
        "already_tagged": False,
    }


def gallery_performer_json(entry: faces_pb2.GalleryPerformer) -> dict[str, Any]:
    """A gallery performer without its ids and images (the routes name those their own way)."""
    best = entry.best_match
    stashdb_id, endpoint = performer_ids(best.performer)
    return {
        "stashdb_id": stashdb_id,
        "name": best.performer.name,
        "best_distance": best.distance,
        "avg_distance": entry.average_distance,
        "confidence": min(1.0, max(0.0, 1.0 - best.distance)),
        "image_count": entry.image_count,
        "country": best.performer.country or None,
        "image_url": best.performer.image_url or None,
        "endpoint": endpoint,
    }


def person_json(person: faces_pb2.VideoPerson) -> dict[str, Any]:
    best = match_json(person.best_match) if person.HasField("best_match") else None
    return {
        "person_id": person.person_id,
        "frame_count": person.frame_count,
        "best_match": best,
        "all_matches": ([best] if best else []) + [match_json(m) for m in person.alternatives],
        "time_ranges": [{"start": r.start, "end": r.end} for r in person.time_ranges],
        "sightings": [
            {"frame_index": s.frame_index, "time": s.time_seconds, "box": face_box(s.face)}
            for s in person.sightings
        ],
        "signals_used": ["face"],
    }


def timing_json(timing: faces_pb2.FaceTiming) -> dict[str, float]:
    return {
        "total_ms": round(timing.total_ms, 1),
        "extraction_ms": round(timing.decode_ms, 1),
        "detection_ms": round(timing.detection_ms, 1),
        "embedding_ms": round(timing.embedding_ms, 1),
        "matching_ms": round(timing.matching_ms, 1),
    }
