"""The Grafana dashboard and its provisioning (deploy/grafana/), checked without Grafana: the compose
service mounts what the provisioning files name, every panel uses the provisioned datasource, and
every metric a query reads is one the project or Triton exports. Whether each query parses and returns
data is tested against a real Prometheus in tests/integration/test_grafana_queries.py."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import REGISTRY

import stash_vision.adapter.metrics
import stash_vision.server.metrics
from tests.unit.test_compose import _load_compose

REPO = Path(__file__).resolve().parents[2]
GRAFANA = REPO / "deploy" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "stash-vision.json"
DATASOURCES = GRAFANA / "provisioning" / "datasources" / "prometheus.yml"
PROVIDERS = GRAFANA / "provisioning" / "dashboards" / "stash-vision.yml"

# What issue 15 asks the dashboard to show, as the metric each needs.
REQUIRED_METRICS = {
    "http_requests_total",  # request rate and errors per route
    "http_request_duration_seconds_bucket",  # latency per route
    "grpc_server_handled_total",  # rate and errors per RPC
    "grpc_server_handling_seconds_bucket",  # latency per RPC
    "nv_inference_queue_duration_us",
    "nv_inference_compute_infer_duration_us",
    "nv_inference_exec_count",  # executed batch size, with nv_inference_count
    "stash_vision_images_decoded_total",
    "stash_vision_video_frames_decoded_total",
    "stash_vision_jobs",
    "process_resident_memory_bytes",
}
# Exported by Triton or by Prometheus itself, not by this project's registry.
FOREIGN = re.compile(r"^(nv_inference_\w+|up)$")
PROMQL_WORDS = {
    "sum", "by", "rate", "histogram_quantile", "le", "without", "avg", "max", "min", "count",
    "irate", "increase", "on", "ignoring", "and", "or", "unless",
}  # fmt: skip


def _sample_names(family: str, kind: str) -> set[str]:
    """The series names a metric family is scraped as, whether or not a labelled child exists yet."""
    suffixes = {
        "counter": ["_total"],
        "histogram": ["_bucket", "_sum", "_count"],
        "summary": ["_sum", "_count"],
    }
    return {family + suffix for suffix in suffixes.get(kind, [""])}


def _dashboard() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return document


def _panels() -> list[dict[str, Any]]:
    flat: list[dict[str, Any]] = []
    for panel in _dashboard()["panels"]:
        flat += [panel, *panel.get("panels", [])]
    return flat


def _metric_names(expression: str) -> set[str]:
    """Metric names in a PromQL expression: identifiers outside label matchers, {{...}}, ranges and
    strings that are neither functions, keywords nor labels of a by (...) clause."""
    stripped = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\"[^\"]*\"", " ", expression)
    stripped = re.sub(r"\b(by|without|on|ignoring)\s*\([^)]*\)", " ", stripped)
    words = set(re.findall(r"[A-Za-z_:][\w:]*", stripped))
    return {w for w in words if w not in PROMQL_WORDS and not w.startswith("__")}


@pytest.fixture(scope="module")
def grafana_service() -> dict[str, Any]:
    compose, interpolation = _load_compose()
    assert not interpolation.errors, interpolation.errors
    service: dict[str, Any] = compose["services"]["grafana"]
    return service


def _mounts(service: dict[str, Any]) -> dict[str, tuple[Path | str, str]]:
    """Container path -> (host path, or volume name; mode)."""
    found: dict[str, tuple[Path | str, str]] = {}
    for volume in service["volumes"]:
        source, target, *mode = volume.split(":")
        host: Path | str = (REPO / source).resolve() if source.startswith(".") else source
        found[target] = (host, mode[0] if mode else "rw")
    return found


def test_compose_mounts_the_provisioning_and_the_dashboards(grafana_service: dict[str, Any]) -> None:
    mounts = _mounts(grafana_service)
    assert mounts["/etc/grafana/provisioning"] == (GRAFANA / "provisioning", "ro")
    providers = yaml.safe_load(PROVIDERS.read_text(encoding="utf-8"))["providers"]
    (provider,) = providers
    assert provider["type"] == "file"
    assert mounts[provider["options"]["path"]] == (DASHBOARD.parent, "ro")
    home = grafana_service["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    assert grafana_service["image"].startswith("grafana/grafana:") and re.search(
        r":\d+\.\d+\.\d+$", grafana_service["image"]
    ), "pin the Grafana image to a release"
    assert mounts["/var/lib/grafana"][0] == "grafana-data"


def test_the_datasource_is_the_compose_prometheus(grafana_service: dict[str, Any]) -> None:
    (datasource,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    assert datasource["type"] == "prometheus" and datasource["isDefault"] is True
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in grafana_service["depends_on"]
    scrape = yaml.safe_load((REPO / "deploy/prometheus/prometheus.yml").read_text(encoding="utf-8"))
    assert datasource["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]


def test_every_panel_uses_the_provisioned_datasource() -> None:
    (datasource,) = yaml.safe_load(DATASOURCES.read_text(encoding="utf-8"))["datasources"]
    for panel in _panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == datasource["uid"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == datasource["uid"], panel["title"]


def test_panels_are_laid_out_and_identified_once() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] == "stash-vision" and not dashboard["templating"]["list"]
    panels = _panels()
    ids = [panel["id"] for panel in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
        refs = [target["refId"] for target in panel.get("targets", [])]
        assert len(refs) == len(set(refs)), panel["title"]
        if panel["type"] != "row":
            assert refs and panel.get("description"), f"{panel['title']}: no query or no description"


def test_the_dashboard_shows_what_the_issue_asks_and_only_exported_metrics() -> None:
    used: set[str] = set()
    for panel in _panels():
        for target in panel.get("targets", []):
            used |= _metric_names(target["expr"])
    missing = REQUIRED_METRICS - used
    assert not missing, f"the dashboard shows nothing of {sorted(missing)}"
    assert stash_vision.adapter.metrics.REQUESTS and stash_vision.server.metrics.HANDLED  # registered
    exported = {name for family in REGISTRY.collect() for name in _sample_names(family.name, family.type)}
    unknown = sorted(name for name in used if name not in exported and not FOREIGN.match(name))
    assert not unknown, f"the dashboard reads metrics nobody exports: {unknown}"


def test_metric_name_extraction() -> None:
    expression = (
        'histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{job="a",'
        ' status=~"4.."}[$__rate_interval]))) / sum(up)'
    )
    assert _metric_names(expression) == {"http_request_duration_seconds_bucket", "up"}
