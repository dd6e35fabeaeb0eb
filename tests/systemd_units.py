"""Checking systemd units the way systemd reads them, for the NixOS module's unit and
deploy/systemd/: `systemd-analyze verify` parses every key and value, but exits 0 on unknown keys
and bad values and only prints them, so a unit is accepted only when it prints nothing.

It needs no privileges: it loads the unit file alone (no running systemd), as root or not."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

# What scripts/test installs; a missing tool fails the test (CI never skips).
SYSTEMD_ANALYZE_MISSING = "systemd-analyze is not installed: scripts/test installs Debian's systemd"


def systemd_analyze() -> str:
    path = shutil.which("systemd-analyze")
    assert path, SYSTEMD_ANALYZE_MISSING
    return path


def verify(unit: Path) -> str:
    """systemd-analyze's complaints about `unit` (empty when systemd accepts every line). Its
    executables must exist: verify reports a missing ExecStart binary."""
    result = subprocess.run(
        [systemd_analyze(), "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return (result.stdout + result.stderr).strip()


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _lines(key: str, value: Any) -> list[str]:
    # As nixos/lib/systemd-lib.nix writes a section: a list becomes one line per element.
    values = value if isinstance(value, list) else [value]
    return [f"{key}={_value(item)}" for item in values]


def render_nixos_service(service: dict[str, Any]) -> str:
    """The unit file NixOS writes for an evaluated `systemd.services.<name>` (the fields the module
    sets): [Unit] from description/after/wants/requires, [Service] from environment (one quoted
    Environment= line each, as NixOS quotes them) and serviceConfig, [Install] from wantedBy."""
    unit = [f"Description={service['description']}"]
    for key, field in (("After", "after"), ("Wants", "wants"), ("Requires", "requires")):
        if service.get(field):
            unit.append(f"{key}={' '.join(service[field])}")
    body: list[str] = []
    for name, value in sorted(service.get("environment", {}).items()):
        if value is not None:
            body.append(f"Environment={json.dumps(f'{name}={value}')}")
    for key, value in sorted(service.get("serviceConfig", {}).items()):
        body.extend(_lines(key, value))
    install = [f"WantedBy={' '.join(service['wantedBy'])}"] if service.get("wantedBy") else []
    sections = [("Unit", unit), ("Service", body), ("Install", install)]
    return "\n".join(f"[{title}]\n" + "\n".join(lines) + "\n" for title, lines in sections if lines)
