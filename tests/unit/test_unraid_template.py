"""The single-container image (deploy/unraid/Dockerfile, entrypoint.sh) and its unRAID Community
Applications templates, checked without Docker: the templates against the CA linter's rules and the
settings they set, the Dockerfile parsed (stages, extras, user, health check, port, volume), and the
health check and the entry point run for real against stand-ins."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
from pydantic import ValidationError

from stash_vision.settings import Settings
from tests.unit.test_compose import _dockerfile_stages, ready_endpoint

__all__ = ["ready_endpoint"]  # the fixture, imported for the health-check test

REPO = Path(__file__).resolve().parents[2]
UNRAID = REPO / "deploy" / "unraid"
DOCKERFILE = UNRAID / "Dockerfile"
ENTRYPOINT = UNRAID / "entrypoint.sh"
GPU_TEMPLATE = UNRAID / "stash-vision.xml"
CPU_TEMPLATE = UNRAID / "stash-vision-cpu.xml"
TEMPLATES = [GPU_TEMPLATE, CPU_TEMPLATE]
PROFILES = REPO / "server" / "faces" / "profiles"

# Tags of the pre-6.2 template format; the CA linter refuses templates that still carry them.
OBSOLETE_TAGS = {"DateInstalled", "Networking", "Data", "Environment"}
# CA's parser breaks on these in any description, even XML-escaped.
FORBIDDEN_IN_DESCRIPTIONS = set("<>&\"'")
CONFIG_ATTRIBUTES = {
    "Name",
    "Target",
    "Default",
    "Mode",
    "Description",
    "Type",
    "Display",
    "Required",
    "Mask",
}
CONFIG_TYPES = {"Port", "Path", "Variable", "Label", "Device"}
DISPLAYS = {"always", "always-hide", "advanced", "advanced-hide"}
FLAVOUR_EXTRAS = {"cpu": "embedded", "cuda": "embedded-gpu"}


def _template(path: Path) -> ElementTree.Element:
    root = ElementTree.parse(path).getroot()
    assert root.tag == "Container" and root.get("version") == "2", f"{path.name}: not a v2 template"
    return root


def _configs(root: ElementTree.Element) -> list[dict[str, str]]:
    return [{**config.attrib, "value": config.text or ""} for config in root.iter("Config")]


def _setting_names() -> set[str]:
    return {f"STASH_VISION_{name.upper()}" for name in Settings.model_fields}


def _check_setting(name: str, value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings read the value from the environment exactly as the container will."""
    for variable in list(os.environ):
        if variable.startswith("STASH_VISION_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv(name, value)
    try:
        Settings()
    except ValidationError as error:
        pytest.fail(f"{name}={value!r} is refused by the settings: {error}")


# --- the templates: the CA linter's rules ---------------------------------------------------------------


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_follows_the_ca_linter_rules(path: Path) -> None:
    root = _template(path)
    for tag in ("Name", "Repository", "Overview", "WebUI", "Icon", "Category"):
        assert (root.findtext(tag) or "").strip(), f"{path.name}: <{tag}> is missing or empty"
    links = [root.findtext(tag) or "" for tag in ("Support", "Project")]
    assert any(re.match(r"https?://\S+$", link) for link in links), f"{path.name}: no Support or Project link"

    obsolete = sorted({element.tag for element in root.iter()} & OBSOLETE_TAGS)
    assert not obsolete, f"{path.name}: obsolete tags {obsolete}"

    # ElementTree has already unescaped &quot; and the like: what CA shows is what is checked.
    descriptions = {tag: root.findtext(tag) or "" for tag in ("Overview", "Description", "Requires")}
    descriptions |= {f"Config {c['Name']!r}": c["Description"] for c in _configs(root)}
    for where, text in descriptions.items():
        bad = sorted(set(text) & FORBIDDEN_IN_DESCRIPTIONS)
        assert not bad, f"{path.name}: {where} contains {bad}: {text!r}"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_webui_port_is_the_target_of_a_port_config(path: Path) -> None:
    root = _template(path)
    webui = root.findtext("WebUI") or ""
    match = re.fullmatch(r"http://\[IP\]:\[PORT:(\d+)\](/\S*)", webui)
    assert match, f"{path.name}: WebUI {webui!r} is not http://[IP]:[PORT:n]/path"
    ports = {c["Target"] for c in _configs(root) if c["Type"] == "Port"}
    assert match.group(1) in ports, f"{path.name}: WebUI port {match.group(1)} is no Port config's Target"
    assert match.group(1) == "8000" and match.group(2) == "/ui/"


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_config_entries_are_complete_and_unique(path: Path) -> None:
    configs = _configs(_template(path))
    for config in configs:
        assert set(config) - {"value"} == CONFIG_ATTRIBUTES, f"{path.name}: {config}"
        assert config["Type"] in CONFIG_TYPES and config["Display"] in DISPLAYS, config
        assert config["Required"] in ("true", "false") and config["Mask"] in ("true", "false"), config
        if config["Type"] == "Port":
            assert config["Mode"] in ("tcp", "udp") and config["Target"].isdigit(), config
        if config["Type"] == "Path":
            assert config["Mode"] in ("rw", "ro") and config["Target"].startswith("/"), config
    for key in ("Name", "Target"):
        values = [config[key] for config in configs]
        assert len(values) == len(set(values)), f"{path.name}: duplicate {key}s in {values}"


# --- the templates: what they set -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_every_variable_is_a_setting_and_its_values_are_accepted(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    variables = [c for c in _configs(_template(path)) if c["Type"] == "Variable"]
    unknown = sorted(c["Target"] for c in variables if c["Target"] not in _setting_names())
    assert not unknown, f"{path.name}: variables that are no setting in stash_vision/settings.py: {unknown}"
    for config in variables:
        # A Default with | is a drop-down; the value is the one preselected.
        for value in {config["value"], *config["Default"].split("|")} - {""}:
            _check_setting(config["Target"], value, monkeypatch)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.name)
def test_template_sets_what_the_issue_asks(path: Path) -> None:
    configs = {c["Target"]: c for c in _configs(_template(path))}
    assert configs["8000"]["Type"] == "Port"
    assert configs["/data"]["Mode"] == "rw" and configs["/media"]["Mode"] == "ro"
    for secret in ("STASH_VISION_API_KEY", "STASH_VISION_STASH_API_KEY"):
        assert configs[secret]["Mask"] == "true", f"{secret} must be masked"
    assert "STASH_VISION_STASH_URL" in configs and "STASH_VISION_PATH_MAPPINGS" in configs
    assert json.loads(configs["STASH_VISION_PATH_MAPPINGS"]["value"]) == {"/data": "/media"}
    assert json.loads(configs["STASH_VISION_LIBRARY_ROOTS"]["value"]) == ["/media"]
    profiles = configs["STASH_VISION_FACE_PROFILE"]["Default"].split("|")
    assert sorted(profiles) == sorted(p.stem for p in PROFILES.glob("*.yaml"))


def test_the_gpu_template_asks_for_the_gpus_and_the_cpu_one_does_not() -> None:
    gpu, cpu = _template(GPU_TEMPLATE), _template(CPU_TEMPLATE)
    assert "--gpus all" in (gpu.findtext("ExtraParams") or "")
    assert "--gpus" not in (cpu.findtext("ExtraParams") or "")
    for root in (gpu, cpu):
        # Triton's Python backend passes tensors through /dev/shm; Docker's default 64 MB is too small.
        assert "--shm-size=1g" in (root.findtext("ExtraParams") or "")
    assert (gpu.findtext("Repository") or "").endswith(":cuda")
    assert (cpu.findtext("Repository") or "").endswith(":cpu")


def test_the_two_templates_differ_only_in_the_flavour() -> None:
    gpu, cpu = _template(GPU_TEMPLATE), _template(CPU_TEMPLATE)
    flavour_only = {"Name", "Repository", "Overview", "TemplateURL", "ExtraParams", "Requires"}
    for tag in {child.tag for child in [*gpu, *cpu]} - flavour_only - {"Config"}:
        assert gpu.findtext(tag) == cpu.findtext(tag), tag
    gpu_only = {"STASH_VISION_DEVICE"}
    assert [c for c in _configs(gpu) if c["Target"] not in gpu_only] == _configs(cpu)


# --- the Dockerfile, parsed -----------------------------------------------------------------------------------


def _global_args() -> dict[str, str]:
    text = DOCKERFILE.read_text(encoding="utf-8")
    head = text[: re.search(r"^FROM ", text, re.M).start()]  # type: ignore[union-attr]
    return dict(re.findall(r"^ARG (\w+)=(\S*)$", head, re.M))


def _stages() -> dict[str, list[tuple[str, str]]]:
    named: dict[str, list[tuple[str, str]]] = {}
    for stage in _dockerfile_stages(DOCKERFILE):
        match = re.fullmatch(r"(\S+)\s+AS\s+(\S+)", stage[0][1], re.I)
        assert match, f"every stage is named: {stage[0]}"
        named[match.group(2)] = stage
    return named


def _values(stage: list[tuple[str, str]], keyword: str) -> list[str]:
    return [arguments for word, arguments in stage if word == keyword]


def _env(stage: list[tuple[str, str]]) -> dict[str, str]:
    pairs: dict[str, str] = {}
    for arguments in _values(stage, "ENV"):
        for name, value in re.findall(r"(\w+)=('[^']*'|\"[^\"]*\"|\S+)", arguments):
            pairs[name] = value.strip("'\"")
    return pairs


def test_each_flavour_is_a_stage_that_installs_its_extra() -> None:
    stages = _stages()
    assert _global_args()["FLAVOUR"] == "cpu"
    assert stages["runtime"][0][1].split()[0] == "install-${FLAVOUR}"
    extras = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "optional-dependencies"
    ]
    for flavour, extra in FLAVOUR_EXTRAS.items():
        stage = stages[f"install-{flavour}"]
        assert stage[0][1].split()[0] == "base"
        installs = " ".join(run for run in _values(stage, "RUN") if "pip install" in run)
        assert re.findall(r"\[([\w-]+)\]", installs) == [extra], f"install-{flavour}: {installs}"
        assert extra in extras, f"pyproject.toml has no [{extra}] extra"
    assert _env(stages["install-cuda"])["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"


def test_runtime_runs_serve_as_a_user_with_data_volume_port_and_health_check() -> None:
    stages = _stages()
    runtime = stages["runtime"]
    user = _values(runtime, "USER")[-1].split(":")[0]
    uid = _global_args()[user[2:-1]] if user.startswith("${") else user
    assert uid not in ("root", "0"), "the image must not run as root"
    assert _values(runtime, "VOLUME") == ["/data"]
    assert _values(runtime, "EXPOSE") == ["8000"]
    env = _env(stages["base"])
    assert env["STASH_VISION_DATA_DIR"] == "/data" and env["STASH_VISION_HOST"] == "0.0.0.0"
    assert json.loads(env["STASH_VISION_LIBRARY_ROOTS"]) == ["/media"]
    unknown = sorted(
        name for name in env if name.startswith("STASH_VISION_") and name not in _setting_names()
    )
    assert not unknown, f"ENV that is no setting: {unknown}"
    assert json.loads(_values(runtime, "ENTRYPOINT")[-1]) == ["tini", "--", "stash-vision-entrypoint"]
    copies = [args for args in _values(stages["base"], "COPY") if "entrypoint" in args]
    assert copies and copies[0].split()[-2] == str(ENTRYPOINT.relative_to(REPO))
    assert "/ready" in _healthcheck()


def _healthcheck() -> str:
    (healthcheck,) = _values(_stages()["runtime"], "HEALTHCHECK")
    return healthcheck


def test_baking_weights_is_a_build_argument_that_runs_models_fetch() -> None:
    runtime = _stages()["runtime"]
    assert "BAKE_MODELS=false" in _values(runtime, "ARG")
    bake = next(run for run in _values(runtime, "RUN") if "BAKE_MODELS" in run)
    assert "stash-vision models fetch" in bake and "/opt/stash-vision/models" in bake


def test_every_copied_file_is_in_the_build_context() -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    for stage in _stages().values():
        for arguments in _values(stage, "COPY"):
            if "--from=" in arguments:
                continue
            for source in [s for s in arguments.split()[:-1] if not s.startswith("--")]:
                assert (REPO / source).exists(), f"COPY {source}: no such file"
                assert source.split("/")[0] not in ignored, f"COPY {source}: excluded by .dockerignore"


# --- the health check and the entry point, run -----------------------------------------------------------------


def test_health_check_reads_ready(ready_endpoint: tuple[int, dict[str, int]]) -> None:
    port, state = ready_endpoint
    command = json.loads(re.sub(r"^.*?CMD\s+", "", _healthcheck()))
    assert command[:2] == ["python", "-c"]
    env = {**os.environ, "STASH_VISION_HTTP_PORT": str(port)}
    run = [sys.executable, "-c", command[2]]
    assert subprocess.run(run, env=env, capture_output=True, timeout=30).returncode != 0
    state["status"] = 200
    result = subprocess.run(run, env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def _entrypoint(tmp_path: Path, data: Path, fetch_fails: bool = False) -> subprocess.CompletedProcess[str]:
    """The entry point with a stand-in `stash-vision` on PATH that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    stand_in = bin_dir / "stash-vision"
    stand_in.write_text(
        '#!/bin/sh\necho "$*" >> "$CALLS"\n'
        + ('[ "$1" = models ] && exit 3\n' if fetch_fails else "")
        + "exit 0\n"
    )
    stand_in.chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STASH_VISION_DATA_DIR": str(data),
        "BAKED_MODELS_DIR": str(tmp_path / "baked"),
        "CALLS": str(tmp_path / "calls"),
    }
    return subprocess.run(
        ["sh", str(ENTRYPOINT), "--extra"], env=env, capture_output=True, text=True, timeout=30
    )


def test_entrypoint_seeds_baked_weights_fetches_then_serves(tmp_path: Path) -> None:
    baked = tmp_path / "baked"
    (baked / "open_nsfw" / "1").mkdir(parents=True)
    (baked / "open_nsfw" / "1" / "model.onnx").write_bytes(b"baked")
    (baked / "yunet" / "1").mkdir(parents=True)
    (baked / "yunet" / "1" / "model.onnx").write_bytes(b"baked")
    data = tmp_path / "data"
    (data / "models" / "yunet" / "1").mkdir(parents=True)
    (data / "models" / "yunet" / "1" / "model.onnx").write_bytes(b"already here")

    result = _entrypoint(tmp_path, data)
    assert result.returncode == 0, result.stderr
    assert (data / "models" / "open_nsfw" / "1" / "model.onnx").read_bytes() == b"baked"
    assert (data / "models" / "yunet" / "1" / "model.onnx").read_bytes() == b"already here"
    assert (tmp_path / "calls").read_text().splitlines() == ["models fetch", "serve --extra"]
    assert not (data / ".stash-vision-write-test").exists()


def test_entrypoint_stops_with_advice_when_the_weights_cannot_be_fetched(tmp_path: Path) -> None:
    result = _entrypoint(tmp_path, tmp_path / "data", fetch_fails=True)
    assert result.returncode == 1
    assert "BAKE_MODELS=true" in result.stderr and "STASH_VISION_MODEL_MIRROR" in result.stderr
    assert (tmp_path / "calls").read_text().splitlines() == ["models fetch"]


def test_entrypoint_stops_with_advice_when_data_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = _entrypoint(tmp_path, blocker / "data")
    assert result.returncode == 1
    assert "is not writable" in result.stderr and "chown -R" in result.stderr
    assert not (tmp_path / "calls").exists()
