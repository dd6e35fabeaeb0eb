"""deploy/systemd/: the unit for a venv install, its CUDA drop-in and the settings example, read by
systemd itself. `systemd-analyze verify` must print nothing for them (it exits 0 on unknown keys and
bad values), and the example's variables, parsed by systemd's own environment-file parser, must be
settings stash-vision accepts."""

from __future__ import annotations

import os
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from stash_vision.settings import Settings
from tests.systemd_units import verify

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "systemd"
VENV_EXE = "/opt/stash-vision/.venv/bin/stash-vision"
# systemd's parser of EnvironmentFile= (load_env_file), run by the environment.d generator.
ENV_GENERATOR = Path("/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator")
HARDENING = [
    "NoNewPrivileges=yes",
    "PrivateTmp=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "DevicePolicy=closed",
    "PrivateDevices=yes",
    "CapabilityBoundingSet=",
    "RemoveIPC=yes",
]


def installed_copy(folder: Path, uncomment_credentials: bool = False) -> Path:
    """The unit as installed, its ExecStart binary pointing at a stand-in that exists here (verify
    checks that the binaries are executable)."""
    exe = folder / "bin" / "stash-vision"
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text("#!/bin/sh\n")
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    text = (DEPLOY / "stash-vision.service").read_text()
    assert VENV_EXE in text
    text = text.replace(VENV_EXE, str(exe))
    if uncomment_credentials:
        text = "\n".join(
            line[1:] if line.startswith(("#LoadCredential=", "#Environment=STASH_VISION_")) else line
            for line in text.splitlines()
        )
    unit = folder / "stash-vision.service"
    unit.write_text(text)
    return unit


def test_unit_is_accepted_by_systemd(tmp_path: Path) -> None:
    assert verify(installed_copy(tmp_path)) == ""


def test_unit_with_the_credentials_is_accepted_by_systemd(tmp_path: Path) -> None:
    unit = installed_copy(tmp_path, uncomment_credentials=True)
    lines = unit.read_text().splitlines()
    assert "LoadCredential=api-key:/etc/stash-vision/api-key" in lines
    assert "Environment=STASH_VISION_API_KEY_FILE=%d/api-key" in lines
    assert "LoadCredential=stash-api-key:/etc/stash-vision/stash-api-key" in lines
    assert "Environment=STASH_VISION_STASH_API_KEY_FILE=%d/stash-api-key" in lines
    assert verify(unit) == ""


def test_cuda_drop_in_is_accepted_by_systemd(tmp_path: Path) -> None:
    unit = installed_copy(tmp_path)
    drop_in = tmp_path / "stash-vision.service.d" / "cuda.conf"
    drop_in.parent.mkdir()
    drop_in.write_text((DEPLOY / "stash-vision-cuda.conf").read_text())
    assert verify(unit) == ""
    # The drop-in is really read: a bad line in it is reported.
    drop_in.write_text(drop_in.read_text() + "DeviceAllow=/dev/nvidia0 rwx\n")
    assert "Invalid device rights 'rwx'" in verify(unit)


def test_unit_runs_fetch_before_serve_and_is_hardened() -> None:
    lines = (DEPLOY / "stash-vision.service").read_text().splitlines()
    assert f"ExecStartPre={VENV_EXE} models fetch" in lines
    assert f"ExecStart={VENV_EXE} serve" in lines
    assert "Restart=on-failure" in lines
    assert "User=stash-vision" in lines
    assert "StateDirectory=stash-vision" in lines
    assert "After=network-online.target stash.service" in lines
    for line in HARDENING:
        assert line in lines, line
    # No key in the unit or the example: only credential files.
    assert not any(
        line.startswith(("Environment=STASH_VISION_API_KEY=", "Environment=STASH_VISION_STASH_API_KEY="))
        for line in lines
    )


def test_cuda_drop_in_lets_only_the_nvidia_nodes_through() -> None:
    lines = (DEPLOY / "stash-vision-cuda.conf").read_text().splitlines()
    assert "Environment=STASH_VISION_DEVICE=cuda" in lines
    assert "PrivateDevices=no" in lines
    assert [line for line in lines if line.startswith("DeviceAllow=")] == [
        "DeviceAllow=char-nvidia-frontend rw",
        "DeviceAllow=char-nvidia-uvm rw",
        "DeviceAllow=char-nvidia-caps rw",
    ]


def systemd_environment(text: str, tmp_path: Path) -> dict[str, str]:
    """`text` as systemd reads an EnvironmentFile= (quotes, comments, JSON values)."""
    assert ENV_GENERATOR.is_file(), f"{ENV_GENERATOR} is missing: scripts/test installs Debian's systemd"
    folder = tmp_path / "config" / "environment.d"
    folder.mkdir(parents=True)
    (folder / "50-stash-vision.conf").write_text(text)
    result = subprocess.run(
        [str(ENV_GENERATOR)],
        env={"XDG_CONFIG_HOME": str(tmp_path / "config"), "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    # The generator prints each variable as NAME="VALUE", shell-quoted.
    words = (shlex.split(line)[0] for line in result.stdout.splitlines() if line.strip())
    pairs = (word.split("=", 1) for word in words if word.startswith("STASH_VISION_"))
    return {name: value for name, value in pairs}


@pytest.mark.parametrize("uncommented", [False, True], ids=["as-shipped", "every-example-uncommented"])
def test_environment_example_is_valid_settings(
    uncommented: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = (DEPLOY / "stash-vision.env").read_text()
    if uncommented:
        text = "\n".join(
            line.removeprefix("#") if line.startswith("#STASH_VISION_") else line
            for line in text.splitlines()
        )
    environment = systemd_environment(text, tmp_path)
    assert environment["STASH_VISION_HTTP_PORT"] == "8000"
    fields = set(Settings.model_fields)
    for name in environment:
        assert name.removeprefix("STASH_VISION_").lower() in fields, f"{name} is not a setting"
    for name in list(os.environ):
        if name.startswith("STASH_VISION_"):
            monkeypatch.delenv(name)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    settings = Settings()
    assert settings.http_port == 8000
    assert settings.host == "127.0.0.1"
    if uncommented:
        assert settings.models == ["nudenet_320n", "open_nsfw"]
        assert settings.path_mappings == {"/data": "/srv/media"}
        assert settings.library_roots == [Path("/srv/media")]
        assert settings.stash_url == "http://127.0.0.1:9999"
