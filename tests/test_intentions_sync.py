"""Intentions over agent RPC: real mutual TLS on 127.0.0.1 between intention stores, no serf."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gossamer.agent.replicated.intention_entries import MAP_NAME
from gossamer.agent.replicated.intention_store import INTENTIONS
from gossamer.agent.sync.client import exchange, hand_over
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.sync_protocol import digest_request
from gossamer.intentions import Intention
from tests.harness.poll import eventually_async
from tests.harness.replication import SyncPeer, SyncPeers, talk

WALL = 1_700_000_000_000


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Callable[..., SyncPeer]]:
    async with SyncPeers(tmp_path) as make:

        def peer(name: str, *, lww: bool = True) -> SyncPeer:
            return make(name, intentions=lww, wall_ms=WALL)

        yield peer


def allow(source: str, destination: str, action: str = "allow") -> Intention:
    return Intention(source, destination, action=action)


async def test_one_exchange_moves_intentions_both_ways(peers: Callable[..., SyncPeer]) -> None:
    a, b = peers("a"), await peers("b").start()
    a.store.upsert(allow("web", "db"))
    b.store.upsert(allow("api", "db", "deny"))
    b.store.upsert(allow("old", "db"))
    b.store.delete("old", "db")
    assert await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls, replicas=a.replicas) == 2
    assert a.pairs() == b.pairs() == {("web", "db"): "allow", ("api", "db"): "deny"}
    assert a.store.snapshot().hash == b.store.snapshot().hash  # the tombstone came along too
    assert await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls, replicas=a.replicas) == 0


async def test_peers_without_intentions_still_sync_records(peers: Callable[..., SyncPeer]) -> None:
    old_server = await peers("old", lww=False).start()
    new = peers("new")
    new.store.upsert(allow("web", "db"))
    old_server.catalog.apply(
        [
            NodeRecord(
                node="old",
                node_id="id-old",
                datacenter="dc1",
                address="127.0.0.1",
                version=3,
                origin="old",
            )
        ]
    )
    await exchange(
        old_server.addr, new.catalog, self_origin="new", tls=new.tls, replicas=new.replicas
    )
    assert new.catalog.record("old") is not None  # the record came; the lww part was ignored

    new_server = await peers("srv").start()
    new_server.store.upsert(allow("api", "db"))
    (delta,) = await talk(new_server.addr, digest_request(new.catalog.state, "dc1"), tls=new.tls)
    assert (
        delta["t"] == "delta" and "lww" not in delta
    )  # an old client's digest: answered as before


async def test_a_malformed_lww_part_is_an_error_and_the_connection_stays(
    peers: Callable[..., SyncPeer],
) -> None:
    b = await peers("b").start()
    bad = {**digest_request(b.catalog.state, "dc1"), "lww": ["nope"]}
    push = {"t": "push", "dc": "dc1", "records": [], "lww": {MAP_NAME: {"entries": [{"k": 1}]}}}
    good = digest_request(b.catalog.state, "dc1")
    replies = await talk(b.addr, bad, push, good, tls=b.tls)
    assert [r["t"] for r in replies] == ["error", "error", "delta"]
    assert "lww" in replies[0]["msg"]


async def test_hand_over_wakes_a_blocking_watcher_on_the_receiver(
    peers: Callable[..., SyncPeer],
) -> None:
    a, b = peers("a"), await peers("b").start()
    index = b.catalog.index([INTENTIONS])
    watcher = asyncio.create_task(b.catalog.wait([INTENTIONS], index, 10))
    await eventually_async(lambda: b.catalog.watchers == 1)
    made = a.store.upsert(allow("web", "db", "deny"))
    await hand_over(
        b.addr,
        "dc1",
        MAP_NAME,
        [("web => db", a.store.snapshot().entries.entries["web => db"])],
        tls=a.tls,
    )
    await asyncio.wait_for(watcher, 2)
    got = b.store.get("web", "db")
    assert got is not None and got.id == made.id and got.modify_index > index


async def test_news_spreads_to_peers_at_once_and_stops(peers: Callable[..., SyncPeer]) -> None:
    nodes = [await peers(n).start() for n in ("a", "b", "c", "d", "e")]
    members = [n.member() for n in nodes]
    replicators = []
    for n in nodes:
        r = n.replicator(lambda: members, interval=3600, timeout=5.0, seed=n.name)
        n.store.announce = lambda entries, r=r: r.spread(MAP_NAME, entries)
        replicators.append(r)
    try:
        nodes[0].store.upsert(allow("web", "db"))
        await eventually_async(lambda: all(n.pairs() == {("web", "db"): "allow"} for n in nodes), 3)
        await eventually_async(lambda: all(not r.handing_over for r in replicators), 3)
        assert all(r.rounds == 0 for r in replicators)  # no periodic round was needed
        assert sum(r.failures for r in replicators) == 0
    finally:
        for r in replicators:
            r.stop()


async def test_a_burst_of_news_to_one_peer_goes_over_one_connection(
    peers: Callable[..., SyncPeer],
) -> None:
    """News for a peer with a hand-over under way waits and goes with the next one."""
    a, b = await peers("a").start(), await peers("b").start()
    loop = a.replicator(lambda: [a.member(), b.member()], interval=3600, timeout=5.0)
    a.store.announce = lambda entries: loop.spread(MAP_NAME, entries)
    try:
        pairs = [(f"web{i}", "db") for i in range(20)]
        for source, destination in pairs:  # twenty writes in one loop turn
            a.store.upsert(allow(source, destination))
        await eventually_async(lambda: len(b.pairs()) == 20, 5)
        await eventually_async(lambda: not loop.handing_over, 3)
        assert b.server.accepted == 1 and a.tls.pool.idle == 1  # one handshake in all
        assert loop.failures == 0
    finally:
        loop.stop()
