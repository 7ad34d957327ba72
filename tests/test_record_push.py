"""Pushed catalog changes (catalog/record_news.py, agent/sync/record_push.py).

The pure rules first, then real agents' sync sides over mutual TLS
(tests/harness/replication.py) with no anti-entropy round at all: a change
reaches every peer by push and relays, a burst is coalesced, and a push of
other owners' records is taken only with their owners' valid signatures.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gossamer.agent.sync import refusals
from gossamer.agent.sync.replicator import Replicator
from gossamer.catalog import merge, record_news
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.merge import CatalogState
from gossamer.catalog.store import CatalogStore
from gossamer.catalog.wire import record_to_wire
from tests.harness.identity import Mesh
from tests.harness.poll import eventually_async
from tests.harness.replication import SyncPeer, SyncPeers, owner_signer, talk
from tests.harness.replication import node_record as record


@pytest.fixture
async def agents(tmp_path: Path) -> AsyncIterator[SyncPeers]:
    async with SyncPeers(tmp_path) as make:
        yield make


# -- the pure rules -------------------------------------------------------------------------


def test_news_is_what_is_held_now_for_the_changed_nodes() -> None:
    state, _ = merge.apply_many(CatalogState(), [record("a", 2), record("b", 1)])
    assert [r.version for r in record_news.news(state, "dc1", ["a", "gone"])] == [2]


def test_only_own_or_owner_signed_records_are_passed_on() -> None:
    signed = owner_signer(Mesh())(record("y", 1))
    out = record_news.passable([record("me", 1), record("x", 1), signed], "me")
    assert [r.node for r in out] == ["me", "y"]


def test_coalescing_keeps_the_newest_version_of_each_node() -> None:
    pending = {"a": record("a", 5)}
    record_news.coalesce(pending, [record("a", 3), record("a", 7), record("b", 1)])
    assert {n: r.version for n, r in pending.items()} == {"a": 7, "b": 1}


def test_the_wave_gate_sends_a_lone_change_at_once_and_stretches_for_a_burst() -> None:
    gate = record_news.WaveGate(min_gap=0.01, max_gap=0.08)
    assert gate.delay(100.0) == 0.0
    gate.fired(100.0)
    assert gate.delay(100.004) == pytest.approx(0.006)
    now, waves, news = 100.004, 0, 0
    while now < 101.0:  # news every millisecond for a second
        now += 0.001
        news += 1
        if gate.delay(now) == 0.0:
            gate.fired(now, news)
            waves, news = waves + 1, 0
    assert gate.gap == 0.08 and waves <= 16  # ~log2(80/10) doubling waves, then 1 per 80 ms
    gate.fired(200.0, 1)  # a lone change after the burst
    assert gate.gap == 0.01


def test_the_wave_gate_does_not_stretch_for_a_stream_of_separate_changes() -> None:
    """Changes 30 ms apart, each its own wave: every one goes out at once (no 200 ms gap)."""
    gate = record_news.WaveGate(min_gap=0.005, max_gap=0.2)
    now = 100.0
    for _ in range(100):
        assert gate.delay(now) == 0.0
        gate.fired(now, 1)
        now += 0.03
    assert gate.gap == 0.005


def test_the_live_catalog_announces_only_what_it_took_as_newer(tmp_path: Path) -> None:
    catalog = LiveCatalog("dc1", CatalogStore.open(tmp_path / "c.db"), wall_ms=lambda: 1)
    heard: list[list[tuple[str, int]]] = []
    catalog.announce = lambda records: heard.append([(r.node, r.version) for r in records])
    catalog.apply([record("a", 2), record("b", 1)], self_origin="me")
    catalog.apply([record("a", 2), record("a", 1)], self_origin="me")  # old news: nothing
    catalog.apply([record("me", 1)], self_origin="me")  # a peer's copy of our own: refused
    catalog.apply([record("me", 1)])  # our own write
    assert heard == [[("a", 2), ("b", 1)], [("me", 1)]]


# -- over real sockets ----------------------------------------------------------------------


async def started(agents: SyncPeers, names: str) -> list[SyncPeer]:
    return [await agents(n).start() for n in names]


def pushing(peers: list[SyncPeer]) -> list[Replicator]:
    """A pushing Replicator per peer that never runs an anti-entropy round (each its own
    seed: agents choosing peers in step would all skip the same one)."""
    members = [p.member() for p in peers]
    return [p.replicator(lambda: members, interval=3600, push=True, seed=p.name) for p in peers]


async def settled(loops: list[Replicator]) -> None:
    await eventually_async(lambda: all(r.records.idle for r in loops), 10)


async def test_a_change_reaches_five_peers_by_push_alone(agents: SyncPeers) -> None:
    peers = await started(agents, "abcdef")
    loops = pushing(peers)
    a = peers[0]
    a.catalog.apply([record("a", 2, "web")])
    await eventually_async(lambda: all(p.has("a", 2) for p in peers), 10)
    await settled(loops)
    assert all(r.rounds == 0 for r in loops)  # no anti-entropy round ran
    # The owner told all five (fanout(5) >= 5) and said so: no relay had anyone left to tell.
    assert [r.records.waves for r in loops] == [1, 0, 0, 0, 0, 0]
    assert all(r.records.failures == 0 for r in loops)
    assert sum(p.server.requests for p in peers) == sum(r.records.pushes for r in loops) == 5


async def test_the_agent_the_owner_skips_is_told_by_every_relay(agents: SyncPeers) -> None:
    """The cause of the bench's rare ~0.7 s change: in a 10-agent cluster the owner's wave
    goes to fanout(9) = 8 of its 9 peers, so one is always skipped, and relays picking
    their 5 peers at random all missed it about once in 660 changes; it then waited for
    the `cv` pull. With the `told` hint each relay hands it to exactly the skipped agent:
    all ten have it by push alone, whatever the random choices, in 8 + 8 messages."""
    peers = await started(agents, "abcdefghij")
    loops = pushing(peers)
    peers[0].catalog.apply([record("a", 2, "web")])
    await eventually_async(lambda: all(p.has("a", 2) for p in peers), 10)
    await settled(loops)
    waves = [r.records.waves for r in loops]
    pushes = [r.records.pushes for r in loops]
    assert all(r.rounds == 0 and r.records.failures == 0 for r in loops)
    assert pushes[0] == 8 and sorted(pushes[1:]) == [0] + [1] * 8, pushes
    assert waves[0] == 1 and sorted(waves[1:]) == [0] + [1] * 8, waves
    skipped = [p for p, n in zip(peers, pushes, strict=True) if n == 0]
    assert len(skipped) == 1 and skipped[0].server.requests == 8  # one push from each relay
    # Bytes add up over pushes that overlap (`x += await push()` kept only the last one's).
    one = max(r.records.bytes_sent for r in loops[1:])
    assert loops[0].records.bytes_sent > 7.5 * one


def test_a_relay_tells_only_peers_the_push_did_not_name() -> None:
    names = [f"n{i}" for i in range(10)]
    owner_hint = record_news.told_hint(frozenset(), names[1:9], "n0")  # n9 skipped
    hints = {"n0": (2, owner_hint)}
    assert record_news.told_by([record("n0", 2)], hints) == owner_hint
    assert record_news.told_by([record("n0", 3)], hints) == frozenset()  # another version
    assert record_news.told_by([record("n0", 2), record("x", 1)], hints) == frozenset()
    relay_peers = [n for n in names if n != "n1"]
    assert record_news.targets(relay_peers, relay_peers, owner_hint) == ["n9"]
    box = record_news.PushBox()
    box.add([record("n0", 2)], [], owner_hint)
    box.add([record("x", 1)], [("gone", 4)], frozenset({"n1", "n9"}))
    assert box.told == {"n1"} and box.tombstones == {"gone": 4}  # only what both waves told
    many = record_news.told_hint(frozenset(f"m{i}" for i in range(100)), [], "me")
    assert len(many) == record_news.MAX_TOLD


async def test_a_burst_of_registrations_is_coalesced(agents: SyncPeers) -> None:
    """150 registrations in a row cost a wave per gap (record_news.WaveGate), not one each."""
    peers = await started(agents, "abcd")
    loops = pushing(peers)
    a = peers[0]
    services: list[str] = []
    began = time.monotonic()
    for i in range(150):  # one registration per turn of the loop, as HTTP requests come
        services.append(f"svc-{i}")
        a.catalog.apply([record("a", i + 2, *services)])
        await asyncio.sleep(0)
    await eventually_async(lambda: all(p.has("a", 151) for p in peers), 10)
    await settled(loops)
    # Uncoalesced, each of the 150 registrations would reach each agent's 3 peers from
    # each agent: 450 pushes per agent. Batching by the wave gate (and one push in flight
    # per peer when the loop is busy) keeps it to a fraction, however slow this machine is.
    pushes = [r.records.pushes for r in loops]
    assert sum(p.server.requests for p in peers) == sum(pushes)
    assert pushes[0] <= 150 and sum(pushes) <= 600, (pushes, time.monotonic() - began)
    assert loops[0].records.waves < 150


async def test_a_push_of_other_owners_records_needs_their_signatures(agents: SyncPeers) -> None:
    """x pushes y's record to b: refused unsigned or forged, taken signed; b passes it on."""
    b, c = await started(agents, "bc")
    loops = pushing([b, c])
    sign = owner_signer(agents.mesh)
    x = agents.tls_for("x")
    unsigned = record_to_wire(record("y", 2, "evil"))
    (reply,) = await talk(b.addr, {"t": "push", "dc": "dc1", "records": [unsigned]}, tls=x)
    assert reply["t"] == "ok" and b.catalog.record("y") is None
    assert b.server.refusals[refusals.FOREIGN_RECORD] == 1
    good = sign(record("y", 3, "web"))
    forged = record_to_wire(dataclasses.replace(record("y", 4, "evil"), signed=good.signed))
    (reply,) = await talk(b.addr, {"t": "push", "dc": "dc1", "records": [forged]}, tls=x)
    assert b.catalog.record("y") is None
    assert b.server.refusals[refusals.UNSIGNED_RELAY] == 1
    push = {"t": "push", "dc": "dc1", "records": [record_to_wire(good)]}
    (reply,) = await talk(b.addr, push, tls=x)
    assert b.has("y", 3)
    await eventually_async(lambda: c.has("y", 3), 10)
    await settled(loops)
    assert [r.records.waves for r in loops] == [1, 0]  # b told c that b has it: c is quiet
    (reply,) = await talk(b.addr, push, tls=x)  # old news: not passed on again
    await settled(loops)
    assert [r.records.waves for r in loops] == [1, 0]


def test_relays_pass_a_change_on_to_fewer_peers_than_its_owner() -> None:
    from gossamer.agent.sync.replicator import fanout

    sizes = (1, 2, 3, 9, 999, 9999)
    assert [record_news.relay_fanout(n) for n in sizes] == [1, 2, 3, 5, 11, 15]
    assert all(record_news.relay_fanout(n) <= fanout(n) for n in sizes)
    assert record_news.carries_own([record("x", 1), record("me", 1)], "me")
    assert not record_news.carries_own([record("x", 1)], "me")
