"""Pushing changed catalog records to peers at once, and passing on what peers pushed here.

What is pushed, when, and how a burst is batched is `catalog.record_news`
(pure); this module only keeps the timers, the per-peer outboxes and the
connections. `announce` is `LiveCatalog.announce`: it hears every record
the catalog took as newer, this agent's own writes (node.py `publish`,
external nodes) and peers' records alike, so a peer that takes a newer
record passes it on, and one that already had it stays quiet.

A wave sends every pending record to random live peers (the Replicator's
choice of peers) that its records' `told` hints do not name: `fanout(n)`
of them, as for LWW news, when it carries a record of this agent's own,
`relay_fanout(n)` when it only passes others' on (record_news.py says
why). The server hands each push's hint here (`heard`) right after
applying it, before the wave goes out. Removals of records this agent
owns (external nodes deregistered here: `announce_removal`) go in its
waves too, to the owner's fanout; nobody relays them, since a removal
relayed while its owner is alive is refused (absorb rule 5), so the
agents a wave skips get them by anti-entropy. Records for a peer wait in
its outbox while a push to it is under way and go with the next one,
newest version per node: one push at a time per peer, so a slow or dead
peer holds up only its own outbox. A failed push is counted and logged at
debug; the Serf `cv` tag and anti-entropy heal what it missed, and
`pulled` counts the records a `cv` pull brought before any push did.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable, Iterable

from gossamer.agent.sync.client import push_records
from gossamer.agent.sync.outbox import Outboxes
from gossamer.agent.sync.peer_link import PeerError
from gossamer.agent.sync.tls import AgentTls
from gossamer.catalog import record_news
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import NodeRecord
from gossamer.gossip import tags
from gossamer.gossip.members import Member

log = logging.getLogger("gossamer.replication")


class RecordPusher:
    """Pushes records this agent took as newer to fanout(n) random peers (module docstring)."""

    def __init__(
        self,
        *,
        self_origin: str,
        datacenter: str,
        candidates: Callable[[], list[Member]],
        fanout: Callable[[int], int],
        rng: random.Random,
        tls: AgentTls,
        timeout: float,
        gate: record_news.WaveGate | None = None,
    ) -> None:
        self._self = self_origin
        self._dc = datacenter
        self._candidates = candidates
        self._fanout = fanout
        self._rng = rng
        self._tls = tls
        self._timeout = timeout
        self._gate = gate or record_news.WaveGate()
        self._news = 0  # announcements since the last wave: more than one stretches the gap
        self._pending: dict[str, NodeRecord] = {}
        self._removed: dict[str, int] = {}  # own removals waiting: node -> tombstone version
        self._hints: dict[str, tuple[int, frozenset[str]]] = {}  # node -> (version, told)
        self._wave: asyncio.TimerHandle | None = None
        self._outbox: Outboxes[record_news.PushBox] = Outboxes(
            self._push, record_news.PushBox, "record-push"
        )
        self._stopped = False
        self.waves = 0  # choices of peers made
        self.pushes = 0  # push messages sent (each one request and its reply)
        self.records_sent = 0  # records those pushes carried
        self.removals_sent = 0  # tombstones those pushes carried
        self.bytes_sent = 0  # the push frames' size (TLS adds its records' overhead)
        self.failures = 0
        self.pulled = 0  # records a `cv` pull brought here as news (no push had)

    def listen(self, catalog: LiveCatalog) -> None:
        """Hear what `catalog` takes as newer and what it removes (the agent's wiring)."""
        catalog.announce = self.announce
        catalog.announce_removal = self.announce_removal

    def announce(self, records: list[NodeRecord]) -> None:
        """Records the catalog just took as newer: push those a peer would take (on the loop)."""
        fresh = record_news.passable(records, self._self)
        if fresh:
            record_news.coalesce(self._pending, fresh)
            self._news += 1
            self._schedule()

    def announce_removal(self, origin: str, node: str, version: int) -> None:
        """A record went here and left a tombstone at `version`: pushed if this agent owned it."""
        if origin == self._self:
            self._removed[node] = max(version, self._removed.get(node, 0))
            self._news += 1
            self._schedule()

    def heard(self, records: Iterable[NodeRecord], told: Iterable[str]) -> None:
        """A push brought `records` (applied here just now) with the hint `told`."""
        names = frozenset(list(told)[: record_news.MAX_TOLD])  # fewer names: only more relays
        for record in records:
            held = self._pending.get(record.node)
            if held is not None and held.version == record.version:
                self._hints[record.node] = (record.version, names)

    def _schedule(self) -> None:
        if self._stopped:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not on the loop (no caller today): the `cv` tag carries it
            return
        if self._wave is None:
            self._wave = loop.call_later(self._gate.delay(time.monotonic()), self._send_wave)

    def _send_wave(self) -> None:
        """Hand every pending record to random live peers' outboxes, sparing those told."""
        self._wave = None
        news, self._news = self._news, 0
        records, self._pending = self._pending, {}
        removed, self._removed = self._removed, {}
        hints, self._hints = self._hints, {}
        peers = self._candidates()
        if self._stopped or not (records or removed) or not peers:
            return
        own = removed or record_news.carries_own(records.values(), self._self)
        count = (self._fanout if own else record_news.relay_fanout)(len(peers))
        told = frozenset() if removed else record_news.told_by(records.values(), hints)
        untold = record_news.targets(peers, [p.name for p in peers], told)
        chosen = self._rng.sample(untold, min(count, len(untold)))
        if not chosen:
            return  # every peer was told already
        self.waves += 1
        self._gate.fired(time.monotonic(), news)
        hint = record_news.told_hint(told, (p.name for p in chosen), self._self)
        for peer in chosen:
            self._outbox.box(peer).add(records.values(), removed.items(), hint)
            self._outbox.flush(peer)

    async def _push(self, peer: Member, box: record_news.PushBox) -> None:
        """Send `peer` one box: the newest pending version of each node, removals, the hint."""
        records = list(box.records.values())
        removed = list(box.tombstones.items())
        port = tags.rpc_port(peer)
        assert port is not None  # candidates are eligible peers
        self.pushes += 1
        self.records_sent += len(records)
        self.removals_sent += len(removed)
        try:
            sent = await push_records(
                (peer.addr, port),
                self._dc,
                records,
                tombstones=removed,
                told=sorted(box.told or ()),
                tls=self._tls,
                timeout=self._timeout,
                peer_name=peer.name,
            )
        except PeerError as exc:
            self.failures += 1
            log.debug("pushing %d record(s) to %s failed: %s", len(records), peer.name, exc)
            return
        self.bytes_sent += sent  # not `+= await`: that reads the sum before the pushes overlap

    @property
    def idle(self) -> bool:
        """Nothing waits to be sent and no push is under way."""
        return self._wave is None and not (self._pending or self._removed) and not self._outbox.busy

    def stop(self) -> None:
        """Send nothing more; pushes under way are cancelled."""
        self._stopped = True
        if self._wave is not None:
            self._wave.cancel()
            self._wave = None
        self._outbox.cancel()
        self._pending.clear()
        self._removed.clear()
        self._hints.clear()

    def counts(self) -> dict[str, int]:
        """What the push has cost so far, for /v1/agent/self and the bench."""
        return {
            "Waves": self.waves,
            "Pushes": self.pushes,
            "Records": self.records_sent,
            "Removals": self.removals_sent,
            "Bytes": self.bytes_sent,
            "Failures": self.failures,
            "Pulled": self.pulled,
        }
