"""One replicated last-writer-wins map kept in SQLite: what the intention and CA stores share.

A subclass names its map, says which keys it accepts from peers
(`accepts`) and what to redo when keys change (`_changed`); this base keeps
the map, its digest snapshot, commits and absorbs, and collects tombstones.
`DecodedReplica` is for a map read as one decoded value (the ACL and CA
maps): it keeps that value, drops it on a change and logs what cannot be read.

Rules this class keeps:
- A local write (`_commit`) returns only once it is committed and fsynced
  (`save_lww(durable=True)`): what a client was told is written survives
  `kill -9` and a power cut.
- A peer's entries (`absorb`) are merged by `catalog.lww`'s rules; tombstones
  past their grace are not taken back (we may have just collected them),
  and keys the subclass does not accept are refused and logged. What cannot
  be stored (a full or failing disk) is applied all the same and stored with
  the next absorb that can be: a deny written elsewhere must not wait for
  this agent's disk, and peers hold every absorbed entry durably anyway.
- News, written here or learned from a peer, is announced (`announce`) so
  the replicator hands it to a few peers at once.
- Stamps come from the agent's one HLC (shared between maps), which every
  absorbed stamp moves forward.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from gossamer.agent.replicated.hlc_clock import HlcClock
from gossamer.catalog import lww
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.lww_sync import TOMBSTONE_GRACE_MS, Entries, Snapshot, expired
from gossamer.catalog.store import CatalogStore, StoreError

GC_INTERVAL_S = 600.0


class LwwReplica:
    def __init__(
        self,
        store: CatalogStore,
        map_name: str,
        *,
        node: str,
        wall_ms: Callable[[], int],
        log: logging.Logger,
        what: str,
        clock: HlcClock | None = None,
    ) -> None:
        """Load the stored map (collecting expired tombstones); resume the clock past it.

        `what` names an entry in log lines ("intention", "CA entry").
        """
        self._store = store
        self._map_name = map_name
        self._wall_ms = wall_ms
        self._log = log
        self._what = what
        self._map = store.lww_entries(map_name)
        self._snapshot: Snapshot | None = None
        self._listeners: list[Callable[[], None]] = []
        self._unstored: set[str] = set()  # keys absorbed while the file refused them
        self.collect()
        stamps = [e.stamp for e in self._map.entries.values()]
        if clock is None:
            clock = HlcClock(store, node, wall_ms=wall_ms, seen=stamps)
        else:
            for stamp in stamps:
                clock.observe(stamp)
        self._clock = clock
        self.announce: Callable[[Entries], None] | None = None

    # -- what a subclass says ----------------------------------------------------------------

    def accepts(self, key: str) -> bool:
        """Whether a key from a peer has a shape this map holds."""
        return True

    def _changed(self, keys: list[str]) -> None:
        """Keys whose entry changed (written here or absorbed); called after the map moved."""

    def on_change(self, listener: Callable[[], None]) -> None:
        """`listener` hears of every change; it may run inside a peer's RPC, so it only notes it."""
        self._listeners.append(listener)

    def _tell_listeners(self) -> None:
        """A subclass's `_changed` calls this once its own view is up to date."""
        for listener in self._listeners:
            listener()

    # -- local writes ------------------------------------------------------------------------

    def _commit(self, writes: Entries) -> None:
        self._store.save_lww(writes, self._map_name, durable=True)
        self._map, changed = lww.merge_entries(self._map, writes)
        self._snapshot = None
        self._changed(changed)
        if self.announce is not None:
            self.announce(writes)

    # -- replication (catalog.lww_sync's Replica side) -----------------------------------------

    def snapshot(self) -> Snapshot:
        if self._snapshot is None:
            self._snapshot = Snapshot.of(self._map)
        return self._snapshot

    def absorb(self, entries: Entries) -> list[str]:
        """Merge entries from a peer; returns the keys that changed here."""
        now = self._wall_ms()
        fresh: Entries = []
        for key, entry in entries:
            if expired(entry, now, TOMBSTONE_GRACE_MS):
                continue
            if not self.accepts(key):
                self._log.warning("refusing a replicated %s with key %r", self._what, key[:100])
                continue
            fresh.append((key, entry))
        merged, changed = lww.merge_entries(self._map, fresh)
        if not changed:
            return []
        news = [(k, merged.entries[k]) for k in changed]
        # With those a failing disk made us keep in memory only, stored now if it can take them
        owed = [(k, merged.entries[k]) for k in sorted(self._unstored - set(changed))
                if k in merged.entries]  # fmt: skip
        try:
            self._store.save_lww(news + owed, self._map_name)
        except StoreError as exc:
            # Applied all the same: a deny, a deleted token or a new root written elsewhere
            # must not wait for this agent's disk. The file is behind memory until a save
            # works; a restart before that gets these entries again from the peers.
            if not self._unstored:
                self._log.error("replicated %ss kept in memory only: %s", self._what, exc)
            self._unstored.update(changed)
        else:
            if self._unstored:
                self._log.warning("replicated %ss kept in memory are stored now", self._what)
            self._unstored.clear()
        for _, entry in news:
            self._clock.observe(entry.stamp)
        self._map = merged
        self._snapshot = None
        self._changed(changed)
        if self.announce is not None:
            self.announce(news)
        return changed

    # -- tombstones --------------------------------------------------------------------------

    def collect(self) -> int:
        """Forget tombstones past their grace; returns how many."""
        before = self._map
        after = lww.gc(before, self._wall_ms(), TOMBSTONE_GRACE_MS)
        gone = [k for k in before.entries if k not in after.entries]
        if gone:
            self._store.delete_lww(gone, self._map_name)
            self._map = after
            self._snapshot = None
        return len(gone)

    async def collect_forever(self, interval: float = GC_INTERVAL_S) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                self.collect()
            except StoreError as exc:
                self._log.warning("collecting %s tombstones failed: %s", self._what, exc)

    @property
    def clock(self) -> HlcClock:
        """The agent's HLC (shared, so every map's stamps move one clock)."""
        return self._clock

    @property
    def clock_last(self) -> Timestamp:
        return self._clock.last


class Decoded(Protocol):
    """A whole map decoded: the entries it could not read are named, never raised."""

    @property
    def problems(self) -> Sequence[str]: ...


S = TypeVar("S", bound=Decoded)


class DecodedReplica(LwwReplica, Generic[S]):
    """A replica read as one decoded value (`state`), rebuilt on its first read after a change.

    A subclass says how to decode the live entries (`_decode`) and what else a
    change moves (`_after_change`: its indexes, other caches); listeners hear
    of the change after both.
    """

    _state: S | None = None

    def _decode(self, items: list[tuple[str, Any]]) -> S:
        raise NotImplementedError

    def _after_change(self, keys: list[str]) -> None:
        """Keys changed (never none); the decoded state is already dropped."""

    def _changed(self, keys: list[str]) -> None:
        if not keys:
            return
        self._state = None
        self._after_change(keys)
        self._tell_listeners()

    @property
    def state(self) -> S:
        """The map decoded (unreadable entries named in `problems` and logged, never raised)."""
        if self._state is None:
            self._state = self._decode(lww.items(self._map))
            for problem in self._state.problems:
                self._log.warning("unreadable %s: %s", self._what, problem)
        return self._state
