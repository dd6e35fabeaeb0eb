"""`stash-vision` command line: serve the stack, run one process of it, manage model weights, import
user models."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from pydantic import ValidationError

from stash_vision import cli_index, cli_jobs, cli_precision
from stash_vision.catalog.entries import Catalog, CatalogEntry, CatalogError
from stash_vision.catalog.fetcher import FetchError, fetch, is_fetched
from stash_vision.catalog.serving import served_entries, served_names
from stash_vision.server.faces.profile import ProfileError
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
    entries = catalog.select(args.names) if args.names else served_entries(settings, catalog)
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
    cli_precision.after_fetch_or_import(settings, entries)
    return 1 if failed else 0


def _models_list(settings: Settings, _args: argparse.Namespace) -> int:
    catalog = Catalog.load(extra=[settings.user_repository])
    served = set(served_names(settings, catalog))
    loaded = _triton_ready_models(settings, catalog.names())
    rows = [("model", "version", "task", "served", "fetched", "in Triton", "licence", "precision")]
    for name in catalog.names():
        entry = catalog.get(name)
        state = "-" if loaded is None else ("ready" if name in loaded else "no")
        fetched = "yes" if is_fetched(entry, settings.models_dir) else "no"
        served_here = "yes" if name in served else "no"
        precision = cli_precision.precision_cell(settings, entry)
        rows.append(
            (name, str(entry.version), entry.task, served_here, fetched, state, entry.licence, precision)
        )
    # Columns as wide as their longest cell: imported models have long names.
    widths = [max(len(row[column]) for row in rows) + 2 for column in range(len(rows[0]) - 1)]
    for row in rows:
        print("".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[-1])
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

    catalog = Catalog.load(extra=[settings.user_repository])
    entries = catalog.select(args.names) if args.names else served_entries(settings, catalog)
    mode = RepositoryMode.NATIVE if args.native else RepositoryMode.EMBEDDED
    try:
        out = assemble(
            entries,
            settings.models_dir,
            Path(args.out),
            mode,
            settings.effective_ort_threads,
            precision=settings.precision,
        )
    except WeightsMissing as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(f"wrote {mode.value} Triton repository with {len(entries)} models to {out}")
    return 0


def _models_import_skier233(settings: Settings, args: argparse.Namespace) -> int:
    from stash_vision.catalog.importers import ModelImportError, import_skier233

    try:
        entry = import_skier233(
            Path(args.yaml),
            settings.user_repository,
            settings.models_dir,
            categories_dir=Path(args.categories) if args.categories else None,
        )
    except (ModelImportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return _report_import(settings, entry)


def _models_import_onnx(settings: Settings, args: argparse.Namespace) -> int:
    from stash_vision.catalog.importers import ModelImportError, import_onnx_classifier

    try:
        entry = import_onnx_classifier(
            Path(args.onnx),
            Path(args.labels),
            args.category,
            settings.user_repository,
            settings.models_dir,
            name=args.name,
            size=args.size,
            layout=args.layout,
            color_order=args.color,
            scale=args.scale,
            mean=tuple(args.mean),
            std=tuple(args.std),
            resize=args.resize,
            interpolation=args.interpolation,
            activation=args.activation,
            identifier=args.identifier,
            version=args.version,
            threshold=args.threshold,
        )
    except (ModelImportError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return _report_import(settings, entry)


def _report_import(settings: Settings, entry: CatalogEntry) -> int:
    tagger = entry.tagger
    if tagger is None or tagger.tags_file is None:  # both importers always write a multilabel tagger
        raise AssertionError(f"imported entry {entry.name} has no multilabel tagger block")
    tags = [
        t for t in (entry.folder / tagger.tags_file).read_text(encoding="utf-8").splitlines() if t.strip()
    ]
    print(
        f"imported {entry.name}: {tagger.display_name} version {tagger.version:g}, identifier "
        f"{tagger.identifier}, {len(tags)} tags in {', '.join(tagger.categories)}, input "
        f"{entry.input.width}x{entry.input.height}"
    )
    print(f"  entry:         {entry.folder}")
    print(f"  weights:       {entry.weights_path(settings.models_dir)} (sha256 {entry.weights.sha256})")
    print(f"  category CSVs: {entry.folder / tagger.categories_dir} (edit them to rename tags)")
    if settings.models and entry.name not in settings.models:
        print(f"add {entry.name} to STASH_VISION_MODELS to serve it (the list is set and lacks it)")
    cli_precision.after_fetch_or_import(settings, [entry])
    print("restart `stash-vision serve` to load it")
    return 0


def _serve(settings: Settings, _args: argparse.Namespace) -> int:
    from stash_vision.embedded import triton_binary
    from stash_vision.embedded.runtime_repository import WeightsMissing
    from stash_vision.embedded.supervisor import StartupError, Supervisor

    entries = served_entries(settings)
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
    cli_precision.add_parser(models)
    assemble_parser = models.add_parser("assemble", help="write a runnable Triton model repository")
    assemble_parser.add_argument("names", nargs="*")
    assemble_parser.add_argument("--out", required=True, help="output folder (replaced whole)")
    assemble_parser.add_argument(
        "--native", action="store_true", help="for the official Triton image (onnxruntime backend)"
    )
    skier233 = models.add_parser(
        "import-skier233",
        help="import a free skier233 AITagger model (YAML + TorchScript .pt + .tags.txt), converted to ONNX",
    )
    skier233.add_argument("yaml", help="the model's YAML (config/models/<name>.yaml of the original server)")
    skier233.add_argument(
        "--categories",
        metavar="DIR",
        help="folder of category CSVs (default: categories/ beside the YAML, then ../post_processing/categories)",
    )
    onnx = models.add_parser("import-onnx", help="import an ONNX multi-label classifier with a labels file")
    onnx.add_argument("onnx", help="the .onnx file (weights inside it, not in external data files)")
    onnx.add_argument("--labels", required=True, metavar="FILE", help="one label per line, in output order")
    onnx.add_argument("--category", required=True, metavar="NAME", help="AITagger category of its tags")
    onnx.add_argument("--size", required=True, type=int, metavar="N", help="input width and height")
    onnx.add_argument("--layout", choices=["NCHW", "NHWC"], default="NCHW")
    onnx.add_argument("--color", choices=["RGB", "BGR"], default="RGB", help="channel order")
    onnx.add_argument("--scale", type=float, default=1 / 255, help="pixel multiplier before mean/std")
    onnx.add_argument("--mean", type=float, nargs=3, default=[0.0, 0.0, 0.0], metavar=("R", "G", "B"))
    onnx.add_argument("--std", type=float, nargs=3, default=[1.0, 1.0, 1.0], metavar=("R", "G", "B"))
    onnx.add_argument("--resize", choices=["stretch", "letterbox", "resize_center_crop"], default="stretch")
    onnx.add_argument(
        "--interpolation", choices=["auto", "linear", "cubic", "area", "cubic_antialias"], default="auto"
    )
    onnx.add_argument(
        "--activation",
        choices=["sigmoid", "none"],
        default="sigmoid",
        help="sigmoid for logits; none when the model outputs probabilities",
    )
    onnx.add_argument("--name", help="model name (default: the ONNX file name)")
    onnx.add_argument("--identifier", type=int, default=0, help="AIModelInfo identifier")
    onnx.add_argument("--version", type=float, default=1.0, help="AIModelInfo version")
    onnx.add_argument("--threshold", type=float, default=0.5, help="default tag threshold")
    index = commands.add_parser("index", help="face indexes").add_subparsers(
        dest="index_command", required=True
    )
    build_parser_ = index.add_parser(
        "build",
        help="enrol FOLDER/<performer>/<images> into a new face index of the active profile (needs the server running)",
    )
    build_parser_.add_argument("folder", help="one sub-folder per performer; optional performer.json in each")
    cli_index.add_parsers(index)
    cli_jobs.add_parser(commands)
    return parser


def _index_build(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from stash_vision.catalog.serving import active_profile
    from stash_vision.indexing.builder import BuildError, build
    from stash_vision.server.faces.index.errors import FaceIndexError

    profile = active_profile(settings)
    try:
        report = asyncio.run(
            build(
                Path(args.folder),
                profile,
                settings.face_indexes_dir,
                settings.server_target,
                m=settings.face_index_m,
                ef_construction=settings.face_index_ef_construction,
                api_key=settings.api_key,
            )
        )
    except (BuildError, FaceIndexError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    rejected = ", ".join(f"{reason}: {n}" for reason, n in report.rejected.most_common()) or "none"
    print(
        f"index {report.version} of profile {profile.name}: {report.performers} performers, "
        f"{report.faces} faces from {report.images} images (rejected: {rejected}) -> {report.folder}"
    )
    if report.performers_without_faces:
        print(f"no usable face for: {', '.join(report.performers_without_faces)}")
    print("published as current; the server switches to it on its next face request")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as error:  # a bad STASH_VISION_* variable or key file: say which, no traceback
        print(f"error: invalid settings: {error}", file=sys.stderr)
        return 2
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    handlers = {
        "serve": _serve,
        "server": _server,
        "adapter": _adapter,
        "fetch": _models_fetch,
        "list": _models_list,
        "assemble": _models_assemble,
        "import-skier233": _models_import_skier233,
        "import-onnx": _models_import_onnx,
        "precision": cli_precision.run,
        "build": _index_build,
        "jobs": cli_jobs.run,
    }
    key = {"models": getattr(args, "models_command", ""), "index": getattr(args, "index_command", "")}.get(
        args.command, args.command
    )
    handler = cli_index.run if args.command == "index" and key in cli_index.COMMANDS else handlers[key]
    try:
        return handler(settings, args)
    except (CatalogError, ProfileError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
