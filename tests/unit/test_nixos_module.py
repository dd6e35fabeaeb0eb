"""nix/module.nix evaluated for real: Debian's nix-bin runs the NixOS module system of the shared
nixpkgs lib (../shared/nixpkgs-lib) offline, with a stub declaring the NixOS options the module sets
(tests/nix/). The resulting unit is asserted field by field and rendered as NixOS would write it for
`systemd-analyze verify`; wrong values must be refused by evaluation."""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest

from stash_vision.catalog.entries import Catalog
from tests.systemd_units import render_nixos_service, verify

ROOT = Path(__file__).resolve().parents[2]
NIXPKGS_LIB = Path(os.environ.get("STASH_VISION_SHARED_DIR", ROOT.parent / "shared")) / "nixpkgs-lib" / "lib"
NIX_MISSING = "nix-instantiate is not installed: scripts/test installs Debian's nix-bin"


@pytest.fixture(scope="module")
def nix_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    assert shutil.which("nix-instantiate"), NIX_MISSING
    assert (NIXPKGS_LIB / "default.nix").is_file(), f"the shared nixpkgs lib is missing at {NIXPKGS_LIB}"
    home = tmp_path_factory.mktemp("nix")
    # A private store and state: no daemon, nothing written outside the test's folder.
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "NIX_STATE_DIR": str(home / "state"),
        "NIX_STORE_DIR": str(home / "store"),
        "NIX_LOG_DIR": str(home / "log"),
        "NIX_CONFIG": "build-users-group =",
    }


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A stand-in for the built package: bin/stash-vision records its arguments and, for an
    import, writes the catalog entry the real importer would."""
    out = tmp_path_factory.mktemp("stash-vision-package")
    exe = out / "bin" / "stash-vision"
    exe.parent.mkdir()
    exe.write_text(
        "#!/bin/sh\n"
        'echo "$*" >> "$STASH_VISION_DATA_DIR/calls"\n'
        'if [ "$2" = import-skier233 ] && [ -n "${IMPORTED_AS:-}" ]; then\n'
        '  mkdir -p "$STASH_VISION_DATA_DIR/model_repository/$IMPORTED_AS"\n'
        '  touch "$STASH_VISION_DATA_DIR/model_repository/$IMPORTED_AS/catalog.yaml"\n'
        "fi\n"
    )
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    return out


def nix_instantiate(nix_env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["nix-instantiate", *args], capture_output=True, text=True, env=nix_env, timeout=120, check=False
    )


def evaluate(nix_env: dict[str, str], configuration: str) -> subprocess.CompletedProcess[str]:
    expression = f"import {ROOT}/tests/nix/evaluate.nix {{ libPath = {NIXPKGS_LIB}; configuration = {configuration}; }}"
    # --read-write-mode: the import script is written into the test's store, for the tests to run it.
    return nix_instantiate(nix_env, "--eval", "--strict", "--json", "--read-write-mode", "--expr", expression)


def evaluated(nix_env: dict[str, str], package: Path, options: str, extra: str = "") -> dict[str, Any]:
    configuration = (
        '{ services.stash-vision = { enable = true; package = { type = "derivation"; '
        f'name = "stash-vision-0.1.0"; outPath = "{package}"; }}; {options} }}; {extra} }}'
    )
    result = evaluate(nix_env, configuration)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def refusal(nix_env: dict[str, str], package: Path, options: str) -> str:
    configuration = (
        '{ services.stash-vision = { enable = true; package = { type = "derivation"; '
        f'name = "stash-vision-0.1.0"; outPath = "{package}"; }}; {options} }}; }}'
    )
    result = evaluate(nix_env, configuration)
    assert result.returncode != 0, f"evaluation accepted {options}: {result.stdout[:500]}"
    return result.stderr


def assert_systemd_accepts(service: dict[str, Any], tmp_path: Path) -> None:
    unit = tmp_path / "stash-vision.service"
    unit.write_text(render_nixos_service(service))
    assert verify(unit) == "", unit.read_text()


def test_model_names_match_the_catalog() -> None:
    written = json.loads((ROOT / "nix" / "catalog-models.json").read_text())
    assert written == Catalog.load().names(), "nix/catalog-models.json is stale: run scripts/gen-nix-models"


def test_plain_configuration(nix_env: dict[str, str], package: Path, tmp_path: Path) -> None:
    result = evaluated(nix_env, package, "")
    service = result["service"]
    config = service["serviceConfig"]
    exe = f"{package}/bin/stash-vision"
    assert config["ExecStart"] == f"{exe} serve"
    assert config["ExecStartPre"] == [f"{exe} models fetch"]
    assert config["Restart"] == "on-failure"
    assert config["User"] == config["Group"] == "stash-vision"
    assert config["StateDirectory"] == "stash-vision"
    assert config["ReadWritePaths"] == ["/var/lib/stash-vision"]
    assert service["environment"] == {
        "STASH_VISION_HOST": "127.0.0.1",
        "STASH_VISION_HTTP_PORT": "8000",
        "STASH_VISION_GRPC_PORT": "50051",
        "STASH_VISION_DATA_DIR": "/var/lib/stash-vision",
        "STASH_VISION_FACE_PROFILE": "default",
        "TMPDIR": "/tmp",
    }
    # Hardened; no device but the pseudo ones, no key anywhere.
    assert config["NoNewPrivileges"] is True
    assert config["PrivateTmp"] is True
    assert config["ProtectSystem"] == "strict"
    assert config["ProtectHome"] is True
    assert config["RestrictAddressFamilies"] == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert config["DevicePolicy"] == "closed"
    assert config["DeviceAllow"] == []
    assert config["PrivateDevices"] is True
    assert config["LoadCredential"] == []
    assert "stash.service" not in service["after"]
    assert result["users"]["stash-vision"]["isSystemUser"] is True
    assert "stash-vision" in result["groups"]
    assert result["firewall"] == []
    assert result["tmpfiles"] == []
    assert_systemd_accepts(service, tmp_path)


def test_accelerated_configuration(nix_env: dict[str, str], package: Path, tmp_path: Path) -> None:
    service = evaluated(
        nix_env,
        package,
        'acceleration = "cuda"; host = "0.0.0.0"; port = 8100; openFirewall = true; '
        'models = [ "nudenet_320n" "open_nsfw" ]; modelMirror = "http://nas.lan/models";',
        'systemd.services.stash = { description = "Stash"; };',
    )["service"]
    config = service["serviceConfig"]
    environment = service["environment"]
    assert environment["STASH_VISION_DEVICE"] == "cuda"
    assert environment["STASH_VISION_HOST"] == "0.0.0.0"
    assert environment["STASH_VISION_HTTP_PORT"] == "8100"
    assert json.loads(environment["STASH_VISION_MODELS"]) == ["nudenet_320n", "open_nsfw"]
    assert environment["STASH_VISION_MODEL_MIRROR"] == "http://nas.lan/models"
    assert config["DevicePolicy"] == "closed"
    assert config["DeviceAllow"] == ["char-nvidia-frontend rw", "char-nvidia-uvm rw", "char-nvidia-caps rw"]
    # A private /dev would hide the GPU.
    assert config["PrivateDevices"] is False
    # Stash's unit on the same host: started first.
    assert "stash.service" in service["after"]
    assert "stash.service" in service["wants"]
    assert_systemd_accepts(service, tmp_path)


def test_firewall_opens_the_http_port_only(nix_env: dict[str, str], package: Path) -> None:
    result = evaluated(nix_env, package, "openFirewall = true; port = 8100;")
    assert result["firewall"] == [8100]


def test_api_key_configuration(nix_env: dict[str, str], package: Path, tmp_path: Path) -> None:
    service = evaluated(
        nix_env,
        package,
        'apiKeyFile = "/run/secrets/stash-vision"; stash.url = "http://127.0.0.1:9999"; '
        'stash.apiKeyFile = "/run/secrets/stash"; libraryRoots = [ "/home/me/media" ]; '
        'pathMappings = { "/data" = "/home/me/media"; }; faceProfile = "stash-sense"; '
        'environment = { STASH_VISION_LOG_LEVEL = "DEBUG"; STASH_VISION_FACE_PROFILE = "mine"; };',
    )["service"]
    config = service["serviceConfig"]
    environment = service["environment"]
    # The keys reach the unit as credentials, by path; the environment names the credential files.
    assert config["LoadCredential"] == [
        "api-key:/run/secrets/stash-vision",
        "stash-api-key:/run/secrets/stash",
    ]
    assert environment["STASH_VISION_API_KEY_FILE"] == "%d/api-key"
    assert environment["STASH_VISION_STASH_API_KEY_FILE"] == "%d/stash-api-key"
    assert "STASH_VISION_API_KEY" not in environment
    assert "STASH_VISION_STASH_API_KEY" not in environment
    assert environment["STASH_VISION_STASH_URL"] == "http://127.0.0.1:9999"
    assert json.loads(environment["STASH_VISION_LIBRARY_ROOTS"]) == ["/home/me/media"]
    assert json.loads(environment["STASH_VISION_PATH_MAPPINGS"]) == {"/data": "/home/me/media"}
    # `environment` has the last word.
    assert environment["STASH_VISION_FACE_PROFILE"] == "mine"
    assert environment["STASH_VISION_LOG_LEVEL"] == "DEBUG"
    # Media under /home stays readable, read-only.
    assert config["ProtectHome"] == "read-only"
    assert_systemd_accepts(service, tmp_path)


def test_data_dir_outside_var_lib(nix_env: dict[str, str], package: Path) -> None:
    result = evaluated(nix_env, package, 'dataDir = "/srv/stash-vision";')
    config = result["service"]["serviceConfig"]
    assert "StateDirectory" not in config
    assert config["ReadWritePaths"] == ["/srv/stash-vision"]
    assert result["tmpfiles"] == ["d /srv/stash-vision 0750 stash-vision stash-vision - -"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("port = 70000;", "services.stash-vision.port' is not of type `16 bit unsigned integer"),
        ("grpcPort = -1;", "services.stash-vision.grpcPort' is not of type `16 bit unsigned integer"),
        ('models = [ "open_nsfw" "yolov8" ];', 'services.stash-vision.models."[definition 1-entry 2]"'),
        ('acceleration = "rocm";', "services.stash-vision.acceleration' is not of type"),
        # A key in the store would be world-readable: a path literal or a store path is refused.
        ("apiKeyFile = ./key;", "services.stash-vision.apiKeyFile' is not of type"),
        ('stash.apiKeyFile = "relative/key";', "services.stash-vision.stash.apiKeyFile' is not of type"),
        (
            'skier233Models."Gentler River".yaml = "/srv/x.yaml";',
            "skier233Models.Gentler River: a name is lowercase [a-z0-9_] and not a catalogued model",
        ),
        ('skier233Models.open_nsfw.yaml = "/srv/x.yaml";', "skier233Models.open_nsfw: a name is lowercase"),
    ],
)
def test_wrong_values_are_refused(nix_env: dict[str, str], package: Path, options: str, message: str) -> None:
    error = refusal(nix_env, package, options)
    assert message in error, error


def test_unknown_model_refusal_lists_the_catalog(nix_env: dict[str, str], package: Path) -> None:
    error = refusal(nix_env, package, 'models = [ "yolov8" ];')
    assert '"yolov8"' in error
    for name in Catalog.load().names():
        assert f'"{name}"' in error, error


def _import_script(service: dict[str, Any]) -> Path:
    first = service["serviceConfig"]["ExecStartPre"][0]
    assert first.endswith("-stash-vision-import-skier233"), first
    return Path(first)


def _run(script: Path, data: Path, imported_as: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "STASH_VISION_DATA_DIR": str(data), "IMPORTED_AS": imported_as}
    return subprocess.run(
        ["sh", str(script)], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_skier233_models_are_imported_once_per_yaml(
    nix_env: dict[str, str], package: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    options = (
        f'dataDir = "{data}"; models = [ "open_nsfw" ]; skier233Models.gentler_river.yaml = "/srv/a.yaml";'
    )
    service = evaluated(nix_env, package, options)["service"]
    assert service["serviceConfig"]["ExecStartPre"][1] == f"{package}/bin/stash-vision models fetch"
    assert json.loads(service["environment"]["STASH_VISION_MODELS"]) == ["open_nsfw", "gentler_river"]
    script = _import_script(service)
    data.mkdir()
    calls = data / "calls"

    assert _run(script, data, "gentler_river").returncode == 0
    assert calls.read_text().splitlines() == ["models import-skier233 /srv/a.yaml"]
    # A restart with the same YAML converts nothing.
    assert _run(script, data, "gentler_river").returncode == 0
    assert len(calls.read_text().splitlines()) == 1

    # Another YAML (a new version in the store) or a categories folder: imported again.
    changed = (
        options.replace("/srv/a.yaml", "/srv/b.yaml")
        + ' skier233Models.gentler_river.categories = "/srv/cats";'
    )
    script = _import_script(evaluated(nix_env, package, changed)["service"])
    assert _run(script, data, "gentler_river").returncode == 0
    assert calls.read_text().splitlines()[-1] == "models import-skier233 /srv/b.yaml --categories /srv/cats"


def test_a_skier233_model_imported_under_another_name_fails_the_start(
    nix_env: dict[str, str], package: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    service = evaluated(nix_env, package, f'dataDir = "{data}"; skier233Models.river.yaml = "/srv/a.yaml";')[
        "service"
    ]
    result = _run(_import_script(service), data, "gentler_river")
    assert result.returncode == 1
    assert "/srv/a.yaml was not imported as 'river'" in result.stderr


@pytest.mark.parametrize("path", ["nix/module.nix", "nix/package.nix", "flake.nix"])
def test_nix_files_parse(nix_env: dict[str, str], path: str) -> None:
    result = nix_instantiate(nix_env, "--parse", str(ROOT / path))
    assert result.returncode == 0, result.stderr


# nixpkgs' python3Packages attributes the package takes (nixpkgs is not here to ask): the
# stand-in Python set has exactly these, so a name package.nix uses beyond them fails the test.
NIXPKGS_PYTHON_PACKAGES = [
    "setuptools",
    "grpcio",
    "grpcio-health-checking",
    "grpcio-reflection",
    "protobuf",
    "tritonclient",
    "numpy",
    "numpy_1",
    "opencv4",
    "pydantic",
    "pydantic-settings",
    "pyyaml",
    "fastapi",
    "uvicorn",
    "websockets",
    "prometheus-client",
    "pillow",
    "av",
    "httpx",
    "jinja2",
    "onnxruntime",
    "openvino",  # pkgs/development/python-modules/openvino
    "torch",
    "onnx",
]
# Distributions whose nixpkgs attribute is not their PyPI name.
NIX_NAMES = {
    "opencv-python-headless": "opencv4",
    "numpy": "numpy_1",
    "voyager": "wheel:voyager",
    "nvidia-pytriton": "wheel:nvidia_pytriton",
}


def evaluated_package(nix_env: dict[str, str], with_skier233: bool) -> dict[str, Any]:
    names = "[ " + " ".join(f'"{name}"' for name in NIXPKGS_PYTHON_PACKAGES) + " ]"
    expression = (
        f"import {ROOT}/tests/nix/evaluate-package.nix {{ libPath = {NIXPKGS_LIB}; "
        f"withSkier233 = {'true' if with_skier233 else 'false'}; pythonPackageNames = {names}; }}"
    )
    result = nix_instantiate(nix_env, "--eval", "--strict", "--json", "--expr", expression)
    assert result.returncode == 0, result.stderr
    answer: dict[str, Any] = json.loads(result.stdout)
    return answer


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\[<>=!~;\s]", requirement, maxsplit=1)[0].lower()


def test_package_takes_every_runtime_and_embedded_requirement(nix_env: dict[str, str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    package = evaluated_package(nix_env, with_skier233=False)
    assert package["pname"] == project["name"]
    assert package["version"] == project["version"]
    assert package["pyproject"] is True
    assert package["build-system"] == ["setuptools"]
    assert package["mainProgram"] in project["scripts"]
    requirements = [*project["dependencies"], *project["optional-dependencies"]["embedded"]]
    wanted = {NIX_NAMES.get(name, name) for name in map(_requirement_name, requirements)}
    assert wanted - set(package["dependencies"]) == set(), "add them to nix/package.nix"
    # numpy 1 throughout (the PyTriton stub), and no torch unless asked.
    assert "numpy" not in package["dependencies"]
    assert "torch" not in package["dependencies"]
    assert "opencv-python-headless" in package["pythonRemoveDeps"]


def test_package_wheels_are_the_pinned_versions(nix_env: dict[str, str]) -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wheels = {wheel["pname"]: wheel for wheel in evaluated_package(nix_env, with_skier233=False)["wheels"]}
    pytriton = wheels["nvidia_pytriton"]
    assert (
        f"nvidia-pytriton=={pytriton['version']}; sys_platform == 'linux'"
        in project["optional-dependencies"]["embedded"]
    )
    assert (pytriton["python"], pytriton["abi"], pytriton["platform"]) == (
        "py3",
        "none",
        "manylinux_2_35_x86_64",
    )
    assert wheels["voyager"]["dependencies"] == ["numpy_1"]
    for wheel in wheels.values():
        assert wheel["format"] == "wheel"
        assert wheel["dist"] == wheel["python"]
        assert re.fullmatch(r"sha256-[A-Za-z0-9+/]{43}=", wheel["hash"]), wheel


def test_package_with_skier233_adds_torch(nix_env: dict[str, str]) -> None:
    dependencies = evaluated_package(nix_env, with_skier233=True)["dependencies"]
    assert {"torch", "onnx"} <= set(dependencies)
