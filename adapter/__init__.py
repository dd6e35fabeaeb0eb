"""FastAPI shim: the AITagger plugin's HTTP dialect, translated to gRPC (source folder adapter/)."""
