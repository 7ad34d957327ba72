"""Prepared HTTP answers: a read's JSON bytes, encoded once per catalog change and query.

The hot read endpoints (health service, catalog service, catalog services)
answer from here when the catalog has not changed since the same query was
last answered: the key is the path and every query parameter but `index`
and `wait` (they say how to wait, not what to answer), and an entry is good
only for the agent's modification index it was built at. That index rises
on every change of the catalog (not only of the keys the query reads: rows
carry their node's index, which another service's change moves), so an
equal index means an equal answer. A thousand watchers woken by one change
cost one encode: the first builds, the rest find it.

`/v1/agent/services` keeps its answers here too, stamped not by the catalog
index but by what its body reads (local_routes.py): the local registry's
generation and the config entries' index; its content hash is kept with the
bytes as the entry's `note`, so a read computes neither.

Memory is bounded: one entry per distinct query (a newer index replaces the
older entry), at most `max_entries` entries and `max_bytes` of bodies, the
least recently used evicted first. No I/O and no clock here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable, Iterable

QueryKey = tuple[str, tuple[tuple[str, str], ...]]
Stamp = Hashable  # what an answer was built from: an index, or a tuple of generations
NOT_PART_OF_THE_ANSWER = frozenset({"index", "wait", "hash"})  # how to wait, not what to answer


def query_key(path: str, params: Iterable[tuple[str, str]]) -> QueryKey:
    """What identifies an answer: the path and the sorted parameters that shape it."""
    kept = sorted((k, v) for k, v in params if k not in NOT_PART_OF_THE_ANSWER)
    return path, tuple(kept)


class PreparedAnswers:
    """Encoded answers by query, each valid for one stamp; LRU-bounded by count and bytes."""

    def __init__(self, max_entries: int = 4096, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[QueryKey, tuple[Stamp, bytes, str]] = OrderedDict()
        self.held_bytes = 0
        self.hits = 0
        self.encodes = 0

    def get(self, key: QueryKey, stamp: Stamp) -> bytes | None:
        found = self.get_noted(key, stamp)
        return None if found is None else found[0]

    def get_noted(self, key: QueryKey, stamp: Stamp) -> tuple[bytes, str] | None:
        """The body and the note it was put with, if built at `stamp`."""
        found = self._entries.get(key)
        if found is None or found[0] != stamp:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found[1], found[2]

    def put(self, key: QueryKey, stamp: Stamp, body: bytes, note: str = "") -> None:
        self.encodes += 1
        size = len(body) + len(note)
        if size > self.max_bytes:
            return
        self._drop(key)
        self._entries[key] = (stamp, body, note)
        self.held_bytes += size
        while len(self._entries) > self.max_entries or self.held_bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self.held_bytes = 0

    def _drop(self, key: QueryKey) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.held_bytes -= len(old[1]) + len(old[2])

    def __len__(self) -> int:
        return len(self._entries)
