"""Unit tests for stash_vision.server.faces.profile: the built-in profiles, loading (user folders
first, errors named), fusion weights and the recipe an index records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from stash_vision.catalog.entries import Catalog
from stash_vision.server.faces.pipeline import check_profile
from stash_vision.server.faces.profile import (
    FaceProfile,
    ProfileError,
    builtin_profiles_dir,
    load_profile,
)

BUILTIN = ("default", "stash-sense")


def builtin_data(name: str) -> dict[str, Any]:
    data = yaml.safe_load((builtin_profiles_dir() / f"{name}.yaml").read_text())
    assert isinstance(data, dict)
    return data


def write_profile(folder: Path, file_name: str, data: dict[str, Any]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{file_name}.yaml").write_text(yaml.safe_dump(data))


# ------------------------------------------------------------------------------------ built-in profiles


def test_builtin_profiles_are_packaged() -> None:
    names = {path.stem for path in builtin_profiles_dir().glob("*.yaml")}
    assert set(BUILTIN) <= names


def test_default_profile() -> None:
    profile = load_profile("default")
    assert profile.name == "default"
    assert profile.detector.model == "scrfd_500m"
    assert profile.detector.kind == "scrfd"
    assert profile.embedder_names == ["mobilefacenet"]
    assert profile.models == ["scrfd_500m", "mobilefacenet"]
    assert profile.weights() == {"mobilefacenet": 1.0}
    assert profile.embedders[0].dimensions == 128
    assert profile.embedders[0].flip_average is True
    assert profile.missing_distance == 0.5
    assert profile.thresholds.max_distance == pytest.approx(0.57)
    assert profile.thresholds.gallery_min_vote_share == pytest.approx(0.2)


def test_stash_sense_profile_matches_the_stash_sense_recipe() -> None:
    profile = load_profile("stash-sense")
    assert profile.models == ["scrfd_500m", "facenet512", "arcface"]
    assert profile.embedder_names == ["facenet", "arcface"]
    assert profile.weights() == {"facenet": 0.5, "arcface": 0.5}
    facenet, arcface = profile.embedders
    # FaceNet512: 160x160 NHWC, (x - 127.5) / 127.5; ArcFace: 112x112 NHWC, (x - 127.5) / 128.
    assert (facenet.input.width, facenet.input.height, facenet.input.layout) == (160, 160, "NHWC")
    assert facenet.input.mean == (127.5, 127.5, 127.5)
    assert facenet.input.std == (127.5, 127.5, 127.5)
    assert (arcface.input.width, arcface.input.height, arcface.input.layout) == (112, 112, "NHWC")
    assert arcface.input.std == (128.0, 128.0, 128.0)
    assert [e.dimensions for e in profile.embedders] == [512, 512]
    assert all(e.flip_average for e in profile.embedders)
    assert profile.missing_distance == 0.5
    # Stash Sense's query gates and scene cut.
    assert profile.thresholds.min_face_confidence == 0.5
    assert profile.thresholds.min_face_size == 40
    assert profile.thresholds.max_distance == 0.5
    assert profile.thresholds.cluster_distance == 0.6
    assert profile.enrollment.min_face_size == 80
    assert profile.enrollment.min_face_confidence == 0.8
    assert profile.enrollment.max_abs_yaw_degrees == 45


@pytest.mark.parametrize("name", BUILTIN)
def test_builtin_profile_runs_with_the_catalog(name: str) -> None:
    """Every model is catalogued, input/output tensor names exist and the embedders' dimensions
    and input contracts agree with the catalog (what a Triton config promises)."""
    profile = load_profile(name)
    catalog = Catalog.load()
    entries = {model: catalog.get(model) for model in profile.models}
    check_profile(profile, entries)
    assert entries[profile.detector.model].input == profile.detector.input
    for embedder in profile.embedders:
        entry = entries[embedder.model]
        assert entry.input == embedder.input, f"{name}/{embedder.name}: input differs from the catalog"
        (output,) = [o for o in entry.triton_config.output if o.name == embedder.output]
        assert list(output.dims) == [embedder.dimensions]


# -------------------------------------------------------------------------------------------- weights


def test_weights_are_normalised_to_sum_to_one() -> None:
    data = builtin_data("stash-sense")
    data["embedders"][0]["weight"] = 1.0
    data["embedders"][1]["weight"] = 3.0
    profile = FaceProfile.model_validate(data)
    assert profile.weights() == {"facenet": 0.25, "arcface": 0.75}


def test_weight_must_be_positive() -> None:
    data = builtin_data("stash-sense")
    data["embedders"][0]["weight"] = 0.0
    with pytest.raises(ValueError, match="weight"):
        FaceProfile.model_validate(data)


# --------------------------------------------------------------------------------------------- recipe


def test_recipe_records_everything_that_changes_a_vector() -> None:
    profile = load_profile("stash-sense")
    recipe = profile.recipe()
    assert recipe["profile"] == "stash-sense"
    assert recipe["normalisation"] == "l2"
    assert recipe["alignment"] == {"template": "arcface_112", "method": "similarity_5_point"}
    assert recipe["detector"]["model"] == "scrfd_500m"
    assert [e["name"] for e in recipe["embedders"]] == ["facenet", "arcface"]
    assert recipe["embedders"][0]["input"]["interpolation"] == "area"
    assert recipe["embedders"][0]["flip_average"] is True
    # JSON-ready (the manifest stores it), and stable through a JSON round trip.
    assert json.loads(json.dumps(recipe)) == recipe
    assert "thresholds" not in recipe
    assert "enrollment" not in recipe


def test_recipe_ignores_thresholds_but_not_preprocessing() -> None:
    base = builtin_data("default")
    reference = FaceProfile.model_validate(base).recipe()

    looser = json.loads(json.dumps(base))
    looser["thresholds"]["max_distance"] = 0.7
    looser["enrollment"]["min_face_size"] = 100
    assert FaceProfile.model_validate(looser).recipe() == reference

    unflipped = json.loads(json.dumps(base))
    unflipped["embedders"][0]["flip_average"] = False
    assert FaceProfile.model_validate(unflipped).recipe() != reference

    renormalised = json.loads(json.dumps(base))
    renormalised["embedders"][0]["input"]["std"] = [0.5, 0.5, 0.5]
    assert FaceProfile.model_validate(renormalised).recipe() != reference

    detector = json.loads(json.dumps(base))
    detector["detector"]["input"]["width"] = 320
    detector["detector"]["input"]["height"] = 320
    assert FaceProfile.model_validate(detector).recipe() != reference


def test_builtin_recipes_differ() -> None:
    assert load_profile("default").recipe() != load_profile("stash-sense").recipe()


# -------------------------------------------------------------------------------------------- loading


def test_user_profile_overrides_builtin(tmp_path: Path) -> None:
    data = builtin_data("default")
    data["description"] = "mine"
    data["thresholds"]["max_distance"] = 0.42
    write_profile(tmp_path / "profiles", "default", data)
    profile = load_profile("default", [tmp_path / "profiles"])
    assert profile.description == "mine"
    assert profile.thresholds.max_distance == 0.42


def test_user_profile_with_new_name(tmp_path: Path) -> None:
    data = builtin_data("default")
    data["name"] = "my_profile"
    write_profile(tmp_path, "my_profile", data)
    assert load_profile("my_profile", (tmp_path,)).name == "my_profile"
    # The earlier folder wins.
    other = dict(data, description="second")
    write_profile(tmp_path / "later", "my_profile", other)
    assert load_profile("my_profile", (tmp_path, tmp_path / "later")).description == data["description"]


def test_unknown_profile_lists_the_known_ones(tmp_path: Path) -> None:
    data = builtin_data("default")
    data["name"] = "mine"
    write_profile(tmp_path, "mine", data)
    with pytest.raises(ProfileError, match="unknown face profile 'nope'") as error:
        load_profile("nope", [tmp_path])
    message = str(error.value)
    assert "default" in message
    assert "stash-sense" in message
    assert "mine" in message


def test_name_must_match_file_name(tmp_path: Path) -> None:
    write_profile(tmp_path, "other", builtin_data("default"))
    with pytest.raises(ProfileError, match="must match the file name"):
        load_profile("other", [tmp_path])


@pytest.mark.parametrize(
    ("change", "pattern"),
    [
        (lambda d: d.update(surprise=1), "surprise"),
        (lambda d: d["embedders"].append(dict(d["embedders"][0])), "unique"),
        (lambda d: d.update(embedders=[]), "embedders"),
        (lambda d: d["thresholds"].update(max_distance=0), "max_distance"),
        (lambda d: d["detector"].update(kind="mtcnn"), "kind"),
        (lambda d: d["embedders"][0].update(name="Bad Name"), "name"),
    ],
)
def test_malformed_profile_is_a_profile_error(tmp_path: Path, change: Any, pattern: str) -> None:
    data = builtin_data("default")
    change(data)
    write_profile(tmp_path, "default", data)
    with pytest.raises(ProfileError, match=pattern):
        load_profile("default", [tmp_path])


def test_invalid_yaml_is_a_profile_error(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    with pytest.raises(ProfileError, match="invalid face profile"):
        load_profile("broken", [tmp_path])


def test_profile_is_frozen() -> None:
    profile = load_profile("default")
    with pytest.raises(ValueError):
        profile.missing_distance = 0.7  # type: ignore[misc]
