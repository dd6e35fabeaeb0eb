"""What every benchmark script shares, one job a module:

- `procs`: the stack's process tree from /proc, roles, CPU seconds, memory readings, CPU windows
  (our cores, the stack's, everything else's);
- `memory`: peak RSS / RssAnon / RssShmem / Pss of a process tree, sampled in a thread;
- `metrics`: Prometheus scrapes, Triton's batch statistics, and what a phase did from their deltas;
- `quiet`: waiting for a quiet machine (no other benchmark, little outside load);
- `stack`: the stack serving one model, with the what-if launcher (`launcher`) when asked;
- `machine`: what the figures were measured on;
- `results`: the result file, the shared-data folder and the report's number formatting."""
