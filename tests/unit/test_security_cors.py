"""CORS is closed by default: without STASH_VISION_STASH_URL and STASH_VISION_CORS_ORIGINS no
origin gets an Access-Control-Allow-Origin, on a simple request or a preflight; with a Stash URL
only Stash's own origin does. Checked on the real app (no server behind it)."""

from __future__ import annotations

from fastapi.testclient import TestClient

from stash_vision.adapter.app import create_app
from stash_vision.settings import Settings

FOREIGN = (
    "http://evil.example",
    "null",
    "http://127.0.0.1:8000",
    "http://localhost:9999",
    "https://stash.lan",
)
PATHS = ("/health", "/jobs", "/stash-ai/api/v1/health", "/stash-sense/health")


def allowed_origins(settings: Settings, origins: tuple[str, ...]) -> set[str]:
    """Every origin the app answered with an Access-Control-Allow-Origin, simple or preflight."""
    seen: set[str] = set()
    with TestClient(create_app(settings)) as client:
        for origin in origins:
            for path in PATHS:
                simple = client.get(path, headers={"Origin": origin})
                preflight = client.options(
                    path,
                    headers={
                        "Origin": origin,
                        "Access-Control-Request-Method": "POST",
                        "Access-Control-Request-Headers": "x-api-key,content-type",
                    },
                )
                for response in (simple, preflight):
                    granted = response.headers.get("access-control-allow-origin")
                    if granted:
                        seen.add(granted)
    return seen


def unreachable(**values: object) -> Settings:
    return Settings.model_validate(
        {"server_url": "127.0.0.1:1", "server_metrics_port": 1, "triton_metrics_port": 1, **values}
    )


def test_no_origin_is_allowed_by_default() -> None:
    settings = unreachable(stash_url=None, cors_origins=None)
    assert settings.effective_cors_origins == []
    assert allowed_origins(settings, FOREIGN) == set()


def test_a_stash_url_opens_only_stash_origin() -> None:
    settings = unreachable(stash_url="http://stash.lan:9999/", cors_origins=None)
    assert allowed_origins(settings, (*FOREIGN, "http://stash.lan:9999")) == {"http://stash.lan:9999"}


def test_cors_origins_replace_the_stash_origin() -> None:
    settings = unreachable(stash_url="http://stash.lan:9999", cors_origins=["https://stash.example.org/"])
    granted = allowed_origins(settings, (*FOREIGN, "http://stash.lan:9999", "https://stash.example.org"))
    assert granted == {"https://stash.example.org"}
