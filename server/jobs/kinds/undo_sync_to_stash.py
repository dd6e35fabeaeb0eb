"""`undo-sync-to-stash`: takes back exactly what one applied `sync-to-stash` job wrote.

Its items are the synced scenes and images that got something, each spelled out with what it got
(`scene:12 tags=4,5 markers=9 performers=3 created=5,1`), so the job's own item list says what it
removes and a restarted undo needs nothing but its items. Per item: the tag and performer links
the sync added are removed (`REMOVE` mode: links a user made stay), the markers it created and
that still exist are destroyed, and each tag the sync created is destroyed once nothing refers to
it any more — the last item to let go of a tag destroys it, then its parent `AI` the same way. A
tag the sync created that a user has since put on something else is kept."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from stash_vision.server.connections.errors import SourceError
from stash_vision.server.connections.stash_tagging import StashTagging
from stash_vision.server.errors import InvalidInput
from stash_vision.server.jobs.model import JobState
from stash_vision.server.jobs.store import JobStore

from .base import ItemOutcome, check_keys, current_job_id
from .stash_sync_plan import AI_PARENT, decode_undo_item, undo_item
from .stash_sync_session import Sessions, SyncSession, check_stash, connect, stash_failure

_KEYS = frozenset({"job_id"})
_SYNC_KIND = "sync-to-stash"
_PAGE = 200


@dataclass(frozen=True)
class UndoParams:
    job_id: str


class UndoSyncToStash:
    name = "undo-sync-to-stash"
    unit = "items"

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self.sessions = Sessions()

    def _store(self) -> JobStore:
        return JobStore(self.settings.jobs_db)

    def parse(self, params: Mapping[str, Any]) -> UndoParams:
        check_keys(params, _KEYS, self.name)
        job_id = params.get("job_id")
        if not isinstance(job_id, str) or not job_id:
            raise InvalidInput(f"job_id must name a {_SYNC_KIND} job, got {job_id!r}")
        store = self._store()
        try:
            job = store.get_job(job_id)  # JobNotFound names the id
        finally:
            store.close()
        if job.kind != _SYNC_KIND:
            raise InvalidInput(f"job {job_id} is a {job.kind} job; only a {_SYNC_KIND} job can be undone")
        if not job.params.get("apply"):
            raise InvalidInput(f"job {job_id} was a dry run (apply was not true): it changed nothing to undo")
        if not JobState(job.state).finished:
            raise InvalidInput(f"job {job_id} is {job.state}; undo it once it has ended (cancel it first)")
        check_stash(self.settings)
        return UndoParams(job_id)

    def items(self, params: UndoParams) -> Iterator[str]:
        """Two passes over the sync job's results: the tags it created, then each item's undo."""
        created: set[str] = set()
        parents: list[str] = []
        for result in self._results(params.job_id):
            for tag in result.get("tags_created", []):
                if tag.get("id") and result.get("applied"):
                    created.add(str(tag["id"]))
                    if str(tag.get("name", "")).lower() == AI_PARENT.lower():
                        parents.append(str(tag["id"]))
        for result in self._results(params.job_id):
            undo = undo_item(result, created, parents)
            if undo is not None:
                yield undo.encode()

    def _results(self, job_id: str) -> Iterator[dict[str, Any]]:
        store = self._store()
        try:
            token = ""
            while True:
                page = store.results(job_id, page_size=_PAGE, page_token=token)
                for record in page.items:
                    if record.result:
                        yield record.result
                token = page.next_page_token
                if not token:
                    return
        finally:
            store.close()

    async def run(self, params: UndoParams, item: str) -> ItemOutcome:
        undo = decode_undo_item(item)

        async def opener() -> SyncSession:
            return SyncSession(connect(self.settings), apply=True)

        try:
            session = await self.sessions.get(current_job_id(), opener)
            writer = session.writer
            present = await writer.item(undo.media, undo.id)
            await writer.change_links(undo.media, undo.id, "REMOVE", undo.tags, undo.performers)
            existing = {m.id for m in present.markers}
            destroyed = [m for m in undo.markers if m in existing]
            for marker_id in destroyed:
                await writer.destroy_marker(marker_id)
            tags_destroyed, tags_kept = await _destroy_unused(writer, undo.created)
        except SourceError as error:
            raise stash_failure(error) from None
        return ItemOutcome(
            {
                "media": undo.media,
                "id": undo.id,
                "tags_removed": list(undo.tags),
                "performers_removed": list(undo.performers),
                "markers_destroyed": destroyed,
                "markers_gone_already": [m for m in undo.markers if m not in existing],
                "tags_destroyed": tags_destroyed,
                "tags_still_used": tags_kept,
            }
        )


async def _destroy_unused(writer: StashTagging, created: tuple[str, ...]) -> tuple[list[str], list[str]]:
    """Destroys each created tag nothing refers to any more, children before parents: a second
    pass catches a parent whose last child went in the first."""
    destroyed: list[str] = []
    remaining = list(created)
    for _ in range(2):
        still: list[str] = []
        for tag_id in remaining:
            usage = await writer.tag_usage(tag_id)
            if usage is None:
                continue  # another item destroyed it already
            if usage.uses:
                still.append(tag_id)
                continue
            try:
                await writer.destroy_tag(tag_id)
            except SourceError:
                if await writer.tag_usage(tag_id) is not None:
                    raise
                continue  # another item destroyed it meanwhile
            destroyed.append(tag_id)
        remaining = still
    return destroyed, remaining
