"""What every benchmark script needs: Prometheus text scraped from a port, Triton's per-batch-size
statistics, and a description of the machine the figures were measured on."""

from __future__ import annotations

import contextlib
import os
import platform
import re
import urllib.request
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"

_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')

Samples = list[tuple[str, dict[str, str], float]]


def scrape(port: int) -> Samples:
    """Every sample of a /metrics page: (name, labels, value)."""
    with urllib.request.urlopen(f"http://{LOOPBACK}:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: Samples = []
    for line in text.splitlines():
        if not line.startswith("#") and (match := _SAMPLE.match(line)):
            samples.append((match[1], dict(_LABEL.findall(match[2] or "")), float(match[3])))
    return samples


def metric(samples: Samples, name: str, **labels: str) -> float:
    """Sum of the samples named `name` whose labels include `labels`."""
    return sum(v for n, lbl, v in samples if n == name and all(lbl.get(k) == w for k, w in labels.items()))


def batch_stats(port: int, model: str) -> dict[int, tuple[int, int]]:
    """Per batch size: (executions, compute_infer ns), from Triton's statistics API. Exact where
    the Prometheus counters only give means."""
    import tritonclient.grpc as triton_grpc

    client = triton_grpc.InferenceServerClient(f"{LOOPBACK}:{port}")
    try:
        stats = client.get_inference_statistics(model, as_json=True)
    finally:
        client.close()
    out: dict[int, tuple[int, int]] = {}
    for model_stats in stats.get("model_stats", []):
        for batch in model_stats.get("batch_stats", []):
            infer = batch.get("compute_infer", {})
            out[int(batch["batch_size"])] = (int(infer.get("count", 0)), int(infer.get("ns", 0)))
    return out


def machine(**versions: Any) -> dict[str, Any]:
    """CPU, memory, platform and Python, plus the library versions a script names."""
    model_name = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model_name = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpu_model": model_name,
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
    }
