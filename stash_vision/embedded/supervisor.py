"""`stash-vision serve`: starts Triton (embedded, unless an external one is configured), waits until
every configured model is ready, then starts the gRPC server and the HTTP adapter, and keeps them
running: a child that dies is restarted with back-off, SIGINT/SIGTERM stop everything, and no child
outlives the supervisor (own process groups, parent-death signal, stale shared memory removed)."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from stash_vision.catalog.entries import CatalogEntry
from stash_vision.embedded import device, runtime_repository
from stash_vision.embedded.device_report import REPORT_FILE, read_report
from stash_vision.embedded.triton_binary import TritonInstall
from stash_vision.settings import Settings

log = logging.getLogger("stash_vision.supervisor")

_POLL_S = 0.5
_BACKOFF_START_S = 1.0
_BACKOFF_MAX_S = 30.0
_HEALTHY_UPTIME_S = 60.0
_STOP_GRACE_S = 15.0
_PR_SET_PDEATHSIG = 1


class StartupError(RuntimeError):
    """The stack cannot start; the message is the one line the user sees."""


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the supervisor is killed outright, the kernel
    # sends SIGTERM to the child, so no process is orphaned.
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_file: Path | None = None
    on_exit: Callable[[], None] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restart_at: float | None = None
    backoff_s: float = _BACKOFF_START_S
    restarts: int = 0
    _log_handle: object | None = field(default=None, repr=False)

    def start(self) -> None:
        stdout: int | object | None = None
        if self.log_file is not None:
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            self._log_handle = self.log_file.open("ab")
            stdout = self._log_handle
        self.process = subprocess.Popen(
            self.argv,
            env=self.env,
            stdout=stdout,  # type: ignore[arg-type]
            stderr=subprocess.STDOUT if stdout is not None else None,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: stop() reaches its grandchildren too
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def exited(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def schedule_restart(self) -> None:
        uptime = time.monotonic() - self.started_at
        if uptime > _HEALTHY_UPTIME_S:
            self.backoff_s = _BACKOFF_START_S
        self.restart_at = time.monotonic() + self.backoff_s
        log.warning(
            "%s exited with code %s after %.0f s; restarting in %.0f s",
            self.name,
            self.exited(),
            uptime,
            self.backoff_s,
        )
        self.backoff_s = min(self.backoff_s * 2, _BACKOFF_MAX_S)
        # What is left of its group goes too: Triton's Python-backend stubs outlived a `kill -9`
        # of Triton, each holding its model's memory, one more per restart.
        if self.process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self._close_log()
        if self.on_exit:
            self.on_exit()

    def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(grace_s)
            except subprocess.TimeoutExpired:
                log.warning("%s did not stop within %.0f s; killing it", self.name, grace_s)
        # Whatever is left of the group (e.g. Triton's Python-backend stubs) goes too.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(5)
        self._close_log()
        if self.on_exit:
            self.on_exit()

    def _close_log(self) -> None:
        handle = self._log_handle
        if handle is not None:
            handle.close()  # type: ignore[attr-defined]
            self._log_handle = None


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    for setting, port in ports.items():
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as error:
                if error.errno == errno.EADDRINUSE:
                    raise StartupError(
                        f"port {port} on {host} is already in use ({setting}); stop the program using it "
                        f"or set {setting} to a free port"
                    ) from None
                raise StartupError(f"cannot bind {host}:{port} ({setting}): {error.strerror}") from None


class Supervisor:
    def __init__(self, settings: Settings, entries: list[CatalogEntry], triton: TritonInstall | None) -> None:
        self.settings = settings
        self.entries = entries
        self.triton_install = triton
        self._stop_requested = False
        self.children: list[Child] = []
        self.device: device.DevicePlan | None = None  # embedded only: where the models were placed
        self._device_env: dict[str, str] = {}  # in-flight caps the GPU raised, for the children

    # -- lifecycle -------------------------------------------------------------------------------
    def run(self) -> int:
        signal.signal(signal.SIGINT, self._request_stop)
        signal.signal(signal.SIGTERM, self._request_stop)
        try:
            self._start()
            if self._stop_requested:
                return 0
            log.info(
                "stash-vision is ready: HTTP http://%s:%d  gRPC %s:%d  models: %s",
                self.settings.host,
                self.settings.http_port,
                self.settings.host,
                self.settings.grpc_port,
                ", ".join(e.name for e in self.entries),
            )
            self._watch()
            return 0
        finally:
            self._shutdown()

    def _request_stop(self, signum: int, _frame: object) -> None:
        if not self._stop_requested:
            log.info("received %s; shutting down", signal.Signals(signum).name)
        self._stop_requested = True

    def _start(self) -> None:
        s = self.settings
        ports = {
            "STASH_VISION_HTTP_PORT": s.http_port,
            "STASH_VISION_GRPC_PORT": s.grpc_port,
            "STASH_VISION_SERVER_METRICS_PORT": s.server_metrics_port,
        }
        if self.triton_install is not None:
            ports |= {
                "STASH_VISION_TRITON_GRPC_PORT": s.triton_grpc_port,
                "STASH_VISION_TRITON_METRICS_PORT": s.triton_metrics_port,
            }
        check_ports_free(s.host, ports)
        if self.triton_install is not None:
            self._start_embedded_triton(self.triton_install)
        self._wait_for_triton()
        if self._stop_requested:
            return
        self._log_runner_fallbacks()
        env = self._child_env()
        for name, module in (("server", "stash_vision.server"), ("adapter", "stash_vision.adapter")):
            child = Child(name=name, argv=[sys.executable, "-m", module], env=env)
            child.start()
            self.children.append(child)
        self._wait_for_port(s.http_port, "adapter")

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env["STASH_VISION_TRITON_URL"] = self.settings.triton_target
        env["STASH_VISION_DATA_DIR"] = str(self.settings.data_dir)
        env["STASH_VISION_MODELS"] = "[" + ",".join(f'"{e.name}"' for e in self.entries) + "]"
        env.update(self._device_env)
        return env

    # -- device ----------------------------------------------------------------------------------
    def _plan_device(self) -> device.DevicePlan:
        """STASH_VISION_DEVICE against this host (one log line), and on a GPU the in-flight caps
        the user left at their defaults raised (device.GPU_IN_FLIGHT), here and for the children."""
        s = self.settings
        try:
            plan = device.choose(s.device, s.tensorrt)
        except device.DeviceUnavailable as error:
            raise StartupError(str(error)) from None
        current = {"images_in_flight": s.images_in_flight, "video_frames_in_flight": s.video_frames_in_flight}
        raised = device.in_flight_overrides(plan, s.model_fields_set, current)
        if raised:
            self.settings = s.model_copy(update=raised)
            self._device_env = {f"STASH_VISION_{name.upper()}": str(value) for name, value in raised.items()}
            log.info("device: on the GPU, %s", ", ".join(f"{k} {v}" for k, v in raised.items()))
        return plan

    def _log_runner_fallbacks(self) -> None:
        """The runners' own fallbacks (CUDA libraries missing, GPU out of memory): one line."""
        if self.device is None or self.device.device != "cuda":
            return
        repository = self.settings.runtime_dir / "model_repository"
        reports = {e.name: read_report(repository / e.name / REPORT_FILE) for e in self.entries}
        device.log_runner_fallbacks({name: (r.device, r.reason) for name, r in reports.items() if r})

    # -- Triton ----------------------------------------------------------------------------------
    def _start_embedded_triton(self, install: TritonInstall) -> None:
        self.device = self._plan_device()
        s = self.settings
        repository = runtime_repository.assemble(
            self.entries,
            s.models_dir,
            s.runtime_dir / "model_repository",
            runtime_repository.RepositoryMode.EMBEDDED,
            s.effective_ort_threads,
            s.effective_warmup_batch,
            device=self.device,
            precision=s.precision,
        )
        # A private shared-memory prefix: two stacks (or PyTriton) on one machine must not collide.
        shm_prefix = f"stash_vision_{os.getpid()}_"
        argv = [
            str(install.binary),
            f"--model-repository={repository}",
            f"--backend-directory={install.backend_dir}",
            f"--cache-directory={install.cache_dir}",
            "--allow-http=false",
            # Triton's gRPC stays on loopback: only the server talks to it.
            "--grpc-address=127.0.0.1",
            f"--grpc-port={s.triton_grpc_port}",
            "--allow-metrics=true",
            "--allow-gpu-metrics=false",
            f"--metrics-address={s.host}",
            f"--metrics-port={s.triton_metrics_port}",
            "--model-control-mode=none",
            "--disable-auto-complete-config",
            "--strict-readiness=true",
            "--exit-on-error=true",
            f"--backend-config=python,shm-region-prefix-name={shm_prefix}",
            "--log-verbose=0",
        ]
        triton = Child(
            name="tritonserver",
            argv=argv,
            env=install.env,
            log_file=s.runtime_dir / "logs" / "tritonserver.log",
            on_exit=lambda: _remove_shared_memory(shm_prefix),
        )
        triton.start()
        self.children.append(triton)

    def _triton_child(self) -> Child | None:
        return next((c for c in self.children if c.name == "tritonserver"), None)

    def _wait_for_triton(self) -> None:
        import tritonclient.grpc as triton_grpc
        from tritonclient.utils import InferenceServerException

        target = self.settings.triton_target
        deadline = time.monotonic() + self.settings.triton_startup_timeout_s
        client = triton_grpc.InferenceServerClient(target)
        pending = [e.name for e in self.entries]
        log.info("waiting for Triton at %s to load: %s", target, ", ".join(pending))
        try:
            while pending and not self._stop_requested:
                triton = self._triton_child()
                if triton is not None and triton.exited() is not None:
                    raise StartupError(
                        f"tritonserver exited with code {triton.exited()} while loading models; "
                        f"last lines of {triton.log_file}:\n{_tail(triton.log_file)}"
                    )
                with contextlib.suppress(InferenceServerException):
                    pending = [name for name in pending if not client.is_model_ready(name)]
                if not pending:
                    break
                if time.monotonic() > deadline:
                    raise StartupError(
                        f"Triton at {target} did not get {', '.join(pending)} ready within "
                        f"{self.settings.triton_startup_timeout_s:.0f} s (STASH_VISION_TRITON_STARTUP_TIMEOUT_S)"
                    )
                time.sleep(_POLL_S)
        finally:
            client.close()

    # -- watching --------------------------------------------------------------------------------
    def _wait_for_port(self, port: int, name: str, timeout_s: float = 60.0) -> None:
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "") else self.settings.host
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and not self._stop_requested:
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
                return
            child = next((c for c in self.children if c.name == name), None)
            if child is not None and child.exited() is not None:
                raise StartupError(
                    f"{name} exited with code {child.exited()} during start-up (see its log above)"
                )
            time.sleep(0.2)
        if not self._stop_requested:
            raise StartupError(f"{name} did not open port {port} within {timeout_s:.0f} s")

    def _watch(self) -> None:
        while not self._stop_requested:
            now = time.monotonic()
            for child in self.children:
                if child.restart_at is None and child.exited() is not None:
                    child.restarts += 1
                    child.schedule_restart()
                elif child.restart_at is not None and now >= child.restart_at:
                    child.start()
            time.sleep(_POLL_S)

    def _shutdown(self) -> None:
        # Front to back: stop taking HTTP requests first, Triton last.
        for child in reversed(self.children):
            child.stop()
        self.children.clear()


def _remove_shared_memory(prefix: str) -> None:
    shm = Path("/dev/shm")
    if shm.is_dir():
        for region in shm.glob(f"{prefix}*"):
            region.unlink(missing_ok=True)


def _tail(path: Path | None, lines: int = 30) -> str:
    if path is None or not path.is_file():
        return "(no log)"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
