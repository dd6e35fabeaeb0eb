"""The Overview's throughput from the service's own counters: parsing the server's and Triton's
Prometheus text, the rates over the kept samples, a restart's reset counters, and the first sample
of a server started within the hour."""

from __future__ import annotations

import pytest

from stash_vision.adapter.ui.service_metrics import (
    Sample,
    ServiceMetrics,
    executed_batch,
    metrics_urls,
    server_counts,
    triton_counts,
)
from stash_vision.settings import Settings

SERVER_TEXT = """\
# HELP stash_vision_images_decoded_total Images decoded.
# TYPE stash_vision_images_decoded_total counter
stash_vision_images_decoded_total 40.0
# HELP stash_vision_stage_seconds Time spent per processing stage.
# TYPE stash_vision_stage_seconds histogram
stash_vision_stage_seconds_count{stage="preprocess"} 340.0
stash_vision_stage_seconds_sum{stage="preprocess"} 1.5
stash_vision_stage_seconds_count{stage="decode"} 340.0
# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.
# TYPE process_start_time_seconds gauge
process_start_time_seconds 1000.0
"""

TRITON_TEXT = """\
# HELP nv_inference_count Number of inferences performed
# TYPE nv_inference_count counter
nv_inference_count{model="open_nsfw",version="1"} 300
nv_inference_count{model="yunet",version="1"} 10
# HELP nv_inference_exec_count Number of model executions performed
# TYPE nv_inference_exec_count counter
nv_inference_exec_count{model="open_nsfw",version="1"} 50
nv_inference_exec_count{model="yunet",version="1"} 10
"""


def test_counts_from_the_services_metrics() -> None:
    assert server_counts(SERVER_TEXT) == (40.0, 300.0, 1000.0)
    inferences, executions = triton_counts(TRITON_TEXT)
    assert inferences == {"open_nsfw": 300.0, "yunet": 10.0}
    assert executions == {"open_nsfw": 50.0, "yunet": 10.0}
    sample = Sample(at=2000.0, inferences=inferences, executions=executions)
    assert executed_batch(sample, "open_nsfw") == 6.0
    assert executed_batch(sample, "missing") is None


def test_metrics_urls_follow_the_hosts_the_adapter_calls() -> None:
    settings = Settings(server_url="server:50051", triton_url="triton:8001", server_metrics_port=8003)
    assert metrics_urls(settings) == ("http://server:8003/metrics", "http://triton:8002/metrics")


def test_rates_over_the_kept_samples_and_a_restart() -> None:
    metrics = ServiceMetrics(Settings())
    metrics._keep(Sample(at=1000.0, images=10, frames=100, inferences={"m": 50}))
    metrics._keep(Sample(at=1100.0, images=60, frames=300, inferences={"m": 250}))
    rates = metrics.rates()
    assert rates is not None and rates.since == 1000.0
    assert (rates.images_per_s, rates.frames_per_s, rates.inferences_per_s) == (0.5, 2.0, {"m": 2.0})
    metrics._keep(Sample(at=1200.0, images=5, frames=0, inferences={"m": 0}, server_started=1150.0))
    rates = metrics.rates()  # counters went down: only the new process's sample, from its start
    assert rates is not None and rates.since == 1150.0 and rates.images_per_s == pytest.approx(0.1)


def test_samples_older_than_an_hour_are_dropped_and_failed_scrapes_ignored() -> None:
    metrics = ServiceMetrics(Settings())
    metrics._keep(Sample(at=0.0, images=0))
    metrics._keep(Sample(at=1800.0, images=10, problems=("down",)))
    metrics._keep(Sample(at=3700.0, images=37, server_started=-5000.0))
    assert [s.at for s in metrics.samples] == [3700.0]
    assert metrics.rates() is None  # one sample of a server up for more than the hour: unknown
