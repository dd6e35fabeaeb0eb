"""The one settings object. Every process reads it from the environment (prefix STASH_VISION_,
nested fields with `__`), so the supervisor configures its children by environment alone."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "stash-vision"


def _key_from_file(value: str | None, path: Path | None, name: str) -> str | None:
    """A secret given either directly or as a file (systemd's LoadCredential, Docker secrets), so
    it need not sit in the environment or a world-readable unit. One of the two, never both."""
    if path is None:
        return value
    if value:
        raise ValueError(f"set STASH_VISION_{name} or STASH_VISION_{name}_FILE, not both")
    try:
        key = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ValueError(f"cannot read STASH_VISION_{name}_FILE {path}: {error}") from error
    if not key:
        raise ValueError(f"STASH_VISION_{name}_FILE {path} is empty; put the key in it or unset it")
    return key


class StashBoxEndpoint(BaseModel):
    """One stash-box instance (StashDB, FansDB, …) as Stash configures it: the GraphQL URL, the
    user's API key, and the client-side request budget (stash-box servers have no limiter)."""

    name: str
    endpoint: str = Field(description="GraphQL URL, e.g. https://stashdb.org/graphql.")
    api_key: str = Field(default="", repr=False)  # repr=False: a logged model never shows a key
    max_requests_per_minute: int = Field(default=240, ge=1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STASH_VISION_", env_nested_delimiter="__", case_sensitive=False, extra="ignore"
    )

    data_dir: Path = Field(
        default_factory=_default_data_dir, description="Weights, runtime repository, indexes, jobs."
    )
    model_mirror: str | None = Field(
        default=None,
        description="Folder or file:// / http(s):// base laid out like shared/models, tried before upstream URLs.",
    )
    models: list[str] = Field(
        default_factory=list, description="Models to serve; empty serves every catalogued model."
    )

    host: str = Field(default="127.0.0.1", description="Address every process binds to.")
    http_port: int = Field(default=8000, description="HTTP adapter (the AITagger plugin's URL).")
    grpc_port: int = Field(default=50051, description="gRPC API of the server.")
    server_metrics_port: int = Field(default=8003, description="Prometheus metrics of the gRPC server.")

    server_url: str | None = Field(
        default=None, description="host:port the adapter calls; unset means this machine's grpc_port."
    )
    triton_url: str | None = Field(
        default=None,
        description="host:port of an external Triton gRPC endpoint; unset runs the embedded one.",
    )
    triton_grpc_port: int = Field(default=8001, description="Embedded Triton's gRPC port.")
    triton_metrics_port: int = Field(default=8002, description="Embedded Triton's metrics port.")
    triton_startup_timeout_s: float = Field(default=300.0, description="How long to wait for every model.")
    triton_client_timeout_s: float = Field(default=60.0, description="Deadline of one Triton call.")
    ort_threads: int = Field(
        default=0,
        description="ONNX Runtime intra-op threads per model instance (embedded); 0 = all cores.",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        default="auto",
        description="Embedded: where ONNX Runtime runs the models; auto uses an NVIDIA GPU when one works, else the CPU (docs/gpu.md).",
    )
    tensorrt: bool = Field(
        default=False,
        description="Embedded, on the GPU: ONNX Runtime's TensorRT provider, engines cached in $DATA/tensorrt.",
    )
    precision: Literal["auto", "fp32", "reduced"] = Field(
        default="auto",
        description="auto: the fastest reduced-precision variant that passed the accuracy guard and runs fast here, else fp32; fp32: as derived; reduced: any variant that passed (docs/precision.md).",
    )
    precision_calibration_dir: Path | None = Field(
        default=None,
        description="Real images like those you tag, on which the accuracy guard judges reduced-precision variants (fetch and import derive them when set).",
    )

    max_message_bytes: int = Field(default=64 * 1024 * 1024, description="gRPC message limit, both ways.")
    max_image_pixels: int = Field(
        default=100_000_000, description="Images above this many pixels are refused."
    )
    max_image_file_bytes: int = Field(
        default=256 * 1024 * 1024, description="Image files above this are refused."
    )
    decode_threads: int = Field(
        default=0, description="Threads for decoding and preprocessing; 0 = cores + 2."
    )
    max_concurrent_rpcs: int = Field(default=256, description="Beyond this, gRPC answers RESOURCE_EXHAUSTED.")

    max_images_per_request: int = Field(
        default=1000, description="Images in one tagging request (the plugin sends 320)."
    )
    images_in_flight: int = Field(
        default=8,
        description="Images decoded and in Triton at once across all requests; bounds memory (each is a full tensor).",
    )
    use_category_image_thresholds: bool = Field(
        default=True, description="With return_confidence, also drop image tags below their CSV TagThreshold."
    )

    video_decoders: int = Field(
        default=0, description="Videos decoded at once; 0 = one per core. Others wait their turn."
    )
    video_frames_in_flight: int = Field(
        default=8,
        description="Sampled video frames decoded and in Triton at once across all videos; bounds memory.",
    )
    warmup_batch: int = Field(
        default=0,
        description="Embedded: batch size each model warms up with, sizing ONNX Runtime's memory once; 0 = the larger in-flight cap (8).",
    )
    reprocess_with_more_accurate_same_model: bool = Field(
        default=False,
        description="Re-run a category when a more accurate variant of the stored model version is active.",
    )

    face_profile: str = Field(
        default="default",
        description="Face profile (detector, embedders, thresholds): 'default', 'stash-sense' or one in $DATA/face_profiles.",
    )
    face_index_m: int = Field(default=24, description="Voyager M (graph degree) of new face indexes.")
    face_index_ef_construction: int = Field(
        default=200, description="Voyager ef_construction of new face indexes."
    )
    face_index_keep_versions: int = Field(
        default=5,
        description="Face index versions kept per profile (newest first; the active and previous ones are never deleted); 0 keeps all.",
    )
    face_query_ef: int = Field(
        default=100,
        description="Voyager query_ef: candidates examined per look-up; 100 gives recall@10 0.96 at p99 1.6 ms on 100k 512-d faces (docs/benchmarks-voyager.md).",
    )
    face_query_k: int = Field(
        default=100, description="Index rows fetched per face and embedder before fusion."
    )

    jobs_auto_resume: bool = Field(
        default=True,
        description="Resume jobs that were running when the server stopped; off leaves them interrupted until resumed.",
    )
    jobs_running: int = Field(default=1, ge=1, description="Jobs run at once; more wait queued.")
    job_items_in_flight: int = Field(
        default=4, ge=1, description="Items of one job worked on at once (they share Triton batches)."
    )
    result_store_max_bytes: int = Field(
        default=1024**3,
        ge=0,
        description="Size of the result store in jobs.db (answers reused for unchanged files); 0 turns it off.",
    )

    library_roots: list[Path] = Field(
        default_factory=list,
        description="Server-side paths must lie under one of these; empty allows any absolute path.",
    )
    path_mappings: dict[str, str] = Field(
        default_factory=dict,
        description="Prefix rewrites applied to incoming paths, e.g. {'/data': '/mnt/media'}.",
    )

    stash_url: str | None = Field(
        default=None, description="Base URL of the user's Stash, e.g. http://localhost:9999; unset: no Stash."
    )
    stash_api_key: str | None = Field(
        default=None, repr=False, description="Stash's API key (sent as the ApiKey header)."
    )
    stash_api_key_file: Path | None = Field(
        default=None,
        description="File holding Stash's API key instead of stash_api_key (e.g. a systemd credential, %d/stash-api-key).",
    )
    stash_gallery_max_images: int = Field(
        default=500,
        ge=1,
        description="Images of one Stash gallery identified per request, chosen evenly across it (Stash Sense's plugin waits 300 s).",
    )
    stashbox_endpoints: list[StashBoxEndpoint] = Field(
        default_factory=list,
        description='stash-box instances, JSON [{"name", "endpoint", "api_key", "max_requests_per_minute"}].',
    )

    api_key: str | None = Field(
        default=None, repr=False, description="When set, HTTP and gRPC callers must present it."
    )
    api_key_file: Path | None = Field(
        default=None,
        description="File holding api_key instead of the variable (e.g. a systemd credential, %d/api-key).",
    )
    cors_origins: list[str] | None = Field(
        default=None,
        description='Origins whose web pages may call the HTTP API (the AI Overhaul plugin runs in Stash\'s page), e.g. ["http://stash.lan:9999"]; unset: the origin of stash_url, none without one.',
    )
    stash_ai_max_body_bytes: int = Field(
        default=64 * 1024 * 1024,
        ge=1024,
        description="Largest body the AI Overhaul routes (/stash-ai) read; its images come as base64.",
    )
    log_level: str = Field(default="INFO")

    @model_validator(mode="after")
    def _read_key_files(self) -> Settings:
        # Read once here, so every process and every reader of api_key / stash_api_key sees the key.
        self.api_key = _key_from_file(self.api_key, self.api_key_file, "API_KEY")
        self.stash_api_key = _key_from_file(self.stash_api_key, self.stash_api_key_file, "STASH_API_KEY")
        return self

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def jobs_db(self) -> Path:
        """Jobs, their items and events, and the result store (SQLite, WAL)."""
        return self.data_dir / "jobs.db"

    @property
    def user_repository(self) -> Path:
        """Models the user imported (skier233 packages, ONNX classifiers): same layout as model_repository/."""
        return self.data_dir / "model_repository"

    @property
    def user_profiles_dir(self) -> Path:
        """Face profiles of the user (<name>.yaml), found before the built-in ones."""
        return self.data_dir / "face_profiles"

    @property
    def face_indexes_dir(self) -> Path:
        """Face index versions, one folder each per profile; `<profile>/current` points at the live one."""
        return self.data_dir / "face_indexes"

    @property
    def runtime_dir(self) -> Path:
        return self.data_dir / "runtime"

    @property
    def _loopback_host(self) -> str:
        # A wildcard bind address is not something to connect to.
        return "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host

    @property
    def server_target(self) -> str:
        return self.server_url or self.own_grpc_target

    @property
    def own_grpc_target(self) -> str:
        """This machine's gRPC server, whatever STASH_VISION_SERVER_URL says (the server calling itself)."""
        return f"{self._loopback_host}:{self.grpc_port}"

    @property
    def triton_target(self) -> str:
        return self.triton_url or f"{self._loopback_host}:{self.triton_grpc_port}"

    # On a CPU-only machine inference and decoding share the cores. ONNX Runtime runs on every core
    # with its idle threads sleeping instead of spinning (ort_runner.py), so the decoders get the
    # cores whenever inference waits. Measured on 2 cores (docs/benchmarks.md): better than one
    # ORT thread at every concurrency, most for heavy models (ResNet-18 at 512).
    @property
    def effective_ort_threads(self) -> int:
        return self.ort_threads or (os.cpu_count() or 1)

    @property
    def effective_warmup_batch(self) -> int:
        """The largest batch the in-flight caps let Triton form for one model (embedded warm-up)."""
        return self.warmup_batch or max(self.images_in_flight, self.video_frames_in_flight)

    @property
    def effective_video_decoders(self) -> int:
        return self.video_decoders or (os.cpu_count() or 1)

    @property
    def effective_decode_threads(self) -> int:
        return self.decode_threads or (os.cpu_count() or 1)

    @property
    def effective_cors_origins(self) -> list[str]:
        """The browser origins allowed to call the API: the setting, else Stash's own origin."""
        if self.cors_origins is not None:
            return [origin.rstrip("/") for origin in self.cors_origins]
        if not self.stash_url:
            return []
        parts = urlsplit(self.stash_url)
        return [f"{parts.scheme}://{parts.netloc}"] if parts.scheme and parts.netloc else []
