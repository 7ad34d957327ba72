"""The peer chains agent RPC has verified, forgotten once they expire. Pure.

A peer presents the same chain on every connection, so `AgentTls` keeps the
result of a full check per chain. Each renewal of a peer's agent certificate
brings a new chain, and the old one is never asked for again: kept until a
size bound is reached, the expired chains piled up in the agent's memory.
Here each entry carries the instant its chain expires, and a min-heap of
those instants lets every `put` drop the expired ones in O(log n) each, so
what stays is about one chain per live peer. The bound still holds: when
full of unexpired chains, everything is forgotten at once (rechecking is
only slower, never wrong).
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from datetime import datetime
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class ExpiringMemory(Generic[K, V]):
    """Values by key, each until its expiry; at most `capacity` at a time."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._values: dict[K, tuple[datetime, V]] = {}
        self._expiries: list[tuple[datetime, int, K]] = []  # heap; the int breaks ties
        self._pushed = 0

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: K) -> V | None:
        found = self._values.get(key)
        return found[1] if found is not None else None

    def put(self, key: K, value: V, expires: datetime, now: datetime) -> None:
        """Remember `value` until `expires`; first forget whatever expired before `now`."""
        self.forget_expired(now)
        if key not in self._values and len(self._values) >= self._capacity:
            self._values.clear()
            self._expiries.clear()
        if self._values.get(key, (None,))[0] != expires:  # one heap entry per key and expiry
            self._pushed += 1
            heapq.heappush(self._expiries, (expires, self._pushed, key))
        self._values[key] = (expires, value)

    def forget_expired(self, now: datetime) -> None:
        heap = self._expiries
        while heap and heap[0][0] < now:
            expires, _, key = heapq.heappop(heap)
            found = self._values.get(key)
            if found is not None and found[0] == expires:
                del self._values[key]
