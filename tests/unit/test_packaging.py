"""The wheel must contain every package: pyproject lists them explicitly (package-dir mapping)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ROOTS = {
    "stash_vision": REPO / "stash_vision",
    "stash_vision.server": REPO / "server",
    "stash_vision.adapter": REPO / "adapter",
}


def _declared() -> set[str]:
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    return set(config["tool"]["setuptools"]["packages"])


def test_every_python_package_folder_is_declared() -> None:
    found = {"stash_vision.model_repository"}
    for name, root in ROOTS.items():
        for init in root.rglob("__init__.py"):
            relative = init.parent.relative_to(root).parts
            found.add(".".join((name, *relative)))
    assert found == _declared(), f"add to [tool.setuptools] packages: {sorted(found - _declared())}"


def test_wheel_contains_code_configs_and_stubs(tmp_path: Path) -> None:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    wheel = next(tmp_path.glob("stash_vision-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "stash_vision/server/faces/detection.py",
        "stash_vision/adapter/routes/health.py",
        "stash_vision/v1/inference_pb2_grpc.py",
        "stash_vision/v1/inference_pb2.pyi",
        "stash_vision/embedded/ort_runner.py",
        "stash_vision/model_repository/open_nsfw/config.pbtxt",
        "stash_vision/model_repository/open_nsfw/catalog.yaml",
        "stash_vision/model_repository/nudenet_320n/labels.txt",
    ):
        assert expected in names, expected
    assert not any(name.endswith(".onnx") for name in names), "weights never ship in the wheel"
