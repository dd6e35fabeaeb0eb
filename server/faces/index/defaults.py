"""Voyager parameters stash-vision uses unless told otherwise (measured: docs/benchmarks-voyager.md)."""

from __future__ import annotations

DEFAULT_M = 12
DEFAULT_EF_CONSTRUCTION = 200
DEFAULT_QUERY_EF = 50
