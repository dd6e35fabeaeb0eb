"""Triton model repository: one folder per model with config.pbtxt (the source of truth for
batching and I/O) and catalog.yaml (upstream weights, checksum, licence, input contract).

Weights are never stored here; `stash-vision models fetch` puts them in the data directory and the
launcher assembles a runtime repository from these configs. Triton ignores this file.
"""
