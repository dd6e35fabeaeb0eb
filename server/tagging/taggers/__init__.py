"""Taggers: one model turned into per-tag probabilities for its categories. One module per kind,
registered by TaggerKind in registry.py."""
