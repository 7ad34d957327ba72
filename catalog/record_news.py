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
- A push says whom the sender handed the same records to (`told`: the
  peers of its wave, itself and what it was told with them, at most
  `MAX_TOLD` names), and a relay hands them on only to peers not named
  there (`targets`). Without it the owner's wave (8 of 9 peers in a
  10-agent cluster) always skipped one agent, and that one got the change
  only if some relay happened to pick it: one change in ~660 waited for the
  `cv` pull (~0.7 s), seen as the bench's rare p99 outlier. Told, the eight
  relays all hand it to exactly the agent that was skipped, and a relay
  that has nobody left to tell stays quiet (1.6 messages per agent per
  change instead of 5.3). A box merged from several waves keeps only the
  names common to all (`PushBox`), so the hint never claims too much; a
  peer that names too many only spares us relays, the `cv` tag still heals.
- A burst is coalesced: pending records are keyed by node and only the
  newest version of each is kept (`coalesce`); waves (one choice of peers
  for all pending records) go out at most once per `WaveGate` gap, the
  first at once. While waves keep carrying several pieces of news each (a
  burst: more came while one waited) the gap doubles up to `max_gap`, so
  hundreds of registrations in a row cost a handful of waves (about log2
  of the burst's length over `min_gap`); a wave that carries a single
  piece of news puts the gap back to `min_gap`. So a steady stream of
  separate changes (each already spread before the next comes) never
  waits behind a stretched gap: an earlier rule doubled on the time between
  waves alone, and a stream of changes ~30 ms apart stretched the gap to
  200 ms (the p99 of bench/catalog_convergence.py).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from gossamer.catalog import merge
from gossamer.catalog.merge import CatalogState
from gossamer.catalog.model import NodeRecord

MIN_RELAY_FANOUT = 3  # peers a relaying agent passes a change on to, at least
MIN_GAP_S = 0.005  # seconds between waves while news keeps coming, at first
MAX_GAP_S = 0.2  # ... doubling up to this
MAX_TOLD = 64  # names a push's `told` hint carries at most (it only spares relays)

P = TypeVar("P")


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
    """How many of `peers` a relaying agent passes a change on to: ceil(log2(n+1)) + 1, >= 3,
    chosen among those the push did not name (`targets`; fewer if fewer are left).

    The owner hands its change to fanout(n) peers itself (replicator.py:
    2*ceil(log2(n+1)), 8 of 9 in a 10-agent cluster); every agent that
    takes it passes it on to this many more, which is what reaches the few
    the owner skipped. Before the `told` hint, relays chose among all peers:
    at n=9 the 8 relays all skipped the one agent the owner skipped with
    probability (4/9)^8, once in ~660 changes, and it waited for the `cv`
    pull. Every message is CPU on a loopback cluster sharing two cores:
    with the owner's fanout for relays too (8 pushes per agent per change)
    the median to all 10 agents was ~60 ms, with this one about half that.
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


def targets(peers: Sequence[P], names: Iterable[str], told: frozenset[str]) -> list[P]:
    """The `peers` (with their `names`) a wave may go to: those not told already."""
    return [p for p, name in zip(peers, names, strict=True) if name not in told]


def told_by(
    records: Iterable[NodeRecord], hints: dict[str, tuple[int, frozenset[str]]]
) -> frozenset[str]:
    """Who holds every one of `records` already: the names common to the hints that came
    with exactly these versions (node -> (version, told)); none when any record has none."""
    common: frozenset[str] | None = None
    for record in records:
        version, told = hints.get(record.node, (0, frozenset()))
        if version != record.version:
            return frozenset()
        common = told if common is None else common & told
    return common or frozenset()


def told_hint(told: frozenset[str], chosen: Iterable[str], self_name: str) -> frozenset[str]:
    """What a wave's pushes say was told: what was known, the peers chosen and the sender,
    cut to MAX_TOLD names (fewer names only means more relays)."""
    names = sorted(told | set(chosen) | {self_name})
    return frozenset(names[:MAX_TOLD])


@dataclass
class PushBox:
    """What waits for one peer: the newest record per node, removals, and who was told."""

    records: dict[str, NodeRecord] = field(default_factory=dict)
    tombstones: dict[str, int] = field(default_factory=dict)
    told: frozenset[str] | None = None  # None: nothing merged in yet

    def add(
        self,
        records: Iterable[NodeRecord],
        tombstones: Iterable[tuple[str, int]],
        told: frozenset[str],
    ) -> None:
        """Merge a wave's news; only the names every merged wave was told stay."""
        coalesce(self.records, records)
        for node, version in tombstones:
            self.tombstones[node] = max(version, self.tombstones.get(node, 0))
        self.told = told if self.told is None else self.told & told


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

    def fired(self, now: float, news: int = 1) -> None:
        """A wave carrying `news` pieces of news (changes heard since the last wave) went out
        at `now`: double the gap if several piled up while it waited, else reset it."""
        self.gap = min(self.gap * 2, self.max_gap) if news > 1 else self.min_gap
        self.last = now
