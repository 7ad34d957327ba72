"""The mesh CA's cluster-wide state: the replicated "ca" last-writer-wins map, kept in SQLite.

Roots (with their state: active or retiring), the sealed root keys, the CA
configuration, every agent's current intermediate and the revoked agents
(proxy/ca/ca_entries.py has the keys and values; proxy/ca/trust.py what
they mean). Any agent may write any entry; the map replicates over agent
RPC exactly as the intentions do (lww_replica.py holds the shared rules:
fsynced writes, absorbing, tombstones, announcing news).

Rules this class keeps:
- Every change gets the next index of the agent's one index table under
  the key `CA`, and a change of a root entry also under `CA_ROOTS`, so the
  roots and leaf watchers do not wake each time some agent publishes its
  intermediate; the decoded `state` is rebuilt on its first read after it.
- Listeners (`on_change`) hear of every change after the map moved; they
  must only note it (set an event): they run inside a peer's RPC.
- A peer's entry of a kind a later release holds is kept and passed on,
  never read (later_keys.py); keys of other shapes are refused, and so are
  malformed keys of the kinds this version reads.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from gossamer.agent.replicated.hlc_clock import HlcClock
from gossamer.agent.replicated.later_keys import later_key
from gossamer.agent.replicated.lww_replica import DecodedReplica
from gossamer.catalog import lww
from gossamer.catalog.store import CatalogStore
from gossamer.proxy.ca.ca_entries import (
    AGENT,
    CONFIG,
    MAP_NAME,
    REVOKED,
    ROOT,
    SEAL,
    CaState,
    known_key,
    read_state,
)

log = logging.getLogger("gossamer.ca")

CA = "connect-ca"  # blocking-query index key: any change of the map (configuration, revocations)
CA_ROOTS = "connect-ca-roots"  # ... and only changes of root entries (roots and leaf routes)


class CaStore(DecodedReplica[CaState]):
    def __init__(
        self,
        store: CatalogStore,
        *,
        node: str,
        wall_ms: Callable[[], int],
        notify: Callable[[set[str]], int],
        clock: HlcClock | None = None,
    ) -> None:
        self._notify = notify
        self._index = self._roots_index = 0
        super().__init__(
            store, MAP_NAME, node=node, wall_ms=wall_ms, log=log, what="CA entry", clock=clock
        )
        self._changed(list(self._map.entries))

    def accepts(self, key: str) -> bool:
        """A key this version reads, or a later release's kind: kept, never read
        (later_keys.py says why that is safe)."""
        return known_key(key) or later_key(key, (ROOT, SEAL, AGENT, REVOKED, CONFIG))

    def _decode(self, items: list[tuple[str, Any]]) -> CaState:
        return read_state(items)

    def _after_change(self, keys: list[str]) -> None:
        if any(k.startswith(ROOT) for k in keys):
            self._index = self._roots_index = self._notify({CA, CA_ROOTS})
        else:
            self._index = self._notify({CA})

    @property
    def index(self) -> int:
        """The index of the map's last change (CreateIndex/ModifyIndex of what it shows)."""
        return self._index

    @property
    def roots_index(self) -> int:
        """The index of the last change of the trusted roots (CreateIndex/ModifyIndex of roots)."""
        return self._roots_index

    def roots_expired(self) -> None:
        """A retiring root's trust ran out (time, not a write): wake the roots watchers."""
        self._roots_index = self._notify({CA_ROOTS})

    def write(self, writes: Sequence[tuple[str, Any]]) -> None:
        """Write entries as one batch, stamped after what each key holds; returns after fsync."""
        if not writes:
            return
        held = [e.stamp for key, _ in writes if (e := self._map.entries.get(key)) is not None]
        stamp = self._clock.tick(after=max(held, default=None))
        self._commit([(key, lww.Entry(stamp, value)) for key, value in writes])

    def delete(self, keys: Iterable[str]) -> None:
        """Tombstone entries (a dropped seal, a lost race's root)."""
        keys = [k for k in keys if (e := self._map.entries.get(k)) is not None and not e.deleted]
        if not keys:
            return
        held = [self._map.entries[k].stamp for k in keys]
        stamp = self._clock.tick(after=max(held))
        self._commit([(k, lww.Entry(stamp, None, deleted=True)) for k in keys])
