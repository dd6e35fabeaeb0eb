"""Face profiles: which detector and embedders run, exactly how each model's input is prepared,
how embedders are fused and where the thresholds sit.

A profile is data (profiles/<name>.yaml). Its `recipe()` is everything that changes a vector, and an
index records it in its manifest, so an index built with one recipe is never queried with another
(the mismatch Stash Sense's manifests could not catch)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from stash_vision.catalog.entries import InputContract


class ProfileError(ValueError):
    """A profile is unknown, malformed or needs a model that is not served."""


class DetectorSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str
    kind: Literal["yunet", "scrfd"]
    # How a whole image becomes the detector's input (letterbox to a multiple of 32).
    input: InputContract
    nms_iou: float = Field(default=0.4, gt=0, le=1)
    # Candidates below this never leave the decoder (the query gate is usually higher).
    decode_threshold: float = Field(default=0.3, ge=0, le=1)


class EmbedderSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9_]+$")
    model: str
    # How the 112x112 ArcFace-aligned crop becomes this model's input (size, layout, colour order,
    # normalisation). `tensor` must be the model's input name.
    input: InputContract
    output: str
    dimensions: int = Field(gt=0)
    # Embed the crop and its mirror image and average the raw outputs (Stash Sense does).
    flip_average: bool = False
    # Share of this embedder in the fused distance.
    weight: float = Field(default=1.0, gt=0)


class Thresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Query-time detection gates.
    min_face_confidence: float = Field(ge=0, le=1)
    min_face_size: int = Field(ge=1)
    # Fused cosine distance at or below which two faces are the same person; identification never
    # returns a match farther than this.
    max_distance: float = Field(gt=0, le=2)
    # Faces of a video join a cluster whose centre is closer than this (fused cosine distance).
    cluster_distance: float = Field(gt=0, le=2)
    # A gallery keeps a performer voted by at least this share of the images that have faces.
    gallery_min_vote_share: float = Field(ge=0, le=1)


class EnrollmentGates(BaseModel):
    """Quality gates of `stash-vision index build` (stricter than queries: an index keeps its mistakes)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_face_size: int = Field(ge=1)
    min_face_confidence: float = Field(ge=0, le=1)
    max_abs_yaw_degrees: float = Field(gt=0, le=90)
    # A face this close to one already enrolled for the same performer adds nothing: a duplicate.
    duplicate_distance: float = Field(ge=0, le=2)


class FaceProfile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")
    description: str = ""
    detector: DetectorSpec
    embedders: list[EmbedderSpec] = Field(min_length=1)
    # Stash Sense fuses per index row; an embedder that did not return the row counts this distance.
    missing_distance: float = Field(default=0.5, ge=0, le=2)
    thresholds: Thresholds
    enrollment: EnrollmentGates

    @model_validator(mode="after")
    def _unique_embedders(self) -> FaceProfile:
        names = [embedder.name for embedder in self.embedders]
        if len(set(names)) != len(names):
            raise ValueError(f"embedder names must be unique, got {names}")
        return self

    @property
    def embedder_names(self) -> list[str]:
        return [embedder.name for embedder in self.embedders]

    @property
    def models(self) -> list[str]:
        """Catalog models this profile needs served."""
        return [self.detector.model, *(embedder.model for embedder in self.embedders)]

    def weights(self) -> dict[str, float]:
        """Fusion weights, normalised to sum to 1."""
        total = sum(embedder.weight for embedder in self.embedders)
        return {embedder.name: embedder.weight / total for embedder in self.embedders}

    def recipe(self) -> dict[str, Any]:
        """Everything that determines a stored vector: the index manifest records it and loading
        compares it. Query-time thresholds are left out (changing them needs no rebuild)."""
        return {
            "profile": self.name,
            "detector": self.detector.model_dump(mode="json"),
            "alignment": {"template": "arcface_112", "method": "similarity_5_point"},
            "embedders": [embedder.model_dump(mode="json") for embedder in self.embedders],
            "normalisation": "l2",
        }


def builtin_profiles_dir() -> Path:
    return Path(str(resources.files("stash_vision.server.faces"))) / "profiles"


def load_profile(name: str, extra_dirs: list[Path] | tuple[Path, ...] = ()) -> FaceProfile:
    """A profile by name: user profiles (extra_dirs, e.g. $DATA/face_profiles) before the built-in ones."""
    for folder in (*extra_dirs, builtin_profiles_dir()):
        path = folder / f"{name}.yaml"
        if path.is_file():
            try:
                profile = FaceProfile.model_validate(yaml.safe_load(path.read_text()))
            except (OSError, yaml.YAMLError, ValueError) as error:
                raise ProfileError(f"invalid face profile {path}: {error}") from error
            if profile.name != name:
                raise ProfileError(f"{path}: name {profile.name!r} must match the file name {name!r}")
            return profile
    known = sorted(
        {p.stem for folder in (*extra_dirs, builtin_profiles_dir()) for p in folder.glob("*.yaml")}
    )
    raise ProfileError(
        f"unknown face profile {name!r} (STASH_VISION_FACE_PROFILE); known: {', '.join(known)}"
    )
