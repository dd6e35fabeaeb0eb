# syntax=docker/dockerfile:1
#
# One image for every stash-vision process of compose.yaml: the gRPC `server`, the HTTP `adapter` and the
# `models` init job. It holds the Python package only; the neural networks run in the official Triton
# image, so neither the `embedded` extra (PyTriton's tritonserver, ONNX Runtime) nor CUDA is installed.
#
#   docker build -t stash-vision:local .
#   docker run --rm stash-vision:local --help

ARG PYTHON_IMAGE=python:3.11-slim

# --- build: turn the source tree into a wheel (stubs are committed, so no protoc step) -------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Exactly the inputs of pyproject.toml's [tool.setuptools] packages / package-dir / readme.
COPY pyproject.toml README.md ./
COPY stash_vision ./stash_vision
COPY server ./server
COPY adapter ./adapter
COPY model_repository ./model_repository
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- runtime -------------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE}

ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="stash-vision" \
      org.opencontainers.image.description="AI inference server for Stash: gRPC server, AITagger HTTP adapter and model fetcher (models run on NVIDIA Triton)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="AGPL-3.0-or-later" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11-slim"

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    STASH_VISION_DATA_DIR=/data \
    STASH_VISION_HOST=0.0.0.0

# A fixed, unprivileged uid/gid. /data is created here and owned by that user so that a named volume
# mounted on it for the first time inherits the ownership and stays writable by the container.
RUN groupadd --system --gid 10001 stash-vision \
 && useradd --system --uid 10001 --gid 10001 --home-dir /home/stash-vision --create-home \
        --shell /usr/sbin/nologin stash-vision \
 && mkdir -p /data \
 && chown stash-vision:stash-vision /data

COPY --from=build /wheels /tmp/wheels
RUN pip install /tmp/wheels/*.whl \
 && rm -rf /tmp/wheels

USER 10001:10001
WORKDIR /home/stash-vision

# 8000: HTTP adapter (AITagger plugin), 50051: gRPC API, 8003: server's Prometheus metrics.
EXPOSE 8000 50051 8003

ENTRYPOINT ["stash-vision"]
CMD ["--help"]
