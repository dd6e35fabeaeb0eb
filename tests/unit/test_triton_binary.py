"""Unit tests for stash_vision.embedded.triton_binary.prepare (platform checks with actionable
messages, the backend folder and environment it lays out) and supervisor.check_ports_free."""

from __future__ import annotations

import importlib.util
import platform
import socket
import sys
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import pytest

from stash_vision.embedded.supervisor import StartupError, check_ports_free
from stash_vision.embedded.triton_binary import TritonUnavailable, prepare

# ------------------------------------------------------------------------------------------- refusals


def test_old_glibc_is_refused_with_versions_and_alternative(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("glibc", "2.31"))
    with pytest.raises(TritonUnavailable) as raised:
        prepare(tmp_path)
    message = str(raised.value)
    assert "glibc >= 2.35" in message
    assert "2.31" in message
    assert "compose.yaml" in message
    assert not (tmp_path / "triton").exists()


def test_glibc_minor_versions_compare_numerically(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # 2.4 < 2.35 although "2.4" > "2.35" as text.
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("glibc", "2.4"))
    with pytest.raises(TritonUnavailable, match=r"has 2\.4;"):
        prepare(tmp_path)


def test_musl_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(platform, "libc_ver", lambda *a, **k: ("", ""))
    with pytest.raises(TritonUnavailable, match="glibc"):
        prepare(tmp_path)


def test_non_linux_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(sys, "platform", "darwin")
    with pytest.raises(TritonUnavailable) as raised:
        prepare(tmp_path)
    assert "Linux only" in str(raised.value)
    assert "darwin" in str(raised.value)
    assert "compose.yaml" in str(raised.value)


def test_missing_pytriton_is_refused_with_install_hint(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, package: str | None = None) -> object:
        return None if name == "pytriton" else real_find_spec(name, package)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(TritonUnavailable) as raised:
        prepare(tmp_path)
    message = str(raised.value)
    assert "nvidia-pytriton" in message
    assert "stash-vision[embedded]" in message
    assert "STASH_VISION_TRITON_URL" in message


# ------------------------------------------------------------------------------------ on this machine


def test_prepare_succeeds_here_and_puts_this_libpython_first(tmp_path: Path) -> None:
    install = prepare(tmp_path)
    assert install.binary.is_file()
    assert install.binary.name == "tritonserver"
    python_backend = tmp_path / "triton" / "backends" / "python"
    assert install.backend_dir == tmp_path / "triton" / "backends"
    for name in ("libtriton_python.so", "triton_python_backend_utils.py", "triton_python_backend_stub"):
        assert (python_backend / name).exists(), name
    libdir = sysconfig.get_config_var("LIBDIR")
    library_path = install.env["LD_LIBRARY_PATH"].split(":")
    assert library_path[0] == libdir
    assert install.env["PATH"].split(":")[0] == str(Path(sys.executable).parent)


def test_prepare_twice_is_idempotent(tmp_path: Path) -> None:
    first = prepare(tmp_path)
    stub = tmp_path / "triton" / "backends" / "python" / "triton_python_backend_stub"
    mtime = stub.stat().st_mtime_ns
    second = prepare(tmp_path)
    assert second.binary == first.binary
    assert stub.stat().st_mtime_ns == mtime


# ------------------------------------------------------------------------------------------------ ports


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_port_in_use_raises_startup_error_naming_setting(held_port: int) -> None:
    ports = {"STASH_VISION_HTTP_PORT": free_port(), "STASH_VISION_GRPC_PORT": held_port}
    with pytest.raises(StartupError) as raised:
        check_ports_free("127.0.0.1", ports)
    message = str(raised.value)
    assert "STASH_VISION_GRPC_PORT" in message
    assert str(held_port) in message
    assert "already in use" in message
    assert "STASH_VISION_HTTP_PORT" not in message


def test_free_ports_pass() -> None:
    check_ports_free(
        "127.0.0.1", {"STASH_VISION_HTTP_PORT": free_port(), "STASH_VISION_GRPC_PORT": free_port()}
    )


def test_unbindable_address_raises_startup_error_naming_setting() -> None:
    # 192.0.2.1 (TEST-NET-1) is not an address of this machine.
    with pytest.raises(StartupError, match="STASH_VISION_HTTP_PORT"):
        check_ports_free("192.0.2.1", {"STASH_VISION_HTTP_PORT": free_port()})
