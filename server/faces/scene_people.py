"""Who is in a scene: the faces of the sampled frames are clustered into persons, clusters whose
strongest candidate is the same performer are merged (one person seen twice), and each person gets
one performer by vote, with the frames and times they were seen. Pure and blocking (numpy): the
face service runs it in the CPU pool once every frame has been matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from stash_vision.server.faces.matching import (
    Match,
    Vector,
    assign_people,
    cluster_faces,
    fused_vector,
    time_ranges,
    vote_person,
)
from stash_vision.server.faces.pipeline import EmbeddedFace
from stash_vision.server.faces.results import Sighting, VideoPerson


@dataclass
class FrameFaces:
    """One analysed frame: its faces and each face's performer candidates."""

    index: int
    time_s: float
    faces: list[EmbeddedFace] = field(default_factory=list)
    matches: list[list[Match]] = field(default_factory=list)


def people_in_scene(
    frames: list[FrameFaces], cluster_distance: float, weights: dict[str, float]
) -> list[VideoPerson]:
    """The persons of a scene, those with a performer first, then by how often they were seen;
    person ids are their positions. Sorts `frames` by index in place."""
    frames.sort(key=lambda f: f.index)
    items: list[tuple[tuple[int, int], Vector]] = []
    for f_number, frame in enumerate(frames):
        for face_number, face in enumerate(frame.faces):
            items.append(((f_number, face_number), fused_vector(face.vectors, weights)))
    clusters = cluster_faces(items, cluster_distance)
    members = [cluster.members for cluster in clusters]

    # Two clusters whose strongest candidate is the same performer are one person seen twice
    # (lighting, pose): merge them before performers are handed out.
    def votes_of(group: list[tuple[int, int]]) -> list[tuple[Match, float]]:
        return vote_person([(frames[f].index, frames[f].matches[i]) for f, i in group])

    people: list[list[tuple[int, int]]] = []
    candidates: list[list[tuple[Match, float]] | None] = []
    person_of: dict[str, int] = {}
    for group in members:
        votes = votes_of(group)
        key = votes[0][0].performer.id if votes else None
        if key is not None and key in person_of:
            person = person_of[key]
            people[person].extend(group)
            candidates[person] = None  # merged: voted again below
            continue
        if key is not None:
            person_of[key] = len(people)
        people.append(group)
        candidates.append(votes)
    final = [
        votes if votes is not None else votes_of(group)
        for group, votes in zip(people, candidates, strict=True)
    ]
    sizes = [len({frames[f].index for f, _ in group}) for group in people]
    verdicts = assign_people(final, sizes)
    result = []
    for group, verdict, size in zip(people, verdicts, sizes, strict=True):
        sightings = [Sighting(frames[f].index, frames[f].time_s, frames[f].faces[i].face) for f, i in group]
        sightings.sort(key=lambda s: s.frame_index)
        result.append(
            VideoPerson(
                person_id=0,
                frame_count=size,
                best=verdict.best,
                alternatives=list(verdict.alternatives),
                time_ranges=time_ranges([(s.frame_index, s.time_s) for s in sightings]),
                sightings=sightings,
            )
        )
    result.sort(key=lambda p: (p.best is None, -p.frame_count, p.best.distance if p.best else 0.0))
    return [
        VideoPerson(i, p.frame_count, p.best, p.alternatives, p.time_ranges, p.sightings)
        for i, p in enumerate(result)
    ]
