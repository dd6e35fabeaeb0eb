"""httpx, the HTTP client of the benchmarks that talk to the adapter: it comes with the `bench`
extra, and a user without it is told what to install."""

from __future__ import annotations

from bench.toolkit.results import INSTALL_HINT

try:
    import httpx as httpx
except ModuleNotFoundError as missing:
    raise SystemExit(f"{missing}: {INSTALL_HINT}") from None
