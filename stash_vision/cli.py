"""`stash-vision` command line: serve the stack, run one process of it, manage model weights."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stash_vision.catalog.entries import Catalog, CatalogError
from stash_vision.catalog.fetcher import FetchError, fetch, is_fetched
from stash_vision.settings import Settings

log = logging.getLogger("stash_vision")


class _Progress:
    """Progress for large downloads: a live line on a terminal, a line per quarter otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.reported: dict[str, int] = {}

    def __call__(self, name: str, done: int, total: int | None) -> None:
        if not total or total < 4 << 20:
            return
        percent = min(100, done * 100 // total)
        if self.tty:
            sys.stderr.write(f"\r  {name}: {percent:3d}% ({done / 2**20:.1f}/{total / 2**20:.1f} MiB)")
            if done >= total:
                sys.stderr.write("\n")
        elif percent // 25 > self.reported.get(name, -1):
            self.reported[name] = percent // 25
            sys.stderr.write(f"  {name}: {percent}%\n")


def _models_fetch(settings: Settings, args: argparse.Namespace) -> int:
    catalog = Catalog.load(extra=[settings.user_repository])
    mirror = args.mirror or settings.model_mirror
    entries = catalog.select(args.names or settings.models)
    failed = 0
    progress = _Progress()
    for entry in entries:
        try:
            result = fetch(
                entry, settings.models_dir, mirror, allow_upstream=not args.mirror_only, progress=progress
            )
        except FetchError as error:
            print(f"error: {error}", file=sys.stderr)
            failed += 1
            continue
        where = f" from {result.source}" if result.source else ""
        print(f"{entry.name}: {result.status}{where} -> {result.path}")
    return 1 if failed else 0


def _models_list(settings: Settings, _args: argparse.Namespace) -> int:
    catalog = Catalog.load(extra=[settings.user_repository])
    served = set(settings.models or catalog.names())
    loaded = _triton_ready_models(settings, catalog.names())
    print(f"{'model':<16}{'version':<9}{'task':<22}{'served':<8}{'fetched':<9}{'in Triton':<10}licence")
    for name in catalog.names():
        entry = catalog.get(name)
        state = "-" if loaded is None else ("ready" if name in loaded else "no")
        print(
            f"{name:<16}{entry.version:<9}{entry.task:<22}{'yes' if name in served else 'no':<8}"
            f"{'yes' if is_fetched(entry, settings.models_dir) else 'no':<9}{state:<10}{entry.licence}"
        )
    if loaded is None:
        print(f"(Triton at {settings.triton_target} is not reachable: 'in Triton' unknown)")
    return 0


def _triton_ready_models(settings: Settings, names: list[str]) -> set[str] | None:
    import tritonclient.grpc as triton_grpc
    from tritonclient.utils import InferenceServerException

    client = triton_grpc.InferenceServerClient(settings.triton_target)
    try:
        if not client.is_server_live(client_timeout=1.0):
            return None
        return {name for name in names if client.is_model_ready(name, client_timeout=1.0)}
    except InferenceServerException:
        return None
    finally:
        client.close()


def _models_assemble(settings: Settings, args: argparse.Namespace) -> int:
    from stash_vision.embedded.runtime_repository import RepositoryMode, WeightsMissing, assemble

    entries = Catalog.load(extra=[settings.user_repository]).select(args.names or settings.models)
    mode = RepositoryMode.NATIVE if args.native else RepositoryMode.EMBEDDED
    try:
        out = assemble(entries, settings.models_dir, Path(args.out), mode, settings.effective_ort_threads)
    except WeightsMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {mode.value} Triton repository with {len(entries)} models to {out}")
    return 0


def _serve(settings: Settings, _args: argparse.Namespace) -> int:
    from stash_vision.embedded import triton_binary
    from stash_vision.embedded.runtime_repository import WeightsMissing
    from stash_vision.embedded.supervisor import StartupError, Supervisor

    entries = Catalog.load(extra=[settings.user_repository]).select(settings.models)
    try:
        install = None if settings.triton_url else triton_binary.prepare(settings.runtime_dir)
        return Supervisor(settings, entries, install).run()
    except (triton_binary.TritonUnavailable, StartupError, WeightsMissing) as error:
        log.error("cannot start: %s", error)
        return 1


def _server(_settings: Settings, _args: argparse.Namespace) -> int:
    from stash_vision.server.app import main

    return main()


def _adapter(_settings: Settings, _args: argparse.Namespace) -> int:
    from stash_vision.adapter.app import main

    return main()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stash-vision",
        description="AI inference server for Stash. Settings come from STASH_VISION_* variables.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "serve", help="run the whole stack (embedded Triton unless STASH_VISION_TRITON_URL is set)"
    )
    commands.add_parser("server", help="run only the gRPC server")
    commands.add_parser("adapter", help="run only the HTTP adapter")
    models = commands.add_parser("models", help="model weights").add_subparsers(
        dest="models_command", required=True
    )
    fetch_parser = models.add_parser("fetch", help="download and verify weights into the data directory")
    fetch_parser.add_argument("names", nargs="*", help="models to fetch (default: the served ones)")
    fetch_parser.add_argument(
        "--mirror", help="folder or file:// / http(s):// base laid out like shared/models"
    )
    fetch_parser.add_argument("--mirror-only", action="store_true", help="never fall back to upstream URLs")
    models.add_parser("list", help="show configured, fetched and loaded models")
    assemble_parser = models.add_parser("assemble", help="write a runnable Triton model repository")
    assemble_parser.add_argument("names", nargs="*")
    assemble_parser.add_argument("--out", required=True, help="output folder (replaced whole)")
    assemble_parser.add_argument(
        "--native", action="store_true", help="for the official Triton image (onnxruntime backend)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = {
        "serve": _serve,
        "server": _server,
        "adapter": _adapter,
        "fetch": _models_fetch,
        "list": _models_list,
        "assemble": _models_assemble,
    }
    key = args.models_command if args.command == "models" else args.command
    try:
        return handlers[key](settings, args)
    except CatalogError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
