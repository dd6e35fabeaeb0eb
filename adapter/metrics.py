"""HTTP metrics of the adapter, served at GET /metrics next to the routes."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter("http_requests_total", "HTTP requests handled.", ["route", "method", "status"])
LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP request duration.",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600),
)
IN_FLIGHT = Gauge("http_requests_in_flight", "HTTP requests being handled.")
