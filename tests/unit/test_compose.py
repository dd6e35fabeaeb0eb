"""compose.yaml, the Dockerfile and the Prometheus configs, checked without Docker.

compose.yaml is validated against the official Compose Specification JSON schema, the copy vendored in
the check-jsonschema package (test extra; `--builtin-schema vendor.compose-spec`), so nothing is
downloaded at test time. Before validation the file is read the way Compose reads it: YAML with merge
keys, duplicate keys refused, ${VAR:-default} interpolated from defaults only (an empty environment).
The rest are consistency checks between the files that the schema cannot see.
"""

from __future__ import annotations

import copy
import http.server
import importlib.resources
import json
import re
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from string import Template
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
COMPOSE_FILE = REPO / "compose.yaml"
DOCKERFILE = REPO / "Dockerfile"
DOCKERIGNORE = REPO / ".dockerignore"
PROMETHEUS_EMBEDDED = REPO / "deploy" / "prometheus" / "prometheus.embedded.yml.in"

SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"
SCHEMA_RESOURCE = "compose-spec.json"

# The one port meant for the LAN: the AITagger plugin may run on another machine or container.
PUBLIC_SERVICE = "adapter"
LOOPBACK = {"127.0.0.1", "::1"}

EMBEDDED_PLACEHOLDERS = {"TRITON_METRICS", "SERVER_METRICS", "ADAPTER"}
EMBEDDED_JOBS = {
    "triton": "TRITON_METRICS",
    "stash-vision-server": "SERVER_METRICS",
    "stash-vision-adapter": "ADAPTER",
}


# --- reading compose.yaml like Compose does ---------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (go-yaml, used by Compose, refuses them; PyYAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_INTERPOLATION = re.compile(
    r"\$(?:(?P<escaped>\$)|(?P<named>[_A-Za-z][_A-Za-z0-9]*)|\{(?P<braced>[^}]*)\}|(?P<invalid>))"
)
_BRACED = re.compile(r"^(?P<name>[_A-Za-z][_A-Za-z0-9]*)(?:(?P<op>:?[-?+])(?P<arg>.*))?$", re.DOTALL)


class _Interpolation:
    """Compose's ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?err}, ${VAR:+alt}, $VAR and $$."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.without_default: set[str] = set()
        self.errors: list[str] = []

    def _one(self, match: re.Match[str], text: str) -> str:
        if match.group("escaped"):
            return "$"
        if match.group("invalid") is not None and not match.group("named") and match.group("braced") is None:
            self.errors.append(f"invalid interpolation in {text!r}")
            return ""
        if match.group("named"):
            name, op, arg = match.group("named"), None, ""
        else:
            braced = _BRACED.match(match.group("braced"))
            if braced is None:
                self.errors.append(f"invalid interpolation ${{{match.group('braced')}}} in {text!r}")
                return ""
            name, op, arg = braced.group("name"), braced.group("op"), braced.group("arg") or ""
        value = self.env.get(name)
        if op in (":-", "-"):
            unset = value is None or (op == ":-" and value == "")
            return arg if unset else str(value)
        if op in (":?", "?"):
            if value is None or (op == ":?" and value == ""):
                self.errors.append(f"required variable {name} is not set: {arg}")
                return ""
            return value
        if op in (":+", "+"):
            set_ = value is not None and (op == "+" or value != "")
            return arg if set_ else ""
        if value is None:
            self.without_default.add(name)
            return ""
        return value

    def __call__(self, node: Any) -> Any:
        if isinstance(node, str):
            return _INTERPOLATION.sub(lambda m: self._one(m, node), node)
        if isinstance(node, dict):
            return {key: self(value) for key, value in node.items()}
        if isinstance(node, list):
            return [self(value) for value in node]
        return node


def _load_compose(env: dict[str, str] | None = None) -> tuple[dict[str, Any], _Interpolation]:
    raw = yaml.load(COMPOSE_FILE.read_text(encoding="utf-8"), Loader=_StrictLoader)
    assert isinstance(raw, dict), "compose.yaml must be a mapping"
    interpolation = _Interpolation(env or {})
    return interpolation(raw), interpolation


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document, interpolation = _load_compose()
    assert not interpolation.errors, interpolation.errors
    return document


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    result = compose.get("services")
    assert isinstance(result, dict) and result, "compose.yaml defines no services"
    return result


def _compose_schema() -> dict[str, Any]:
    try:
        resource = importlib.resources.files(SCHEMA_PACKAGE).joinpath(SCHEMA_RESOURCE)
        text = resource.read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError) as exc:
        pytest.fail(
            f"The Compose Specification schema was not found ({SCHEMA_PACKAGE}/{SCHEMA_RESOURCE}: {exc}). "
            "It is vendored by the check-jsonschema package of the test extra: pip install -e '.[test]'. "
            "This test never downloads it.",
            pytrace=False,
        )
    schema = json.loads(text)
    assert isinstance(schema, dict) and schema.get("title") == "Compose Specification", (
        f"{SCHEMA_PACKAGE}/{SCHEMA_RESOURCE} is not the Compose Specification schema"
    )
    return schema


def _schema_errors(document: dict[str, Any]) -> list[str]:
    import jsonschema  # type: ignore[import-untyped]

    schema = _compose_schema()
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    return [
        f"/{'/'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in sorted(validator.iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
    ]


# --- the schema ------------------------------------------------------------------------------------------


def test_compose_file_is_valid_by_the_compose_specification(compose: dict[str, Any]) -> None:
    errors = _schema_errors(compose)
    assert not errors, "compose.yaml violates the Compose Specification:\n" + "\n".join(errors)


def test_schema_check_is_not_vacuous(compose: dict[str, Any]) -> None:
    broken = copy.deepcopy(compose)
    broken["services"]["server"]["heathcheck"] = {"test": ["CMD", "true"]}  # misspelt on purpose
    broken["services"]["triton"]["depends_on"]["models"]["condition"] = "service_finished"
    errors = _schema_errors(broken)
    assert any("heathcheck" in error for error in errors), errors
    assert any("service_finished" in error for error in errors), errors


def test_every_variable_has_a_default_so_no_env_file_is_needed() -> None:
    _, interpolation = _load_compose()
    assert not interpolation.errors, interpolation.errors
    assert not interpolation.without_default, (
        f"variables without a default (Compose would substitute ''): {sorted(interpolation.without_default)}"
    )


def test_variables_can_be_overridden() -> None:
    document, _ = _load_compose({"STASH_VISION_HTTP_PORT": "18000", "STASH_MEDIA_DIR": "/mnt/library"})
    adapter = document["services"]["adapter"]
    assert "18000:8000" in adapter["ports"]
    assert "/mnt/library:/media:ro" in document["services"]["server"]["volumes"]


def test_duplicate_keys_are_refused() -> None:
    with pytest.raises(yaml.constructor.ConstructorError, match="duplicate key"):
        yaml.load("a: 1\nb: 2\na: 3\n", Loader=_StrictLoader)
    # Merge keys are not duplicates.
    assert yaml.load("x: &x {a: 1}\ny: {<<: *x, b: 2}\n", Loader=_StrictLoader)["y"] == {"a": 1, "b": 2}


# --- consistency between services --------------------------------------------------------------------------


def _depends_on(service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    dependencies = service.get("depends_on") or {}
    if isinstance(dependencies, list):
        return {name: {"condition": "service_started"} for name in dependencies}
    return dict(dependencies)


def test_expected_services(services: dict[str, dict[str, Any]]) -> None:
    assert {"models", "triton", "server", "adapter", "prometheus", "grafana"} <= set(services)


def test_depends_on_names_existing_services_and_healthchecked_ones_when_waiting_for_health(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for dependency, spec in _depends_on(service).items():
            assert dependency in services, f"{name} depends on {dependency!r}, which is not a service"
            assert dependency != name
            if spec.get("condition") == "service_healthy":
                assert "healthcheck" in services[dependency], (
                    f"{name} waits for {dependency} to be healthy, but {dependency} has no healthcheck"
                )


def test_startup_order(services: dict[str, dict[str, Any]]) -> None:
    assert _depends_on(services["triton"])["models"]["condition"] == "service_completed_successfully"
    assert _depends_on(services["server"])["triton"]["condition"] == "service_healthy"
    assert _depends_on(services["adapter"])["server"]["condition"] == "service_healthy"
    assert services["models"].get("restart") == "no"


def test_triton_reserves_a_gpu(services: dict[str, dict[str, Any]]) -> None:
    devices = services["triton"]["deploy"]["resources"]["reservations"]["devices"]
    gpus = [d for d in devices if d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", [])]
    assert gpus, f"triton reserves no NVIDIA GPU: {devices}"
    for device in gpus:
        count = device.get("count")
        assert count == "all" or (isinstance(count, int) and count >= 1) or device.get("device_ids"), device


def test_triton_serves_the_repository_the_models_job_assembles(services: dict[str, dict[str, Any]]) -> None:
    triton = services["triton"]
    image = triton["image"]
    assert image.startswith("nvcr.io/nvidia/tritonserver:") and re.search(r":\d\d\.\d\d-py3$", image), image
    command = triton["command"]
    assert command[0] == "tritonserver"
    flags = {arg.partition("=")[0]: arg.partition("=")[2] for arg in command[1:]}
    assert flags["--model-control-mode"] == "none"
    assert flags["--disable-auto-complete-config"] in ("", "true")
    assert flags["--strict-readiness"] == "true"
    assert flags["--allow-http"] == "true"  # the healthcheck uses HTTP :8000

    job = " ".join(services["models"]["command"])
    out = re.search(r"models assemble --native --out (\S+)", job)
    assert "models fetch" in job and out, job
    assert flags["--model-repository"] == out.group(1)

    triton_mounts = {v.split(":")[1]: v for v in triton["volumes"]}
    models_mounts = {v.split(":")[1]: v for v in services["models"]["volumes"]}
    mount = next(target for target in triton_mounts if out.group(1).startswith(target + "/"))
    assert triton_mounts[mount].endswith(":ro"), "triton should mount the model volume read-only"
    assert triton_mounts[mount].split(":")[0] == models_mounts[mount].split(":")[0]
    assert "v2/health/ready" in " ".join(triton["healthcheck"]["test"])


def test_stash_vision_services_use_the_project_image(services: dict[str, dict[str, Any]]) -> None:
    images = set()
    for name in ("models", "server", "adapter"):
        service = services[name]
        build = service["build"]
        context = REPO / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / (
            "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
        )
        assert dockerfile.resolve() == DOCKERFILE, f"{name} builds {dockerfile}"
        images.add(service["image"])
    assert len(images) == 1, f"one image for every stash-vision process, got {images}"
    assert services["server"]["command"] == ["server"]
    assert services["adapter"]["command"] == ["adapter"]


def test_service_wiring_through_environment(services: dict[str, dict[str, Any]]) -> None:
    server = services["server"]["environment"]
    adapter = services["adapter"]["environment"]
    assert server["STASH_VISION_TRITON_URL"] == "triton:8001"
    assert adapter["STASH_VISION_SERVER_URL"] == f"server:{server['STASH_VISION_GRPC_PORT']}"
    for env in (server, adapter, services["models"]["environment"]):
        assert env["STASH_VISION_HOST"] == "0.0.0.0"
        assert env["STASH_VISION_DATA_DIR"] == "/data"
        assert json.loads(env["STASH_VISION_MODELS"]) == []
    assert json.loads(server["STASH_VISION_LIBRARY_ROOTS"]) == ["/media"]


def test_media_is_mounted_read_only(services: dict[str, dict[str, Any]]) -> None:
    media = [v for v in services["server"]["volumes"] if v.split(":")[1] == "/media"]
    assert media and all(v.endswith(":ro") for v in media), media


def test_named_volumes_are_declared(compose: dict[str, Any], services: dict[str, dict[str, Any]]) -> None:
    declared = set(compose.get("volumes") or {})
    assert {"stash-vision-data", "prometheus-data"} <= declared
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if not source.startswith(("/", ".", "~")):
                assert source in declared, f"{name} mounts undeclared volume {source!r}"


def _published(port: Any) -> tuple[str | None, str | None, str]:
    """(host ip or None for every interface, host port or None, container port) of one ports entry."""
    if isinstance(port, dict):
        return (
            port.get("host_ip"),
            str(port["published"]) if "published" in port else None,
            str(port["target"]),
        )
    spec = str(port).split("/", 1)[0]
    host_ip = None
    if spec.startswith("["):
        host_ip, spec = spec[1:].split("]:", 1)
    parts = spec.split(":")
    if len(parts) == 3:
        host_ip, host, container = parts
        return host_ip, host, container
    if len(parts) == 2:
        return host_ip, parts[0], parts[1]
    return host_ip, None, parts[0]


def test_only_the_adapter_is_published_beyond_loopback(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        for port in service.get("ports", []):
            host_ip, _, _ = _published(port)
            if name != PUBLIC_SERVICE:
                assert host_ip in LOOPBACK, f"{name} publishes {port!r} beyond loopback"
    assert "ports" not in services["triton"], "Triton has no authentication; keep it on the compose network"
    assert [_published(p)[1:] for p in services["adapter"]["ports"]] == [("8000", "8000")]
    assert [_published(p) for p in services["prometheus"]["ports"]] == [("127.0.0.1", "9090", "9090")]
    assert [_published(p) for p in services["grafana"]["ports"]] == [("127.0.0.1", "3000", "3000")]


def test_healthchecks(services: dict[str, dict[str, Any]]) -> None:
    for name in ("triton", "server", "adapter"):
        test = services[name]["healthcheck"]["test"]
        assert isinstance(test, list) and test[0] == "CMD", (
            f"{name}: exec-form healthcheck expected, got {test}"
        )
    assert "grpc_health.v1" in services["server"]["healthcheck"]["test"][-1]
    assert "/ready" in services["adapter"]["healthcheck"]["test"][-1]


# --- the healthcheck one-liners really work ---------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _python_check(service: dict[str, Any], old: str, new: str) -> list[str]:
    test = service["healthcheck"]["test"]
    assert test[1:3] == ["python", "-c"], test
    assert old in test[3], test[3]
    return [sys.executable, "-c", test[3].replace(old, new)]


def test_server_healthcheck_reads_grpc_health(services: dict[str, dict[str, Any]]) -> None:
    import grpc
    from grpc_health.v1 import health, health_pb2, health_pb2_grpc

    port = _free_port()
    command = _python_check(services["server"], "127.0.0.1:50051", f"127.0.0.1:{port}")
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0  # nothing listening

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
        assert subprocess.run(command, capture_output=True, timeout=30).returncode == 1
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        result = subprocess.run(command, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
    finally:
        server.stop(None)


@pytest.fixture
def ready_endpoint() -> Iterator[tuple[int, dict[str, int]]]:
    state = {"status": 503}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(state["status"] if self.path == "/ready" else 404)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(httpd.server_address[1]), state
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_adapter_healthcheck_reads_ready(
    services: dict[str, dict[str, Any]], ready_endpoint: tuple[int, dict[str, int]]
) -> None:
    port, state = ready_endpoint
    command = _python_check(services["adapter"], "127.0.0.1:8000", f"127.0.0.1:{port}")
    assert subprocess.run(command, capture_output=True, timeout=30).returncode != 0
    state["status"] = 200
    result = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


# --- Prometheus ---------------------------------------------------------------------------------------------


def _scrape_targets(config: dict[str, Any]) -> dict[str, list[str]]:
    return {
        job["job_name"]: [target for static in job.get("static_configs", []) for target in static["targets"]]
        for job in config["scrape_configs"]
    }


def _prometheus_config_path(services: dict[str, dict[str, Any]]) -> Path:
    for volume in services["prometheus"]["volumes"]:
        source, target = volume.split(":")[:2]
        if target == "/etc/prometheus/prometheus.yml":
            return (COMPOSE_FILE.parent / str(source)).resolve()
    raise AssertionError("prometheus mounts no /etc/prometheus/prometheus.yml")


def test_prometheus_scrapes_compose_services(services: dict[str, dict[str, Any]]) -> None:
    path = _prometheus_config_path(services)
    assert path.is_file(), f"{path} (mounted into prometheus) does not exist"
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    targets = _scrape_targets(config)
    for job, job_targets in targets.items():
        assert job_targets, f"job {job} has no targets"
        for target in job_targets:
            host = target.rsplit(":", 1)[0]
            assert host in services, f"job {job} scrapes {target}, but {host!r} is not a compose service"
    server_metrics = services["server"]["environment"]["STASH_VISION_SERVER_METRICS_PORT"]
    adapter_http = services["adapter"]["environment"]["STASH_VISION_HTTP_PORT"]
    assert targets == {
        "triton": ["triton:8002"],
        "stash-vision-server": [f"server:{server_metrics}"],
        "stash-vision-adapter": [f"adapter:{adapter_http}"],
    }
    prometheus_volumes = [v.split(":")[0] for v in services["prometheus"]["volumes"]]
    assert "prometheus-data" in prometheus_volumes


def _render_embedded(**values: str) -> str:
    return Template(PROMETHEUS_EMBEDDED.read_text(encoding="utf-8")).substitute(values)


def test_embedded_prometheus_template() -> None:
    template = Template(PROMETHEUS_EMBEDDED.read_text(encoding="utf-8"))
    assert template.is_valid()
    assert set(template.get_identifiers()) == EMBEDDED_PLACEHOLDERS
    values = {
        "TRITON_METRICS": "127.0.0.1:18002",
        "SERVER_METRICS": "127.0.0.1:18003",
        "ADAPTER": "127.0.0.1:18000",
    }
    config = yaml.safe_load(_render_embedded(**values))
    assert _scrape_targets(config) == {job: [values[key]] for job, key in EMBEDDED_JOBS.items()}
    assert config["global"]["scrape_interval"] == "1s"


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_promtool_accepts_both_prometheus_configs(
    services: dict[str, dict[str, Any]], tmp_path: Path
) -> None:
    embedded = tmp_path / "prometheus.yml"
    embedded.write_text(
        _render_embedded(TRITON_METRICS="127.0.0.1:1", SERVER_METRICS="127.0.0.1:2", ADAPTER="127.0.0.1:3"),
        encoding="utf-8",
    )
    for path in (_prometheus_config_path(services), embedded):
        result = subprocess.run(
            ["promtool", "check", "config", str(path)], capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr


# --- Dockerfile ----------------------------------------------------------------------------------------------


def _dockerfile_stages(dockerfile: Path = DOCKERFILE) -> list[list[tuple[str, str]]]:
    """Instructions (KEYWORD, arguments) per stage, continuation lines joined, comments dropped."""
    logical: list[str] = []
    pending = ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append(pending + stripped)
        pending = ""
    assert not pending, "Dockerfile ends with a continuation line"
    stages: list[list[tuple[str, str]]] = []
    for instruction in logical:
        keyword, _, arguments = instruction.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            stages.append([])
        if stages:
            stages[-1].append((keyword, arguments.strip()))
    assert stages, "Dockerfile has no FROM"
    return stages


def test_dockerfile_entrypoint_is_stash_vision() -> None:
    final = _dockerfile_stages()[-1]
    entrypoints = [args for keyword, args in final if keyword == "ENTRYPOINT"]
    assert entrypoints, "the final stage sets no ENTRYPOINT"
    assert json.loads(entrypoints[-1]) == ["stash-vision"]


def test_dockerfile_base_user_and_install() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert re.search(r"^ARG PYTHON_IMAGE=python:3\.11-slim$", text, re.M) or re.search(
        r"^FROM python:3\.11-slim\b", text, re.M
    )
    final = _dockerfile_stages()[-1]
    users = [args for keyword, args in final if keyword == "USER"]
    assert users and users[-1].split(":")[0] not in ("root", "0"), "the image must not run as root"
    runs = [args for stage in _dockerfile_stages() for keyword, args in stage if keyword == "RUN"]
    assert any("pip install" in run for run in runs)
    assert not any("embedded" in run for run in runs), "the image must not install the embedded extra"


def _package_source(package: str, package_dir: dict[str, str]) -> str:
    """Top-level folder holding a package, following [tool.setuptools.package-dir]."""
    parts = package.split(".")
    for cut in range(len(parts), 0, -1):
        prefix = ".".join(parts[:cut])
        if prefix in package_dir:
            return package_dir[prefix].split("/")[0]
    return parts[0]


def test_dockerfile_copies_every_package_source() -> None:
    import tomllib

    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    setuptools = pyproject["tool"]["setuptools"]
    package_dir = setuptools.get("package-dir", {})
    needed = {"pyproject.toml", pyproject["project"]["readme"]}
    needed |= {_package_source(package, package_dir) for package in setuptools["packages"]}
    copied: set[str] = set()
    for stage in _dockerfile_stages():
        for keyword, args in stage:
            if keyword == "COPY" and "--from=" not in args:
                copied.update(s.rstrip("/") for s in args.split()[:-1] if not s.startswith("--"))
    missing_in_dockerfile = needed - copied
    assert not missing_in_dockerfile, f"the Dockerfile does not COPY {sorted(missing_in_dockerfile)}"
    missing_in_repo = sorted(s for s in copied if not (REPO / s).exists())
    assert not missing_in_repo, (
        f"the Dockerfile copies files that do not exist, so `docker build` would fail: {missing_in_repo}"
    )


def test_the_image_gets_every_python_package() -> None:
    """The image installs a wheel (not an editable checkout): a package missing from
    [tool.setuptools] packages is silently left out of it and fails only at import time."""
    import tomllib

    setuptools = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    present: set[str] = set()
    for package, folder in setuptools.get("package-dir", {}).items():
        root = REPO / folder
        for init in root.rglob("__init__.py"):
            present.add(".".join((package, *init.parent.relative_to(root).parts)))
    missing = sorted(present - set(setuptools["packages"]))
    assert not missing, (
        f"pyproject.toml [tool.setuptools] packages lacks {missing}; the image would not contain them"
    )


def test_dockerignore_keeps_local_state_out_of_the_context() -> None:
    patterns = {
        line.strip().rstrip("/")
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv", "data", "bench/results", ".pytest_cache"} <= patterns, patterns
    copied = {"pyproject.toml", "README.md", "stash_vision", "server", "adapter", "model_repository"}
    assert not copied & patterns, f".dockerignore excludes what the Dockerfile copies: {copied & patterns}"
