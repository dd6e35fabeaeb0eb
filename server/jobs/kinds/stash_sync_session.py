"""What the items of one sync (or undo) job share: the Stash connection, checked before anything is
written, the tags by name (each missing one created once, however many items want it at the same
time), and the local performers by universal id (listed once per job)."""

from __future__ import annotations

import asyncio
import collections
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from stash_vision.server.connections.errors import SourceAuthFailed, SourceError, SourceQueryFailed
from stash_vision.server.connections.stash import StashConnection, endpoint_domain
from stash_vision.server.connections.stash_tagging import StashTagging
from stash_vision.server.errors import AccessDenied, BackendUnavailable, InvalidInput
from stash_vision.server.faces.matching import Match

from .stash_sync_plan import AI_PARENT, AI_TAGGED

_PROBE_TIMEOUT_S = 10.0
_SESSIONS_KEPT = 4  # jobs running at once are few; a finished job's session is dropped with the oldest


def connect(settings: Any, **options: Any) -> StashConnection:
    connection = StashConnection.from_settings(settings, **options)
    if connection is None:
        raise InvalidInput(
            "no Stash is connected: set STASH_VISION_STASH_URL (and STASH_VISION_STASH_API_KEY)"
        )
    return connection


def check_stash(settings: Any) -> None:
    """Blocking (a job's `parse` runs on a worker thread): the Stash answers and takes the key, so
    a job that would fail at its first write is refused before it starts."""

    async def probe() -> None:
        connection = connect(settings, timeout_s=_PROBE_TIMEOUT_S, retries=1)
        try:
            status = await connection.status()
        finally:
            await connection.aclose()
        if status.key_ok is False:
            raise AccessDenied(f"cannot write to Stash: {status.error}")
        if not status.reachable:
            raise BackendUnavailable(f"cannot write to Stash: {status.error}")

    asyncio.run(probe())


def stash_failure(error: SourceError) -> BackendUnavailable | AccessDenied:
    """A Stash error as the job kinds' errors (transports map those to statuses)."""
    if isinstance(error, SourceAuthFailed):
        return AccessDenied(str(error))
    return BackendUnavailable(str(error))


@dataclass(frozen=True)
class CreatedTag:
    id: str | None  # None in a dry run: the tag would be created
    name: str


@dataclass
class TagRegistry:
    """Tag names (and aliases), lower-cased as Stash compares them, to ids."""

    writer: StashTagging
    apply: bool
    known: dict[str, str] = field(default_factory=dict)
    planned: set[str] = field(default_factory=set)  # dry run: names it would create, reported once
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def load(self) -> None:
        async for tag in self.writer.tags():
            for name in (tag.name, *tag.aliases):
                self.known.setdefault(name.lower(), tag.id)

    async def ensure(self, name: str) -> tuple[str | None, list[CreatedTag]]:
        """The tag's id (None in a dry run for a tag it would create) and the tags created for it
        now: the parent `AI` first when it was missing too. Result tags go under `AI`, as the
        plugin makes them; `AI_Tagged` stands alone."""
        async with self.lock:
            made: list[CreatedTag] = []
            parent: str | None = None
            if name != AI_TAGGED and name.lower() != AI_PARENT.lower():
                parent, made = await self._one(AI_PARENT, None)
            tag_id, more = await self._one(name, parent)
            return tag_id, made + more

    async def _one(self, name: str, parent: str | None) -> tuple[str | None, list[CreatedTag]]:
        key = name.lower()
        if key in self.known:
            return self.known[key], []
        if not self.apply:
            if key in self.planned:
                return None, []
            self.planned.add(key)
            return None, [CreatedTag(None, name)]
        try:
            created = await self.writer.create_tag(name, parent)
        except SourceQueryFailed:
            # Made meanwhile by someone else (another job, a user): use theirs, it is not ours to undo.
            existing = await self.writer.tag_named(name)
            if existing is None:
                raise
            self.known[key] = existing.id
            return existing.id, []
        self.known[key] = created.id
        return created.id, [CreatedTag(created.id, created.name)]


@dataclass(frozen=True)
class LocalPerformer:
    id: str
    name: str


def has_marker_ends(version: str | None) -> bool:
    """Whether this Stash takes a marker's `end_seconds` (v0.28 and later; the plugin checks for a
    build after v0.27.2-76648). A version that cannot be read is taken as a current one."""
    match = re.match(r"v?(\d+)\.(\d+)\.(\d+)", version or "")
    if match is None:
        return True
    return tuple(int(part) for part in match.groups()) >= (0, 28, 0)


class SyncSession:
    def __init__(self, connection: StashConnection, apply: bool) -> None:
        self.connection = connection
        self.writer = StashTagging(connection)
        self.tags = TagRegistry(self.writer, apply)
        self.performers: dict[str, LocalPerformer] = {}
        self.marker_ends = True

    async def open(self, performers: bool) -> None:
        self.marker_ends = has_marker_ends((await self.connection.status()).version)
        await self.tags.load()
        if performers:
            async for performer in self.connection.performers():
                for universal in performer.universal_ids:
                    self.performers.setdefault(universal, LocalPerformer(performer.id, performer.name))

    def local_performer(self, match: Match) -> LocalPerformer | None:
        """The local performer of an identified one: by its universal id, else by any of its
        stash-box ids."""
        record = match.performer
        for universal in (record.id, *(f"{endpoint_domain(e)}:{s}" for e, s in record.stash_ids)):
            found = self.performers.get(universal)
            if found is not None:
                return found
        return None


class Sessions:
    """One session per job id, opened by the job's first item (the others wait for it)."""

    def __init__(self) -> None:
        self._open: collections.OrderedDict[str, SyncSession] = collections.OrderedDict()
        self._lock = asyncio.Lock()

    async def get(self, job_id: str, opener: Callable[[], Awaitable[SyncSession]]) -> SyncSession:
        async with self._lock:
            session = self._open.get(job_id)
            if session is None:
                session = await opener()
                self._open[job_id] = session
                while len(self._open) > _SESSIONS_KEPT:
                    _, old = self._open.popitem(last=False)
                    await old.connection.aclose()
            return session
