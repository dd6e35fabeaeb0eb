"""The job system: long-running work (tagging a library) that survives restarts and can be watched."""
