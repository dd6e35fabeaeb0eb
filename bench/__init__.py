"""Benchmarks of the stash-vision stack (run as `python -m bench.<name>`)."""
