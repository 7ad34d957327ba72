"""The catalog this agent answers from: merged state, per-key indexes, blocking waits.

Every change (a record from a peer, this node's own record, a node that
failed, left or came back) goes through here, so persisting it, bumping the
modification indexes of exactly the keys it touched and waking the blocking
queries that watch those keys happen once, in one place. Parked queries live
in one table (`waiters.py`): a future each, timers shared per 50 ms slot,
woken only by a change to a key they read; there is no task per watcher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable
from typing import TypeVar

from gossamer.catalog import absorb, merge, record_news
from gossamer.catalog.blocking import (
    IndexTable,
    changed_keys,
    health_keys,
    response_index,
    should_block,
)
from gossamer.catalog.model import NodeRecord, known_only
from gossamer.catalog.store import CatalogStore, StoreError
from gossamer.catalog.waiters import Waiters

log = logging.getLogger("gossamer.catalog")
T = TypeVar("T")


def _nothing() -> None:
    return None


class LiveCatalog:
    def __init__(self, datacenter: str, store: CatalogStore, *, wall_ms: Callable[[], int]) -> None:
        self.datacenter = datacenter
        self._store = store
        self._wall_ms = wall_ms
        self.state = store.load_state()
        self._stored = self.state  # what the file holds; behind `state` while writes fail
        self.indexes = IndexTable(start=1)
        self._waiters = Waiters()
        self.released = False  # the agent is stopping: no query parks (release_all)
        self._listeners: list[Callable[[], None]] = []
        # Signs this agent's own writes (agent/identity/record_signer.py); None: unsigned.
        self.sign_own: Callable[[NodeRecord], NodeRecord] | None = None
        # Hears every record `apply` took as newer (own or a peer's): the push (record_news.py).
        self.announce: Callable[[list[NodeRecord]], None] | None = None
        # Hears every record `remove` dropped: (its origin, node, tombstone version).
        self.announce_removal: Callable[[str, str, int], None] | None = None

    # -- reading ---------------------------------------------------------------------------

    def records(self) -> list[NodeRecord]:
        return merge.nodes(self.state, self.datacenter)

    def record(self, node: str) -> NodeRecord | None:
        return merge.get(self.state, self.datacenter, node)

    def held_version(self, node: str) -> int:
        """The newest version known here for `node`: its record's or its tombstone's."""
        return absorb.held_version(self.state, self.datacenter, node)

    def index(self, keys: Iterable[str]) -> int:
        """The X-Consul-Index for a query reading `keys` (never 0)."""
        return response_index(self.indexes.index_for_any(keys))

    def on_change(self, listener: Callable[[], None]) -> None:
        """Call `listener` after every committed change (views derived from the state)."""
        self._listeners.append(listener)

    # -- changing --------------------------------------------------------------------------

    def apply(
        self, records: Iterable[NodeRecord], *, self_origin: str = "", must_store: bool = False
    ) -> list[str]:
        """Merge records (from a peer, or this node's own); returns the nodes that changed.

        A peer's copy of a record this agent owns is ignored: only the owner
        publishes it (`self_origin` names this agent; empty for its own writes,
        which `sign_own` signs on the way in). `must_store`: the record is
        what a client is told is written (an external node), so a file that
        refuses it raises StoreError and nothing changes.
        """
        if not self_origin:  # an owner publishes only the fields it knows (model.known_only)
            records = [known_only(r) for r in records]
        if not self_origin and self.sign_own is not None:
            records = [self.sign_own(r) for r in records]
        before = self.state
        after, changed = absorb.absorb(before, records, self_origin=self_origin)
        self._commit(before, after, self._keys(before, after, changed), must_store)
        nodes = [node for _, node in changed]
        if nodes and self.announce is not None:
            self.announce(record_news.news(after, self.datacenter, nodes))
        return nodes

    def remove(self, node: str, reason: str, *, version: int = 0, must_store: bool = False) -> bool:
        """A node left or was reaped: drop its record now, keep a tombstone (`must_store`:
        as `apply`'s)."""
        before = self.state
        old = merge.get(before, self.datacenter, node)
        after, changed = merge.remove(
            before, self.datacenter, node, reason, at_ms=self._wall_ms(), version=version
        )
        self._commit(before, after, changed_keys(old, None) if changed else set(), must_store)
        if changed and old is not None and self.announce_removal is not None:
            tomb = after.tombstones[self.datacenter][node]
            self.announce_removal(old.origin, node, tomb.version)
        return changed

    def bury(self, tombstones: Iterable[tuple[str, int]], *, self_origin: str) -> list[str]:
        """Removals a peer relayed: (node, version). Returns the nodes removed here.

        Which tombstone wins is `absorb.bury`'s rule 2; this persists the
        result and wakes the watchers of the records that went.
        """
        before = self.state
        after, removed = absorb.bury(
            before, self.datacenter, tombstones, self_origin=self_origin, at_ms=self._wall_ms()
        )
        changed = [(self.datacenter, node) for node in removed]
        self._commit(before, after, self._keys(before, after, changed))
        return removed

    def set_failed(self, node: str, failed: bool) -> bool:
        """Serf's view of the node flipped: its serfHealth check follows."""
        flip = merge.mark_failed if failed else merge.mark_alive
        before = self.state
        after, changed = flip(before, self.datacenter, node)
        if changed:
            record = merge.get(after, self.datacenter, node)
            self._commit(before, after, health_keys(record) if record else set())
        return changed

    def touch(self, keys: set[str]) -> int:
        """State kept beside the records changed (intentions): bump `keys`, wake their watchers.

        One index table for the whole agent, as Consul has one Raft index, so
        X-Consul-Index only grows and stopping releases every watcher. Returns
        the change's index. Woken queries run only after the caller's current
        step, so the caller may update what they read right after this.
        """
        index = self.indexes.bump(keys)
        self._wake(keys)
        return index

    def _keys(
        self, before: merge.CatalogState, after: merge.CatalogState, changed: list[tuple[str, str]]
    ) -> set[str]:
        """The index keys touched by the (dc, node) that changed between two states."""
        return {
            key
            for dc, node in changed
            if dc == self.datacenter
            for key in changed_keys(merge.get(before, dc, node), merge.get(after, dc, node))
        }

    def _commit(
        self,
        before: merge.CatalogState,
        after: merge.CatalogState,
        keys: set[str],
        must_store: bool = False,
    ) -> None:
        if after is before:
            return
        self._persist(after, must_store)
        self.state = after
        for listener in self._listeners:
            listener()
        if keys:
            self.indexes.bump(keys)
            self._wake(keys)

    def _persist(self, after: merge.CatalogState, must_store: bool) -> None:
        """Write `after` to the file, or go on in memory when it cannot be written.

        A full or failing disk must not freeze the catalog: a check gone
        critical or a peer gone failed has to reach DNS, health queries and
        sidecars at once. What is held only in memory is a copy (the own
        record is rebuilt from the stored registrations at start, peers'
        records come back by anti-entropy), and the next write that works
        writes everything missed since. A change that `must_store` is refused
        instead (StoreError): acknowledged means stored.
        """
        try:
            self._store.sync_state(self._stored, after)
        except StoreError as exc:
            if must_store:
                raise
            if self._stored is self.state:  # the first failure of a run of them
                log.error("catalog changes are kept in memory only: %s", exc)
            return
        if self._stored is not self.state:
            log.warning("catalog store writable again: changes kept in memory are stored")
        self._stored = after

    # -- blocking queries ------------------------------------------------------------------

    def answer_when(
        self, keys: list[str], index: int, timeout: float, answer: Callable[[], T]
    ) -> asyncio.Future[T]:
        """A future of `answer()`, called once a key in `keys` changed past `index`, or after
        `timeout` seconds; at once when the caller's index is already stale or went
        backwards (Consul's rules: the client must re-read).

        `answer` runs in the step that reads the index too (never inside a change's
        caller), and what it raises is what awaiting the future raises.
        """
        if not self.released and should_block(index, self.indexes.index_for_any(keys)):
            return self._waiters.park(keys, timeout, answer)
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        try:
            future.set_result(answer())
        except Exception as exc:
            future.set_exception(exc)
        return future

    async def wait(self, keys: Iterable[str], index: int, timeout: float) -> None:
        """Return once a key in `keys` changed past `index`, or after `timeout` seconds
        (at once when the index is stale, as `answer_when`)."""
        await self.answer_when(list(keys), index, timeout, _nothing)

    def release_all(self) -> None:
        """Answer every blocking query now, and any asked from now on at once (the agent is
        stopping: `released`)."""
        self.released = True
        self._waiters.release_all()

    def _wake(self, keys: set[str]) -> None:
        self._waiters.wake(keys)

    @property
    def watchers(self) -> int:
        return len(self._waiters)
