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

Memory is bounded: one entry per distinct query (a newer index replaces the
older entry), at most `max_entries` entries and `max_bytes` of bodies, the
least recently used evicted first. No I/O and no clock here.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable

QueryKey = tuple[str, tuple[tuple[str, str], ...]]
NOT_PART_OF_THE_ANSWER = frozenset({"index", "wait"})


def query_key(path: str, params: Iterable[tuple[str, str]]) -> QueryKey:
    """What identifies an answer: the path and the sorted parameters that shape it."""
    kept = sorted((k, v) for k, v in params if k not in NOT_PART_OF_THE_ANSWER)
    return path, tuple(kept)


class PreparedAnswers:
    """Encoded answers by query, each valid for one index; LRU-bounded by count and bytes."""

    def __init__(self, max_entries: int = 4096, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[QueryKey, tuple[int, bytes]] = OrderedDict()
        self.held_bytes = 0
        self.hits = 0
        self.encodes = 0

    def get(self, key: QueryKey, index: int) -> bytes | None:
        found = self._entries.get(key)
        if found is None or found[0] != index:
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found[1]

    def put(self, key: QueryKey, index: int, body: bytes) -> None:
        self.encodes += 1
        if len(body) > self.max_bytes:
            return
        self._drop(key)
        self._entries[key] = (index, body)
        self.held_bytes += len(body)
        while len(self._entries) > self.max_entries or self.held_bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        self._entries.clear()
        self.held_bytes = 0

    def _drop(self, key: QueryKey) -> None:
        old = self._entries.pop(key, None)
        if old is not None:
            self.held_bytes -= len(old[1])

    def __len__(self) -> int:
        return len(self._entries)
