"""The result file every benchmark writes (bench/results/<prefix><UTC timestamp>.json, ignored by
git), the fields every result carries, where the shared test data is, and the report's number
formatting."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from bench.toolkit.machine import REPO, git_commit, machine

RESULTS_DIR = REPO / "bench" / "results"
# For a user who installed the project without the benchmarks' extra.
INSTALL_HINT = "install the benchmarks' extra: .venv/bin/pip install -e '.[embedded,bench]'"


def shared_dir() -> Path:
    """The shared test data: $STASH_VISION_SHARED_DIR, else ../shared beside the checkout."""
    return Path(os.environ.get("STASH_VISION_SHARED_DIR") or REPO.parent / "shared")


def utc_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def run_fields(module: str, argv: list[str], started: float, **versions: Any) -> dict[str, Any]:
    """What every result records about its run: when, on what, with which command, how long
    (`started`: time.monotonic() at the start), at which commit."""
    return {
        "timestamp_utc": utc_now(),
        "machine": machine(**versions),
        "command": " ".join(["python", "-m", module, *argv]),
        "git_commit": git_commit(),
        "wall_s": round(time.monotonic() - started, 1),
    }


def write_result(prefix: str, result: dict[str, Any]) -> Path:
    """Writes `result` to bench/results/<prefix><UTC timestamp>.json; returns the path relative
    to the checkout."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"{prefix}{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    return out.relative_to(REPO)


# -- formatting -------------------------------------------------------------------------------------
def fmt(value: float | None, spec: str = ".1f") -> str:
    return "-" if value is None else format(value, spec)


def rounded(value: Any, digits: int = 3) -> Any:
    """Floats rounded, in nested dicts too."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: rounded(v, digits) for k, v in value.items()}
    return value


def verdict(value: bool | None) -> str:
    return "n/a" if value is None else ("met" if value else "MISSED")
