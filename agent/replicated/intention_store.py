"""The intentions every agent holds: a replicated last-writer-wins map, kept in SQLite.

Any agent may write any intention (DESIGN.md §4): each write is an entry of
the `intentions` LWW map keyed by its pair (agent/replicated/intention_entries.py),
stamped by this agent's hybrid logical clock, so two agents writing the
same pair at once pick the same winner everywhere. A delete is a tombstone,
collected after `TOMBSTONE_GRACE_MS` (72 h, serf's reconnect timeout).

Rules this class keeps:
- A write returns only once it is committed and fsynced to this agent's
  SQLite file (`save_lww(durable=True)`): what a client was told is
  written survives `kill -9` and a power cut. That is one fsync on the
  event loop per write, a few milliseconds; intention writes are rare.
- Every change, written here or learned from a peer, gets the next index of
  the agent's single index table (LiveCatalog's, through `notify`), which
  wakes blocking queries on `/v1/connect/intentions*` and sets CreateIndex
  and ModifyIndex; `current` (the IntentionSet decisions read) is rebuilt
  on its first read after a change. Only changed entries are decoded
  (intention_view.py holds the decoded side).
- An intention keeps its `ID` and `CreatedAt` across updates of its pair;
  a new pair gets a new UUID. `UpdatedAt` is the write's HLC wall time.
- News is announced (`announce`) so the replicator can hand it to a few
  peers at once, whether it was written here or just arrived from a peer.
- Every change after loading, local or replicated, is also recorded in the
  bounded, persisted history (intention_history.py).
The map plumbing (commit, absorb, tombstones, snapshot) is lww_replica.py's,
shared with the CA store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace

from gossamer.agent.replicated.hlc_clock import HlcClock
from gossamer.agent.replicated.intention_entries import (
    MAP_NAME,
    pair_key,
    rfc3339,
    split_key,
    to_value,
)
from gossamer.agent.replicated.intention_history import IntentionHistory
from gossamer.agent.replicated.intention_view import IntentionView
from gossamer.agent.replicated.lww_replica import LwwReplica
from gossamer.catalog import lww
from gossamer.catalog.lww_sync import Entries
from gossamer.catalog.store import CatalogStore
from gossamer.intentions.decide import IntentionSet, decide
from gossamer.intentions.model import ALLOW, Decision, HttpRequest, Intention
from gossamer.intentions.validate import IntentionError, check, validate

log = logging.getLogger("gossamer.intentions")

INTENTIONS = "intentions"  # the blocking-query index key of every intention route


class DuplicateIntention(Exception):
    """The pair already has an intention (a legacy create, or an update that moves a pair)."""

    def __init__(self, existing: Intention) -> None:
        super().__init__(f"duplicate intention found: {existing.summary()}")
        self.existing = existing


class IntentionNotFound(LookupError):
    def __init__(self, what: str) -> None:
        super().__init__(f"Intention not found: {what}")


class IntentionStore(LwwReplica):
    def __init__(
        self,
        store: CatalogStore,
        *,
        node: str,
        wall_ms: Callable[[], int],
        notify: Callable[[set[str]], int],
        new_id: Callable[[], str] = lambda: str(uuid.uuid4()),
        clock: HlcClock | None = None,
    ) -> None:
        """Load the stored map (collecting expired tombstones) and resume the clock past it."""
        self._notify = notify
        self._new_id = new_id
        self._view = IntentionView()
        self._history = IntentionHistory(store)
        self._recording = False  # loading the map is no change
        super().__init__(
            store, MAP_NAME, node=node, wall_ms=wall_ms, log=log, what="intention", clock=clock
        )
        self._changed(list(self._map.entries))
        self._recording = True

    # -- reading ---------------------------------------------------------------------------

    def get(self, source: str, destination: str) -> Intention | None:
        return self._view.get(pair_key(source, destination))

    def by_id(self, intention_id: str) -> Intention | None:
        key = self._view.key_of(intention_id)
        return None if key is None else self._view.get(key)

    def decide(
        self,
        source: str,
        destination: str,
        *,
        request: HttpRequest | None = None,
        default_allow: bool,
    ) -> Decision:
        return decide(
            self.current, source, destination, request=request, default_allow=default_allow
        )

    # -- writing (each returns after the fsync) --------------------------------------------

    def upsert(self, ixn: Intention) -> Intention:
        """Create or replace the intention of `ixn`'s pair (`/exact`); keeps its ID."""
        key = self._key(ixn.source, ixn.destination)
        return self._put(key, ixn, self._view.get(key))

    def create(self, ixn: Intention) -> Intention:
        """A new intention (legacy POST); DuplicateIntention if its pair has one."""
        key = self._key(ixn.source, ixn.destination)
        if (existing := self._view.get(key)) is not None:
            raise DuplicateIntention(existing)
        return self._put(key, ixn, None)

    def update(self, intention_id: str, ixn: Intention) -> Intention:
        """Replace the intention with this ID (legacy PUT); it may move to a free pair."""
        old_key = self._view.key_of(intention_id)
        if old_key is None:
            raise IntentionNotFound(intention_id)
        old = self._view.at(old_key)
        key = self._key(ixn.source, ixn.destination)
        if key == old_key:
            return self._put(key, ixn, old)
        if (existing := self._view.get(key)) is not None:
            raise DuplicateIntention(existing)
        return self._put(key, ixn, old, moved_from=old_key)

    def delete(self, source: str, destination: str) -> Intention | None:
        """Delete the pair's intention; returns what was there.

        A tombstone is written even when nothing is held here: an intention
        created elsewhere a moment ago and not yet arrived is deleted too.
        """
        key = self._key(source, destination)
        held = self._map.entries.get(key)
        if held is not None and held.deleted:
            return None
        current = self._view.get(key)
        stamp = self._clock.tick(after=held.stamp if held else None)
        self._commit([(key, lww.Entry(stamp, None, deleted=True))])
        return current

    def delete_id(self, intention_id: str) -> Intention:
        found = self.by_id(intention_id)
        if found is None:
            raise IntentionNotFound(intention_id)
        self.delete(found.source, found.destination)
        return found

    def _key(self, source: str, destination: str) -> str:
        """The map key of a pair; IntentionError naming a bad name."""
        probe = Intention(source, destination, action=ALLOW)
        problems = [p for p in validate(probe) if p.field in ("SourceName", "DestinationName")]
        if problems:
            raise IntentionError(problems)
        return pair_key(source, destination)

    def _put(
        self, key: str, ixn: Intention, keep: Intention | None, moved_from: str = ""
    ) -> Intention:
        stamps = [e.stamp for k in (key, moved_from) if (e := self._map.entries.get(k))]
        stamp = self._clock.tick(after=max(stamps, default=None))
        now = rfc3339(stamp.wall_ms)
        stored = replace(
            ixn,
            id=keep.id if keep is not None and keep.id else self._new_id(),
            created_at=keep.created_at if keep is not None and keep.created_at else now,
            updated_at=now,
            create_index=0,
            modify_index=0,
        )
        check(stored)  # the HTTP edge validated already; a rule we cannot evaluate never lands
        writes: Entries = [(key, lww.Entry(stamp, to_value(stored)))]
        if moved_from:
            writes.insert(0, (moved_from, lww.Entry(stamp, None, deleted=True)))
        self._commit(writes)
        return self._view.at(key)

    # -- derived state ---------------------------------------------------------------------

    def accepts(self, key: str) -> bool:
        """Keys that are no pair would govern nothing and replicate forever."""
        return split_key(key) is not None

    def _changed(self, changed: list[str]) -> None:
        """Give the changed keys the next index and decode them again (see IntentionView)."""
        if not changed:
            return
        before = {key: self._view.get(key) for key in changed}
        self._view.refresh(self._map.entries, changed, self._notify({INTENTIONS}))
        if self._recording:
            stamps = {k: e.stamp for k in changed if (e := self._map.entries.get(k))}
            self._history.add([(before[k], self._view.get(k), stamps[k]) for k in stamps])

    @property
    def current(self) -> IntentionSet:
        """The decision index, rebuilt on the first read after a change."""
        return self._view.current

    @property
    def history(self) -> IntentionHistory:
        """The audit trail of changes (intention_history.py)."""
        return self._history
