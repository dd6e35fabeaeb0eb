"""stash-vision: AI inference server for Stash (AITagger tagging, face identification) on Triton.

Layout of the import namespace:
- stash_vision.settings: the one settings object (env prefix STASH_VISION_).
- stash_vision.catalog: model catalog (model_repository/*/catalog.yaml) and the weight fetcher.
- stash_vision.embedded: the embedded default (tritonserver from nvidia-pytriton) and the supervisor.
- stash_vision.server: the grpc.aio service (source folder server/).
- stash_vision.adapter: the FastAPI HTTP shim (source folder adapter/).
- stash_vision.v1: generated gRPC stubs of proto/stash_vision/v1.
"""

__version__ = "0.1.0"
