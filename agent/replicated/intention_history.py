"""The agent's audit trail of intention changes: bounded, persisted, newest first.

Every change of the intentions map that this agent applies — written here
or arrived from a peer — becomes one record: when and by which node it was
written (the winning entry's HLC stamp, so the same change carries the same
time and node on every agent), the pair, the operation, and the intention
before and after (Consul JSON without the locally computed fields).

Rules this module keeps:
- Records are ordered by their stamp, not by arrival: a change that arrives
  late from a peer still sits where it was written. The key is the stamp
  then the pair, so two changes never share a key.
- At most `LIMIT` records are kept; the oldest go first. They live in the
  agent's SQLite file as a local map (`HISTORY_MAP`, never replicated) and
  are loaded back at start, so a restart keeps the trail.
- A rewrite that changes nothing (same content) and loading the map at
  start are not changes and leave no record.
- Saving is not fsynced: the intention itself already is, and a record
  lost in a power cut costs an audit line, not a decision.
"""

from __future__ import annotations

import logging
from typing import Any

from gossamer.agent.replicated.intention_entries import rfc3339, to_value
from gossamer.catalog import lww
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.store import CatalogStore, StoreError
from gossamer.intentions.model import Intention

log = logging.getLogger("gossamer.intentions")

HISTORY_MAP = "intention-history"
LIMIT = 1000


def record_of(
    before: Intention | None, after: Intention | None, stamp: Timestamp
) -> dict[str, Any] | None:
    """The record of one change; None when nothing changed."""
    old = None if before is None else to_value(before)
    new = None if after is None else to_value(after)
    ixn = after or before
    if old == new or ixn is None:
        return None
    op = "create" if old is None else ("delete" if new is None else "update")
    return {
        "Time": rfc3339(stamp.wall_ms),
        "Node": stamp.node,
        "Source": ixn.source,
        "Destination": ixn.destination,
        "Op": op,
        "Before": old,
        "After": new,
    }


def record_key(stamp: Timestamp, ixn: Intention) -> str:
    """Sorts as the stamps do (fixed-width numbers), then by node and pair."""
    return f"{stamp.wall_ms:015d}.{stamp.logical:08d}.{stamp.node}.{ixn.source}=>{ixn.destination}"


class IntentionHistory:
    """The records, loaded from and saved to the agent's store."""

    def __init__(self, store: CatalogStore, limit: int = LIMIT) -> None:
        self._store = store
        self._limit = limit
        self._entries = dict(store.lww_entries(HISTORY_MAP).entries)

    def add(self, changes: list[tuple[Intention | None, Intention | None, Timestamp]]) -> None:
        """Record (before, after, stamp) changes, then drop the oldest past the limit."""
        fresh: list[tuple[str, lww.Entry]] = []
        for before, after, stamp in changes:
            record = record_of(before, after, stamp)
            subject = after or before
            if record is not None and subject is not None:
                fresh.append((record_key(stamp, subject), lww.Entry(stamp, record)))
        if not fresh:
            return
        self._entries.update(fresh)
        extra = sorted(self._entries)[: max(0, len(self._entries) - self._limit)]
        for key in extra:
            del self._entries[key]
        try:
            self._store.save_lww([e for e in fresh if e[0] in self._entries], HISTORY_MAP)
            if extra:
                self._store.delete_lww(extra, HISTORY_MAP)
        except StoreError as exc:  # kept in memory; the intention itself is stored
            log.warning("could not store %d intention history record(s): %s", len(fresh), exc)

    def records(self, source: str = "", destination: str = "") -> list[dict[str, Any]]:
        """Newest first; only the pair's when `source` and `destination` are given."""
        out = []
        for key in sorted(self._entries, reverse=True):
            value: dict[str, Any] = self._entries[key].value
            if source and (value["Source"], value["Destination"]) != (source, destination):
                continue
            out.append(value)
        return out
