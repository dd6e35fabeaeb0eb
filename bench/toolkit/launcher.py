"""What-if launcher: `stash-vision serve` with knobs that have no setting, tried without editing the
project. The knobs come as JSON in $STASH_VISION_BENCH_OVERRIDES:

- max_batch, max_queue_delay_us, instances: the derived config.pbtxt (max_batch_size, the dynamic
  batcher's delay, the instance count);
- ort_spinning, ort_arena: ORT's session.intra_op.allow_spinning and enable_cpu_mem_arena in the
  runner copied beside it;
- per_request_in_flight, global_in_flight: ImageTagging's caps in the gRPC server.

It wraps runtime_repository.assemble to edit the runtime repository `serve` is about to hand to
Triton, and (for the caps) starts the gRPC server through this module too; then it runs the
genuine CLI in the same process. It imports only the project, protobuf and tritonclient (nothing of
the benchmarks), so the stack's memory stays comparable with a plain `serve`.

    python -m bench.toolkit.launcher                       # the supervisor (`serve`)
    python -m bench.toolkit.launcher stash_vision.server   # the gRPC server, caps changed"""

from __future__ import annotations

import json
import os
import re
import runpy
import sys
from pathlib import Path
from typing import Any

OVERRIDES_ENV = "STASH_VISION_BENCH_OVERRIDES"
SERVER = "stash_vision.server"
_RUNNER_ANCHOR = "options.inter_op_num_threads = 1\n"
_SPINNING = re.compile(r'add_session_config_entry\("session\.intra_op\.allow_spinning", "(\d)"\)')
_CAPS = ("per_request_in_flight", "global_in_flight")


def _with_runner_option(source: str, pattern: re.Pattern[str] | None, value: str, line: str) -> str:
    """Sets an option of the ORT runner: replaces the value `pattern` finds, else adds `line`
    after the inter-op threads line."""
    current = pattern.search(source) if pattern else None
    if current:
        return source[: current.start(1)] + value + source[current.end(1) :]
    if _RUNNER_ANCHOR not in source:
        raise RuntimeError(f"cannot set {line.strip()!r}: no {_RUNNER_ANCHOR.strip()!r} in the ORT runner")
    return source.replace(_RUNNER_ANCHOR, f"{_RUNNER_ANCHOR}        {line}\n", 1)


def apply_overrides(model_dir: Path, overrides: dict[str, Any]) -> None:
    """Edits one model's folder of the derived runtime repository."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    config_path = model_dir / "config.pbtxt"
    config = text_format.Parse(config_path.read_text(), model_config_pb2.ModelConfig())
    if overrides.get("max_batch") is not None:
        config.max_batch_size = int(overrides["max_batch"])
    if overrides.get("max_queue_delay_us") is not None:
        config.dynamic_batching.max_queue_delay_microseconds = int(overrides["max_queue_delay_us"])
    if overrides.get("instances") is not None:
        config.instance_group[0].count = int(overrides["instances"])
    config_path.write_text(text_format.MessageToString(config))
    runner = next(model_dir.glob("*/model.py"), None)
    source = runner.read_text() if runner else ""
    if overrides.get("ort_spinning") is not None:
        value = str(int(overrides["ort_spinning"]))
        line = f'options.add_session_config_entry("session.intra_op.allow_spinning", "{value}")'
        source = _with_runner_option(source, _SPINNING, value, line)
    if overrides.get("ort_arena") is not None:
        line = f"options.enable_cpu_mem_arena = {bool(overrides['ort_arena'])}"
        source = _with_runner_option(source, None, "", line)
    if runner is not None:
        runner.write_text(source)


def serve(overrides: dict[str, Any]) -> int:
    from stash_vision import cli
    from stash_vision.embedded import runtime_repository, supervisor

    assemble = runtime_repository.assemble

    def assemble_and_override(entries: Any, *args: Any, **kwargs: Any) -> Path:
        result = assemble(entries, *args, **kwargs)
        for entry in entries:
            apply_overrides(result / entry.name, overrides)
        return result

    class ShimmedChild(supervisor.Child):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if self.name == "server" and self.argv[1:] == ["-m", SERVER]:
                self.argv = [sys.executable, "-m", "bench.toolkit.launcher", SERVER]

    runtime_repository.assemble = assemble_and_override
    if any(overrides.get(key) is not None for key in _CAPS):
        supervisor.Child = ShimmedChild  # type: ignore[misc]
    return cli.main(["serve"])


def server(overrides: dict[str, Any]) -> None:
    from stash_vision.server.tagging import image_flow

    original = image_flow.ImageTagging.__init__

    def init(self: image_flow.ImageTagging, *args: Any, **kwargs: Any) -> None:
        for key in _CAPS:
            if overrides.get(key) is not None:
                kwargs[key] = int(overrides[key])
        original(self, *args, **kwargs)

    image_flow.ImageTagging.__init__ = init  # type: ignore[method-assign]
    runpy.run_module(SERVER, run_name="__main__", alter_sys=True)


def main(argv: list[str]) -> int:
    overrides: dict[str, Any] = json.loads(os.environ.get(OVERRIDES_ENV) or "{}")
    if argv[:1] == [SERVER]:
        server(overrides)
        return 0
    return serve(overrides)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
