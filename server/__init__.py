"""gRPC service: decoding, preprocessing, Triton calls, post-processing (source folder server/)."""
