"""Pushed catalog changes: which records an agent passes on at once, and how a burst is batched.

When a node's record changes, its owner pushes the new record to a few
random live peers at once, and every peer that takes it as newer passes it
on the same way (an epidemic), so a change reaches every agent in a few RPC
hops instead of waiting for Serf to gossip the `cv` tag and for peers to
pull. The tag and anti-entropy stay as the backstop. The agent's sockets
(agent/sync/record_push.py) do what this module decides.

Rules this module keeps:
- What is passed on is exactly what a merge just took as newer
  (`news`: the records held now for the nodes `LiveCatalog.apply` reported
  changed). A record not newer than the one held changes nothing, so it is
  not passed on: that ends the epidemic, and each agent passes a given
  version on at most once: the owner to fanout(n) peers, a relaying agent
  to `relay_fanout(n)`, so O(log N) messages per agent.
- Only records a peer will take from this agent are passed on: its own
  (origin = this agent) and other owners' that carry an owner signature
  (absorb rule 4); an unsigned foreign record would only be refused.
- A burst is coalesced: pending records are keyed by node and only the
  newest version of each is kept (`coalesce`); waves (one choice of peers
  for all pending records) go out at most once per `WaveGate` gap, the
  first at once. While news keeps coming the gap doubles up to `max_gap`,
  so hundreds of registrations in a row cost a handful of waves (about
  log2 of the burst's length over `min_gap`); after a quiet spell it is
  `min_gap` again, so a lone change never waits.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from gossamer.catalog import merge
from gossamer.catalog.merge import CatalogState
from gossamer.catalog.model import NodeRecord

MIN_RELAY_FANOUT = 3  # peers a relaying agent passes a change on to, at least
MIN_GAP_S = 0.005  # seconds between waves while news keeps coming, at first
MAX_GAP_S = 0.2  # ... doubling up to this


def news(state: CatalogState, datacenter: str, changed: Iterable[str]) -> list[NodeRecord]:
    """The records now held for the nodes that just changed (removed ones have none)."""
    held = (merge.get(state, datacenter, node) for node in changed)
    return [r for r in held if r is not None]


def news_to(state: CatalogState, records: Iterable[NodeRecord]) -> list[NodeRecord]:
    """The pushed records that would change `state`; the rest are old news, dropped before
    their signatures are checked (most pushes an agent gets bring what it already holds)."""
    return [r for r in records if merge.beats(state, r)]


def passable(records: Iterable[NodeRecord], self_origin: str) -> list[NodeRecord]:
    """The records a peer would take from this agent: its own, or owner-signed ones."""
    return [r for r in records if r.origin == self_origin or r.signed is not None]


def relay_fanout(peers: int) -> int:
    """How many of `peers` a relaying agent passes a change on to: ceil(log2(n+1)) + 1, >= 3.

    The owner hands its change to fanout(n) peers itself (replicator.py:
    2*ceil(log2(n+1)), 8 of 9 in a 10-agent cluster); every agent that
    takes it passes it on to this many more, which is what reaches the few
    the owner skipped. At n=9 the owner skips a given agent with
    probability 1/9 and the 8 relays all skip it with (4/9)^8, so it waits
    for the `cv` tag pull (about half a second) once in ~6,000 deliveries.
    With ceil(log2(n+1)) (4 of 9) it was once in ~1,000, and a 50-change
    bench run saw one such miss. Every message is CPU on a loopback
    cluster sharing two cores: with the owner's fanout for relays too (8
    pushes per agent per change) the median to all 10 agents was ~60 ms,
    with about half of that ~35 ms.
    """
    return min(peers, max(MIN_RELAY_FANOUT, math.ceil(math.log2(peers + 1)) + 1))


def carries_own(records: Iterable[NodeRecord], self_origin: str) -> bool:
    """Whether a wave holds a record this agent owns (then it goes to the owner's fanout)."""
    return any(r.origin == self_origin for r in records)


def coalesce(pending: dict[str, NodeRecord], records: Iterable[NodeRecord]) -> None:
    """Add `records` to `pending` (node -> record), keeping the newest version of each."""
    for record in records:
        held = pending.get(record.node)
        if held is None or record.version > held.version:
            pending[record.node] = record


@dataclass
class WaveGate:
    """When the next wave of pushes may go out (times are the caller's monotonic seconds)."""

    min_gap: float = MIN_GAP_S
    max_gap: float = MAX_GAP_S
    last: float | None = None
    gap: float = MIN_GAP_S

    def __post_init__(self) -> None:
        self.gap = self.min_gap

    def delay(self, now: float) -> float:
        """Seconds to wait before the next wave (0: send now)."""
        if self.last is None:
            return 0.0
        return max(0.0, self.last + self.gap - now)

    def fired(self, now: float) -> None:
        """A wave went out at `now`: double the gap if news is still coming, else reset it."""
        busy = self.last is not None and now - self.last < 2 * self.gap
        self.gap = min(self.gap * 2, self.max_gap) if busy else self.min_gap
        self.last = now
