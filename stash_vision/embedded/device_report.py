"""What each embedded runner really runs on, from the runner to the server.

The runner (ort_runner.py, inside Triton's Python backend) writes a small JSON file once its ONNX
Runtime session exists: the providers the session really uses (`session.get_providers()`), the
device they amount to, and why it is not the one asked for when it fell back. The file's path is
a parameter of the model's derived config (`device_report`), so the server finds it through
Triton's own model config, with nothing else to configure; it lies in the runtime repository,
which every start derives afresh, so no report outlives the run that wrote it.

A model without the parameter (the native repository of compose.yaml, the onnxruntime backend)
runs where Triton's instance group puts it, which Triton itself enforces: that is reported then.
A ready model whose report cannot be read is reported as unknown (""), never guessed."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

REPORT_PARAMETER = "device_report"
REPORT_FILE = "device.json"

# ListModels and /health speak of "cpu" and "gpu" (models.proto).
_SERVED = {"cuda": "gpu", "cpu": "cpu"}


@dataclass(frozen=True)
class DeviceReport:
    device: str  # "cuda" or "cpu"
    providers: list[str]  # session.get_providers(), in priority order
    requested: str  # what the derived config asked for
    reason: str = ""  # why `device` differs from `requested`


def write_report(path: Path, report: DeviceReport) -> None:
    """Atomically, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(handle, "w") as out:
        json.dump(asdict(report), out)
    Path(temporary).replace(path)


def read_report(path: Path) -> DeviceReport | None:
    try:
        data = json.loads(path.read_text())
        return DeviceReport(
            device=str(data["device"]),
            providers=[str(p) for p in data["providers"]],
            requested=str(data["requested"]),
            reason=str(data.get("reason", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def report_path(config: Mapping[str, Any]) -> Path | None:
    """The report's path in a model config as Triton returns it as JSON (get_model_config)."""
    parameter = config.get("parameters", {}).get(REPORT_PARAMETER, {})
    value = parameter.get("string_value") if isinstance(parameter, Mapping) else None
    return Path(value) if value else None


def served_device(config: Mapping[str, Any]) -> str:
    """ "gpu", "cpu" or "" (unknown) for a ready model, from its Triton config (JSON)."""
    path = report_path(config)
    if path is not None:
        report = read_report(path)
        return _SERVED.get(report.device, "") if report else ""
    groups = config.get("instance_group", [])
    return "gpu" if any(g.get("kind") == "KIND_GPU" for g in groups) else "cpu"
