"""Config entries every agent holds: the replicated "config-entries" LWW map, kept in SQLite.

Any agent may write any entry (no server tier, DESIGN.md §4), exactly as
intentions: one LWW entry per `(Kind, Name)` keyed `kind/name`, its value
the checked, normalised body (catalog/config_entries.py), stamped by the
agent's one HLC; a delete is a tombstone. The map plumbing (commit, absorb,
tombstones, snapshot) is lww_replica.py's.

Rules this class keeps:
- A write returns only once committed and fsynced (`_commit`), as every
  replicated write does.
- Every change, written here or absorbed, takes the next index of the
  agent's index table under `CONFIG` (blocking queries on `/v1/config/*`
  wake on it); an entry's `ModifyIndex` is that index, its `CreateIndex`
  the index at which this agent first held it (indexes are per agent, as
  every index in gossamer is).
- Check-and-set (`cas`) is Consul's: `cas=0` writes only when no entry is
  held, `cas=N` only when the held entry's ModifyIndex is N; a refused write
  returns False and changes nothing.
- A splitter or resolver write (or delete) that would leave a discovery
  chain unresolvable is refused with a 400 (config_entries.check_graph),
  checked against what this agent holds at the time.
- A value from a peer that does not read as an entry (a newer agent's kind)
  is kept in the map, so it replicates on, but not served; it is logged.
  Its key is taken when it is shaped `kind/name` (`LATER_KEY`), whatever the
  kind: refused at the key, as the release before service-resolver did, the
  entry was offered again every anti-entropy round, a warning each time,
  until this agent was upgraded, and was not passed on meanwhile.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from gossamer.agent.replicated.hlc_clock import HlcClock
from gossamer.agent.replicated.lww_replica import LwwReplica
from gossamer.catalog import lww
from gossamer.catalog.config_entries import (
    ConfigEntryError,
    check_graph,
    entry_key,
    read_entry,
    split_key,
)
from gossamer.catalog.store import CatalogStore

log = logging.getLogger("gossamer.config")

# A key of a kind a later release may hold: a Consul kind name, a slash, an entry name
LATER_KEY = re.compile(r"[a-z][a-z0-9-]{0,63}/[A-Za-z0-9]([A-Za-z0-9_.-]{0,254}[A-Za-z0-9])?")

MAP_NAME = "config-entries"
CONFIG = "config"  # the blocking-query index key of every /v1/config route


class ConfigEntryStore(LwwReplica):
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
        self._held: dict[str, dict[str, Any]] = {}  # key -> entry with its indexes
        super().__init__(
            store, MAP_NAME, node=node, wall_ms=wall_ms, log=log, what="config entry", clock=clock
        )
        self._changed(list(self._map.entries))

    # -- reading ---------------------------------------------------------------------------

    def get(self, kind: str, name: str) -> dict[str, Any] | None:
        """The entry with its CreateIndex and ModifyIndex, or None."""
        return self._held.get(entry_key(kind, name))

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Every entry of `kind`, by name."""
        prefix = entry_key(kind, "")
        return [e for k, e in sorted(self._held.items()) if k.startswith(prefix)]

    # -- writing (each returns after the fsync) --------------------------------------------

    def put(self, body: object, cas: int | None = None) -> bool:
        """Check `body` (ConfigEntryError) and store it; False when `cas` does not match."""
        entry = read_entry(body)
        key = entry_key(entry["Kind"], entry["Name"])
        if not self._cas_holds(key, cas):
            return False
        check_graph(self._graph(), entry["Kind"], entry["Name"], entry)
        held = self._map.entries.get(key)
        stamp = self._clock.tick(after=held.stamp if held is not None else None)
        self._commit([(key, lww.Entry(stamp, entry))])
        return True

    def delete(self, kind: str, name: str, cas: int | None = None) -> bool:
        """Write a tombstone (even for an entry not yet arrived here); False when `cas` fails."""
        key = entry_key(kind, name)
        if not self._cas_holds(key, cas):
            return False
        held = self._map.entries.get(key)
        if held is not None and held.deleted:
            return True
        check_graph(self._graph(), kind, name, None)
        stamp = self._clock.tick(after=held.stamp if held is not None else None)
        self._commit([(key, lww.Entry(stamp, None, deleted=True))])
        return True

    def _graph(self) -> dict[tuple[str, str], dict[str, Any]]:
        """The held entries by `(kind, name)`: what a write's chain check reads (Consul checks
        a discovery chain entry against the others when it is written)."""
        return {(e["Kind"], e["Name"]): e for e in self._held.values()}

    def _cas_holds(self, key: str, cas: int | None) -> bool:
        if cas is None:
            return True
        held = self._held.get(key)
        return held["ModifyIndex"] == cas if held is not None else cas == 0

    # -- derived state ---------------------------------------------------------------------

    def accepts(self, key: str) -> bool:
        return split_key(key) is not None or LATER_KEY.fullmatch(key) is not None

    def _changed(self, keys: list[str]) -> None:
        if not keys:
            return
        index = self._notify({CONFIG})
        for key in keys:
            before = self._held.pop(key, None)
            entry = self._map.entries.get(key)
            if entry is None or entry.deleted:
                continue
            try:
                value = read_entry(entry.value)
            except ConfigEntryError as exc:
                log.warning("config entry %s cannot be read, not served: %s", key, exc)
                continue
            created = before["CreateIndex"] if before is not None else index
            self._held[key] = value | {"CreateIndex": created, "ModifyIndex": index}
        self._tell_listeners()
