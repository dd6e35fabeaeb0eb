"""Generated gRPC stubs of the stash_vision.v1 API (scripts/gen-proto; do not edit)."""
