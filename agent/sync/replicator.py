"""Keeping the catalog in step with peers: periodic anti-entropy and Serf-driven updates.

Every `interval` seconds (jittered) the Replicator runs one digest exchange
with a random live peer of this datacenter (DESIGN.md §4), which heals any
update that the direct path missed. Serf member events act at once
(member_follow.py): a failed member's serfHealth turns critical, a member
that came back turns passing, a member that left or was reaped is removed,
and a member whose `cv` tag (its catalog record version) is newer than the
record held here is pulled from that member directly. Nothing here is
fatal: a peer that cannot be reached is logged at debug and counted, and
the next round tries another.

The last-writer-wins maps (intentions) ride on the same rounds, and news of
them also spreads at once: whenever an agent's map gains entries, written
there or learned from a peer, `spread` pushes just those entries to
`fanout(n)` random live peers: 2*ceil(log2(n+1)), at least 3 (8 of 9 peers
in a 10-agent cluster). A peer that already had them gains nothing and
stays quiet, so one write costs at most that many small pushes per agent
and reaches everyone in a few RPC hops, not in rounds of the interval. With
a fanout of 3, a 10-agent bench saw one write in five miss some agent until
the next round (~2 s): each of ~10 informed agents picking 3 of 9 skips a
given agent with probability (6/9)^10 = 2%; picking 8 of 9, (1/9)^10. A
serf tag (as `cv` does for records) would cost a gossip broadcast per
change on every agent and wait on gossip's interval first.

Changed catalog records spread the same way (`records`, record_push.py):
the catalog announces every record it took as newer, and the pusher hands
it to fanout(n) random peers, which pass it on to peers the push did not
name if it is news to them. The `cv` tag pulls and the rounds above heal
whatever a push missed; a pull that brings news is counted (`pulled`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import time
from collections.abc import Callable, Iterable

from gossamer.agent.sync.client import exchange, hand_over
from gossamer.agent.sync.first_sync import EAGER_S, FirstSync
from gossamer.agent.sync.member_follow import MemberFollower
from gossamer.agent.sync.outbox import Outboxes
from gossamer.agent.sync.peer_link import PeerError, Replicas, rpc_address
from gossamer.agent.sync.record_push import RecordPusher
from gossamer.agent.sync.tls import AgentTls
from gossamer.catalog import lww
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.lww_sync import Entries
from gossamer.gossip import tags
from gossamer.gossip.members import Member
from gossamer.gossip.rpc_records import MemberEvent

log = logging.getLogger("gossamer.replication")

MIN_FANOUT = 3  # peers each agent hands a piece of LWW news to at once, at least


class Replicator:
    def __init__(
        self,
        catalog: LiveCatalog,
        *,
        self_origin: str,
        peers: Callable[[], list[Member]],
        rng: random.Random,
        tls: AgentTls,
        interval: float = 2.0,
        timeout: float = 5.0,
        replicas: Replicas | None = None,
        first_sync: FirstSync | None = None,
    ) -> None:
        self._catalog = catalog
        self.first_sync = first_sync or FirstSync(expected=False)
        self._replicas: Replicas = replicas or {}
        # LWW news waiting per peer: map -> key -> entry
        self._outbox: Outboxes[dict[str, dict[str, lww.Entry]]] = Outboxes(
            self._hand_over, dict, "hand-over"
        )
        self._self = self_origin
        self._tls = tls
        self._peers = peers
        self._rng = rng
        self._interval = interval
        self._timeout = timeout
        self._stopped = asyncio.Event()
        self.rounds = 0
        self.failures = 0
        self.round_seconds = 0.0  # summed over every round (their count is `rounds`)
        self.records = RecordPusher(
            self_origin=self_origin, datacenter=catalog.datacenter, candidates=self.candidates,
            fanout=fanout, rng=rng, tls=tls, timeout=timeout,
        )  # fmt: skip
        self.members = MemberFollower(
            catalog, self_origin=self_origin, tls=tls, timeout=timeout, records=self.records,
            failed=self._count_failure,
        )  # fmt: skip

    # -- periodic anti-entropy -------------------------------------------------------------

    async def run(self) -> None:
        """Exchange with a random peer every interval until `stop()`."""
        try:
            while not self._stopped.is_set():
                delay = self._interval * (0.5 + self._rng.random())
                if self.first_sync.pending():  # not caught up yet: sidecars' answers wait
                    delay = min(delay, EAGER_S)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopped.wait(), delay)
                if not self._stopped.is_set():
                    await self.round()
        finally:
            self._cancel_pulls()

    @property
    def tls(self) -> AgentTls:
        """What this agent speaks agent RPC with (the server shares it: one set of counters)."""
        return self._tls

    def stop(self) -> None:
        self._stopped.set()
        self.records.stop()
        self._cancel_pulls()
        self._tls.pool.close_all()

    def eligible(self, member: Member) -> bool:
        """A live agent of our datacenter, not us, that advertises an RPC port."""
        return (
            member.name != self._self
            and member.status == "alive"
            and tags.datacenter(member) == self._catalog.datacenter
            and tags.rpc_port(member) is not None
        )

    def candidates(self) -> list[Member]:
        """Every eligible peer, in name order (so a seeded choice repeats)."""
        return sorted((m for m in self._peers() if self.eligible(m)), key=lambda m: m.name)

    def pick_peer(self) -> Member | None:
        candidates = self.candidates()
        return self._rng.choice(candidates) if candidates else None

    async def round(self) -> bool:
        """One exchange with a random peer; False if there was none or it failed."""
        peer = self.pick_peer()
        if peer is None:
            return False
        self.rounds += 1
        started = time.monotonic()
        try:
            changed = await exchange(
                rpc_address(peer),
                self._catalog,
                self_origin=self._self,
                tls=self._tls,
                timeout=self._timeout,
                replicas=self._replicas,
                peer_name=peer.name,
            )
        except PeerError as exc:
            self.failures += 1
            log.debug("anti-entropy with %s failed: %s", peer.name, exc)
            return False
        finally:
            self.round_seconds += time.monotonic() - started  # /v1/agent/metrics reads it
        if changed:
            log.debug("anti-entropy with %s updated %d node(s)", peer.name, changed)
        self.first_sync.synced()
        return True

    # -- LWW news --------------------------------------------------------------------------

    def spread(self, name: str, entries: Entries) -> None:
        """Hand fresh entries of LWW map `name` to fanout(n) random live peers now (on the loop).

        News for a peer waits in its outbox while a hand-over to it is under way,
        and goes with the next one: one hand-over at a time per peer, so a burst
        (a rotation makes every agent publish) costs one connection per peer, the
        pooled one, and the entries of many changes travel in one message.
        """
        if self._stopped.is_set() or not entries:
            return
        candidates = self.candidates()
        for peer in self._rng.sample(candidates, fanout(len(candidates))):
            pending = self._outbox.box(peer).setdefault(name, {})
            for key, entry in entries:
                held = pending.get(key)
                if held is None or entry.stamp > held.stamp:
                    pending[key] = entry
            self._outbox.flush(peer)

    @property
    def handing_over(self) -> bool:
        """Whether a hand-over of LWW news to some peer is under way."""
        return self._outbox.busy

    async def _hand_over(self, peer: Member, box: dict[str, dict[str, lww.Entry]]) -> None:
        """Send `peer` one box of news, map by map."""
        for name, pending in box.items():
            await self._hand_over_map(peer, name, list(pending.items()))

    async def _hand_over_map(self, peer: Member, name: str, entries: Entries) -> None:
        try:
            await hand_over(
                rpc_address(peer),
                self._catalog.datacenter,
                name,
                entries,
                tls=self._tls,
                timeout=self._timeout,
                peer_name=peer.name,
            )
        except PeerError as exc:
            self.failures += 1
            log.debug("handing %s news to %s failed: %s", name, peer.name, exc)

    # -- Serf's view of members ------------------------------------------------------------

    def on_member_event(self, event: MemberEvent) -> None:
        """Follow one Serf member event (call from the event loop's thread)."""
        self.members.on_member_event(event)

    def reconcile(self, members: Iterable[Member]) -> None:
        """Catch up from a full member list (events are lost while serf's RPC is down)."""
        self.members.reconcile(members)

    def _count_failure(self) -> None:
        self.failures += 1

    def _cancel_pulls(self) -> None:
        self.members.cancel()
        self._outbox.cancel()

    @property
    def pulls_in_flight(self) -> int:
        return self.members.pulls_in_flight


def fanout(peers: int) -> int:
    """How many of `peers` get each piece of news: enough that none is skipped in practice."""
    return min(peers, max(MIN_FANOUT, 2 * math.ceil(math.log2(peers + 1))))
