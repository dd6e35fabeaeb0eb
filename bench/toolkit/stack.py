"""The stack under test: `stash-vision serve` serving one model on free loopback ports (the way
tests/stack.py starts it), through the what-if launcher (bench/toolkit/launcher.py) when knobs
without a setting are overridden; and the environment it inherits."""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from bench.toolkit.launcher import OVERRIDES_ENV
from bench.toolkit.machine import REPO
from tests.stack import STACK_START_TIMEOUT_S, Stack, cli, free_ports, stack_env, wait_ready

_PR_SET_PDEATHSIG = 1


def keep_knobs(
    knobs: Iterable[str], values: Mapping[str, object | None], extra_env: Mapping[str, str]
) -> dict[str, str]:
    """The stack's environment comes from ours: drops every inherited STASH_VISION_* variable
    that would point it elsewhere (an external Triton, another server, auth) except the shared
    folder and the tuning `knobs` under test; sets the knobs given in `values` (None: unset) and
    `extra_env` (set in this process's environment after start-up, so it does not change this
    process's own allocator). Returns the knobs and extra variables in effect."""
    knobs = tuple(knobs)
    for key in [k for k in os.environ if k.startswith("STASH_VISION_") and k not in knobs]:
        if key != "STASH_VISION_SHARED_DIR":
            del os.environ[key]
    for key, value in values.items():
        if value is not None:
            os.environ[key] = str(value)
    os.environ.update(extra_env)
    return {k: os.environ[k] for k in knobs if k in os.environ} | dict(extra_env)


def _die_with_parent() -> None:
    # If the benchmark is killed outright, the supervisor gets SIGTERM and takes its children down.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def start_stack(
    work_dir: Path,
    mirror: Path,
    model: str | Sequence[str],
    overrides: Mapping[str, Any] | None = None,
    timeout_s: float = STACK_START_TIMEOUT_S,
    reuse_results: bool = True,
) -> Stack:
    """Fetches `model` (one, or several that work together, e.g. a face detector and embedder)
    from `mirror` with the CLI a user runs (`stash-vision models fetch <model>
    --mirror <mirror> --mirror-only`) into <work_dir>/data, starts `stash-vision serve` serving
    only it (others would load, warm up and poll on the same cores) and waits until /ready
    answers 200. With `overrides`, the supervisor is the what-if launcher instead.
    `reuse_results=False` turns the result store off: a benchmark that sends the same files again
    (levels, repeats) must measure the work, not answers reused for unchanged files."""
    data_dir = work_dir / "data"
    ports = free_ports(5)
    models = [model] if isinstance(model, str) else list(model)
    env = stack_env(data_dir, mirror, ports, models)
    if not reuse_results:
        env["STASH_VISION_RESULT_STORE_MAX_BYTES"] = "0"
    command = [sys.executable, "-m", "stash_vision.cli", "serve"]
    if overrides:
        env[OVERRIDES_ENV] = json.dumps(dict(overrides))
        command = [sys.executable, "-m", "bench.toolkit.launcher"]
    fetched = cli(env, "models", "fetch", *models, "--mirror", str(mirror), "--mirror-only")
    if fetched.returncode != 0:
        raise RuntimeError(
            f"fetching {', '.join(models)} from {mirror} failed:\n{fetched.stdout}{fetched.stderr}"
        )
    log_path = work_dir / "serve.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            cwd=REPO,  # `bench` (the launcher) is importable from the repository root only
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
    http, grpc_port, server_metrics, triton_grpc, triton_metrics = ports
    stack = Stack(
        process,
        env,
        data_dir,
        log_path,
        http,
        grpc_port,
        server_metrics,
        triton_grpc,
        triton_metrics,
        models,
    )
    wait_ready(stack, timeout_s)
    return stack


def stop_stack(stack: Stack | None) -> None:
    """Stops the stack with SIGINT, as a user would; warns when it did not exit cleanly."""
    if stack is None:
        return
    code = stack.stop()
    if code not in (0, None):
        print(f"warning: stash-vision serve exited with {code}:\n{stack.log()[-4000:]}", file=sys.stderr)


# -- options every stack benchmark takes ----------------------------------------------------------
KNOBS = {
    "ort_threads": "STASH_VISION_ORT_THREADS",
    "decode_threads": "STASH_VISION_DECODE_THREADS",
    "video_decoders": "STASH_VISION_VIDEO_DECODERS",
}


def add_stack_options(parser: argparse.ArgumentParser, knobs: Iterable[str], stack_env: bool = True) -> None:
    """--ort-threads / --decode-threads / --video-decoders (those named in `knobs`), --stack-env
    and --keep."""
    for dest in knobs:
        parser.add_argument(
            f"--{dest.replace('_', '-')}", type=int, default=None, help=f"{KNOBS[dest]} for the stack"
        )
    if stack_env:
        parser.add_argument(
            "--stack-env",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="what-if: extra environment for every process of the stack (e.g. MALLOC_ARENA_MAX=2)",
        )
    parser.add_argument("--keep", action="store_true", help="keep the temporary data directory and logs")


def apply_stack_options(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, str]:
    """keep_knobs with the options of add_stack_options; returns the knobs in effect."""
    extra = getattr(args, "stack_env", [])
    if any("=" not in item for item in extra):
        parser.error("--stack-env takes KEY=VALUE")
    args.extra_env = dict(item.split("=", 1) for item in extra)
    values = {variable: getattr(args, dest, None) for dest, variable in KNOBS.items()}
    return keep_knobs([v for d, v in KNOBS.items() if hasattr(args, d)], values, args.extra_env)


# The launcher's knobs (bench/toolkit/launcher.py): option help, and the values an option takes.
WHAT_IF: dict[str, tuple[str, tuple[int, ...] | None]] = {
    "max_batch": ("the model's max_batch_size in Triton (16)", None),
    "max_queue_delay_us": ("dynamic batcher max_queue_delay_microseconds", None),
    "instances": ("Triton model instances (ORT stub processes)", None),
    "ort_spinning": ("session.intra_op.allow_spinning in the ORT runner (1 is ORT's own default)", (0, 1)),
    "ort_arena": ("enable_cpu_mem_arena in the ORT runner (1 is ORT's own default)", (0, 1)),
    "per_request_in_flight": ("images of one request in flight in the server (ImageTagging default 8)", None),
    "global_in_flight": (
        "images in flight in the server over all requests (default: STASH_VISION_IMAGES_IN_FLIGHT)",
        None,
    ),
}


def add_what_if_options(parser: argparse.ArgumentParser, names: Iterable[str]) -> None:
    """--max-batch, --instances, ... (those named): knobs without a setting, through the launcher."""
    for dest in names:
        text, choices = WHAT_IF[dest]
        parser.add_argument(
            f"--{dest.replace('_', '-')}", type=int, choices=choices, default=None, help=f"what-if: {text}"
        )


def what_if(args: argparse.Namespace) -> dict[str, int]:
    """The launcher's overrides the options of add_what_if_options asked for."""
    return {k: getattr(args, k) for k in WHAT_IF if getattr(args, k, None) is not None}


@contextlib.contextmanager
def work_dir(prefix: str, keep: bool) -> Iterator[Path]:
    """A temporary folder for the stack's data and logs, removed afterwards unless `keep`."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        if keep:
            print(f"kept {path}")
        else:
            shutil.rmtree(path, ignore_errors=True)


def failed(error: BaseException, stack: Stack | None) -> int:
    """Says what went wrong, with the end of the stack's log when it ran; the exit status."""
    print(f"error: {error}", file=sys.stderr)
    if stack is not None:
        print(stack.log()[-4000:], file=sys.stderr)
    return 1
