"""Finds the `tritonserver` binary shipped in the nvidia-pytriton wheel and prepares what it needs
to run here: a backend folder with the Python backend and the stub built for this interpreter, and
an environment whose libpython is this interpreter's own (the known trap: a stub that loads the
system libpython while running another Python's standard library crashes in odd ways)."""

from __future__ import annotations

import os
import platform
import shutil
import sys
import sysconfig
from dataclasses import dataclass
from importlib import util
from pathlib import Path

MIN_GLIBC = (2, 35)


class TritonUnavailable(RuntimeError):
    """The embedded Triton cannot run on this machine; the message says why and what to do."""


@dataclass(frozen=True)
class TritonInstall:
    binary: Path
    backend_dir: Path
    cache_dir: Path
    env: dict[str, str]


def _pytriton_root() -> Path:
    spec = util.find_spec("pytriton")
    if spec is None or not spec.submodule_search_locations:
        raise TritonUnavailable(
            "the embedded Triton needs the nvidia-pytriton wheel: install with "
            "`pip install 'stash-vision[embedded]'` (scripts/serve does this), or point "
            "STASH_VISION_TRITON_URL at a running Triton"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _check_platform() -> None:
    if sys.platform != "linux":
        raise TritonUnavailable(
            f"the embedded Triton runs on Linux only (this is {sys.platform}); use compose.yaml"
        )
    libc, version = platform.libc_ver()
    if libc != "glibc":
        raise TritonUnavailable(
            "the embedded Triton needs glibc (musl/Alpine is not supported); use compose.yaml"
        )
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts < MIN_GLIBC:
        raise TritonUnavailable(
            f"the embedded Triton needs glibc >= {MIN_GLIBC[0]}.{MIN_GLIBC[1]}, this machine has {version}; "
            "upgrade the OS (e.g. Debian 12, Ubuntu 22.04) or use compose.yaml"
        )


def _libpython_dir() -> Path:
    libdir = Path(sysconfig.get_config_var("LIBDIR") or "")
    ldlibrary = sysconfig.get_config_var("LDLIBRARY") or ""
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    candidates = [
        libdir / ldlibrary,
        libdir / f"libpython{version}.so.1.0",
        libdir / f"libpython{version}.so",
    ]
    if any(c.is_file() and c.suffix != ".a" for c in candidates):
        return libdir
    raise TritonUnavailable(
        f"the embedded Triton's Python backend needs a shared libpython{version} for {sys.executable}, "
        f"and none was found in {libdir}; use a Python built with --enable-shared (Debian/Ubuntu python3, "
        "pyenv with PYTHON_CONFIGURE_OPTS=--enable-shared, uv's managed Pythons)"
    )


def prepare(runtime_dir: Path) -> TritonInstall:
    """Checks the platform and lays out runtime_dir/triton/backends for this interpreter."""
    _check_platform()
    root = _pytriton_root() / "tritonserver"
    binary = root / "bin" / "tritonserver"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = root / "python_backend_stubs" / version / "triton_python_backend_stub"
    if not binary.is_file():
        raise TritonUnavailable(f"nvidia-pytriton is installed but {binary} is missing; reinstall it")
    if not stub.is_file():
        raise TritonUnavailable(
            f"nvidia-pytriton has no Python backend stub for Python {version}; use 3.11-3.13"
        )
    if not os.access(binary, os.X_OK):
        raise TritonUnavailable(f"{binary} is not executable (noexec mount?)")
    libpython_dir = _libpython_dir()

    # The Python backend looks for its stub beside libtriton_python.so, so the stub for this
    # interpreter's version is copied into a private backend folder.
    backend_dir = runtime_dir / "triton" / "backends"
    python_backend = backend_dir / "python"
    python_backend.mkdir(parents=True, exist_ok=True)
    for name in ("libtriton_python.so", "triton_python_backend_utils.py"):
        _link(root / "backends" / "python" / name, python_backend / name)
    stub_copy = python_backend / "triton_python_backend_stub"
    if not stub_copy.exists() or stub_copy.stat().st_size != stub.stat().st_size:
        shutil.copy2(stub, stub_copy)

    wheel_libs = root.parent.parent / "nvidia_pytriton.libs"
    env = dict(os.environ)
    # This interpreter's libpython first, so the stub never picks up another build of it.
    library_path = [str(libpython_dir), str(wheel_libs)]
    if env.get("LD_LIBRARY_PATH"):
        library_path.append(env["LD_LIBRARY_PATH"])
    env["LD_LIBRARY_PATH"] = ":".join(library_path)
    # The stub finds its site-packages (onnxruntime, numpy) through the interpreter on PATH.
    env["PATH"] = f"{Path(sys.executable).parent}:{env.get('PATH', '')}"
    return TritonInstall(binary=binary, backend_dir=backend_dir, cache_dir=root / "caches", env=env)


def _link(source: Path, target: Path) -> None:
    if target.is_symlink() and target.resolve() == source.resolve():
        return
    target.unlink(missing_ok=True)
    target.symlink_to(source)
