"""pip-audit over the installed dependencies (the venv the tests run in), against PyPI's advisory
data (`--vulnerability-service pypi`; the OSV service is not reachable from every CI machine).

A finding fails the run unless its id is in IGNORED below, each with why it does not apply.
A package PyPI does not know at the installed version (a local wheel, or a PyPI mirror that does
not serve per-version data) cannot be audited: the test names them in a warning. An advisory
service that cannot be reached at all fails the test (pip-audit then writes no report).
docs/security.md records what the last run found."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

# Vulnerability ids (PYSEC-…, GHSA-…, CVE-…) judged not to apply, each with the reason.
IGNORED: dict[str, str] = {}
AUDIT_TIMEOUT_S = 600
PIP_AUDIT = Path(sys.executable).with_name("pip-audit")


def run_audit() -> dict[str, object]:
    if not PIP_AUDIT.exists():
        pytest.fail(f"{PIP_AUDIT} is missing: install the test extra (pip install -e '.[test]')")
    done = subprocess.run(
        [str(PIP_AUDIT), "--vulnerability-service", "pypi", "--format", "json", "--progress-spinner", "off"]
        + [arg for vuln in IGNORED for arg in ("--ignore-vuln", vuln)],
        capture_output=True,
        text=True,
        timeout=AUDIT_TIMEOUT_S,
    )
    try:
        report: dict[str, object] = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"pip-audit did not run (exit {done.returncode}): {done.stderr.strip()[-2000:]}")
    return report


@pytest.mark.timeout(AUDIT_TIMEOUT_S + 60)
def test_no_installed_dependency_has_a_known_vulnerability() -> None:
    report = run_audit()
    dependencies = report["dependencies"]
    assert isinstance(dependencies, list) and dependencies, "pip-audit listed no installed dependency"
    findings = [
        f"{dep['name']} {dep['version']}: {vuln['id']} (fixed in {', '.join(vuln['fix_versions']) or 'nothing yet'})"
        for dep in dependencies
        for vuln in dep.get("vulns", [])
        if vuln["id"] not in IGNORED and not set(vuln.get("aliases", [])) & set(IGNORED)
    ]
    assert findings == [], (
        "known vulnerabilities (upgrade, or add to IGNORED with the reason):\n" + "\n".join(findings)
    )
    skipped = [f"{dep['name']}: {dep['skip_reason']}" for dep in dependencies if "skip_reason" in dep]
    if skipped:
        warnings.warn(
            f"pip-audit could not audit {len(skipped)} of {len(dependencies)} dependencies "
            f"(PyPI knows no advisory data for the installed version):\n" + "\n".join(skipped),
            stacklevel=1,
        )
