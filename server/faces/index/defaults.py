"""Voyager parameters stash-vision uses unless told otherwise.

Measured in docs/benchmarks-voyager.md (synthetic face-like vectors, 512-d, 100k rows, 2 cores): the
cheapest setting with recall@10 >= 0.95 and p99 < 5 ms for one query is M=24, ef_construction=200,
query_ef=100 (recall 0.958, p50 1.2 ms, p99 1.6 ms). At 300k rows recall@10 falls to 0.91 at
query_ef=100; query_ef=200 brings it back to 0.97 (p99 4.9 ms). query_ef is a query-time setting.
"""

from __future__ import annotations

DEFAULT_M = 24
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_QUERY_EF = 100
