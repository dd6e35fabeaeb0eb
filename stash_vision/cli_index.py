"""`stash-vision index list|show|diff|activate|rollback|delete|export|import`: the face index
versions of the active profile. Everything but `import` goes through the running server's
IndexService, so an activation is the server's checked live switch. `import` writes the version
into the data directory itself (like `index build`), verifying every checksum, and can then ask
the server to activate it. `index build` lives in cli.py."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import grpc

from stash_vision.server_channel import api_key_metadata, server_channel
from stash_vision.settings import Settings
from stash_vision.v1 import indexes_pb2, indexes_pb2_grpc

COMMANDS = ("list", "show", "diff", "activate", "rollback", "delete", "export", "import")
_TIMEOUT_S = 600.0


def add_parsers(index: Any) -> None:
    """The version commands, beside `build`, on the `index` sub-parsers."""
    index.add_parser("list", help="the index versions of the active profile, newest first")
    show = index.add_parser("show", help="one version in full (JSON)")
    show.add_argument("version")
    diff = index.add_parser("diff", help="performers and faces OTHER adds to / removes from BASE, per source")
    diff.add_argument("base")
    diff.add_argument("other")
    activate = index.add_parser("activate", help="make VERSION the serving index (checked, live)")
    activate.add_argument("version")
    index.add_parser("rollback", help="activate the previously active version")
    delete = index.add_parser("delete", help="delete a version (never the active one)")
    delete.add_argument("version")
    export = index.add_parser("export", help="write a version as a release .zip (Stash Sense layout)")
    export.add_argument("version")
    export.add_argument("-o", "--output", help="file to write (default: <profile>-<version>.zip here)")
    imported = index.add_parser(
        "import", help="import a release .zip as a new version (every checksum verified)"
    )
    imported.add_argument("zip")
    imported.add_argument("--activate", action="store_true", help="then activate it on the running server")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _line(v: indexes_pb2.IndexVersion) -> str:
    mark = "*" if v.active else ("<" if v.previous else " ")
    extra = "".join(
        f"  {label} {value}"
        for label, value in (("parent", v.parent_version), ("job", v.build_job_id), ("from", v.origin))
        if value
    )
    return (
        f"{mark} {v.version:<22} {v.created_at:<26} {v.performer_count:>7} performers {v.face_count:>8} faces "
        f"{_size(v.size_bytes):>10}  sources: {', '.join(v.sources) or '-'}{extra}"
    )


def _version_dict(v: indexes_pb2.IndexVersion) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    data: dict[str, Any] = MessageToDict(
        v, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    data["recipe"] = json.loads(data.pop("recipe_json") or "null")
    return data


async def _remote(settings: Settings, args: argparse.Namespace) -> int:
    channel = server_channel(settings)
    stub = indexes_pb2_grpc.IndexServiceStub(channel)
    options: dict[str, Any] = {"timeout": _TIMEOUT_S, "metadata": api_key_metadata(settings)}
    try:
        command = args.index_command
        if command == "list":
            listed = await stub.ListIndexVersions(indexes_pb2.ListIndexVersionsRequest(), **options)
            print(f"profile {listed.profile}: {len(listed.versions)} version(s) (* active, < previous)")
            for version in listed.versions:
                print(_line(version))
        elif command == "show":
            got = await stub.GetIndexVersion(
                indexes_pb2.GetIndexVersionRequest(version=args.version), **options
            )
            print(json.dumps(_version_dict(got.version), indent=2))
        elif command == "diff":
            d = await stub.DiffIndexVersions(
                indexes_pb2.DiffIndexVersionsRequest(base=args.base, other=args.other), **options
            )
            t = d.total
            print(
                f"{d.other} vs {d.base}: performers +{t.performers_added} -{t.performers_removed}, "
                f"faces +{t.faces_added} -{t.faces_removed}"
            )
            for s in d.sources:
                print(
                    f"  {s.source}: performers +{s.performers_added} -{s.performers_removed}, "
                    f"faces +{s.faces_added} -{s.faces_removed}"
                )
        elif command in ("activate", "rollback"):
            request = (
                indexes_pb2.ActivateIndexVersionRequest(rollback=True)
                if command == "rollback"
                else indexes_pb2.ActivateIndexVersionRequest(version=args.version)
            )
            done = await stub.ActivateIndexVersion(request, **options)
            replaced = f" (replacing {done.replaced_version})" if done.replaced_version else ""
            print(f"version {done.version.version} is now serving{replaced}")
        elif command == "delete":
            await stub.DeleteIndexVersion(
                indexes_pb2.DeleteIndexVersionRequest(version=args.version), **options
            )
            print(f"version {args.version} deleted")
        elif command == "export":
            return await _export(stub, args, options)
    except grpc.aio.AioRpcError as error:
        print(f"error: {error.details() or error.code().name} ({error.code().name})", file=sys.stderr)
        return 1
    finally:
        await channel.close()
    return 0


async def _export(stub: Any, args: argparse.Namespace, options: dict[str, Any]) -> int:
    call = stub.ExportIndexVersion(indexes_pb2.ExportIndexVersionRequest(version=args.version), **options)
    stream = call.__aiter__()
    head = await stream.__anext__()
    target = Path(args.output or head.file_name)
    partial = target.with_name(f".{target.name}.partial")
    try:
        with partial.open("wb") as out:
            async for chunk in stream:
                out.write(chunk.data)
        if partial.stat().st_size != head.size_bytes:
            raise OSError(f"got {partial.stat().st_size} of {head.size_bytes} bytes")
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    print(f"version {args.version} exported to {target} ({_size(head.size_bytes)})")
    return 0


def _import(settings: Settings, args: argparse.Namespace) -> int:
    from stash_vision.catalog.serving import active_profile
    from stash_vision.server.faces.index.errors import FaceIndexError
    from stash_vision.server.faces.index.release import import_release
    from stash_vision.server.faces.index.versions import apply_retention

    profile = active_profile(settings)
    root = settings.face_indexes_dir / profile.name
    try:
        version = import_release(Path(args.zip), root, profile.name, profile.recipe())
    except (FaceIndexError, OSError) as error:
        print(f"error: {error} (nothing was imported)", file=sys.stderr)
        return 1
    print(f"imported {args.zip} as version {version} of profile {profile.name} -> {root / version}")
    deleted = apply_retention(root, settings.face_index_keep_versions)
    if deleted:
        print(f"retention (keep {settings.face_index_keep_versions}): deleted {', '.join(deleted)}")
    if args.activate:
        args.index_command, args.version = "activate", version
        return asyncio.run(_remote(settings, args))
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    """Entry point of the version commands: the exit status."""
    if args.index_command == "import":
        return _import(settings, args)
    return asyncio.run(_remote(settings, args))
