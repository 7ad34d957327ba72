"""Intentions over agent RPC: real TCP on 127.0.0.1 between intention stores, no serf."""

from __future__ import annotations

import asyncio
import random
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from gossamer.agent.replicated.intention_entries import MAP_NAME
from gossamer.agent.replicated.intention_store import INTENTIONS, IntentionStore
from gossamer.agent.sync.client import exchange, hand_over
from gossamer.agent.sync.replicator import Replicator
from gossamer.agent.sync.server import PeerRpcServer
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.model import NodeRecord
from gossamer.catalog.store import CatalogStore
from gossamer.catalog.sync_protocol import digest_request
from gossamer.gossip.members import Member
from gossamer.intentions import Intention
from tests.harness.peer_wire import talk
from tests.harness.poll import eventually_async

WALL = 1_700_000_000_000


class Peer:
    """A LiveCatalog and an IntentionStore on one SQLite file, served on a loopback port."""

    def __init__(self, name: str, root: Path, *, lww: bool = True) -> None:
        self.name = name
        db = CatalogStore.open(root / f"{name}.db")
        self.catalog = LiveCatalog("dc1", db, wall_ms=lambda: WALL)
        self.store = IntentionStore(db, node=name, wall_ms=lambda: WALL, notify=self.catalog.touch)
        self.replicas = {MAP_NAME: self.store} if lww else {}
        self.server = PeerRpcServer(self.catalog, self_origin=name, replicas=self.replicas)
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.sock.getsockname()[1]

    @property
    def addr(self) -> tuple[str, int]:
        return ("127.0.0.1", self.port)

    def member(self) -> Member:
        tags = {"dc": "dc1", "port": str(self.port)}
        return Member(name=self.name, addr="127.0.0.1", port=7946, tags=tags, status="alive")

    def pairs(self) -> dict[tuple[str, str], str | None]:
        return {i.pair: i.action for i in self.store.current}


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[Callable[..., Peer]]:
    made: list[Peer] = []

    def make(name: str, *, lww: bool = True) -> Peer:
        peer = Peer(name, tmp_path, lww=lww)
        made.append(peer)
        return peer

    yield make
    for peer in made:
        peer.server.close()
        peer.sock.close()
    for peer in made:
        await asyncio.wait_for(peer.server.wait_closed(), 5)


async def serving(peer: Peer) -> Peer:
    await peer.server.start(peer.sock)
    return peer


def allow(source: str, destination: str, action: str = "allow") -> Intention:
    return Intention(source, destination, action=action)


async def test_one_exchange_moves_intentions_both_ways(peers: Callable[..., Peer]) -> None:
    a, b = peers("a"), await serving(peers("b"))
    a.store.upsert(allow("web", "db"))
    b.store.upsert(allow("api", "db", "deny"))
    b.store.upsert(allow("old", "db"))
    b.store.delete("old", "db")
    assert await exchange(b.addr, a.catalog, self_origin="a", replicas=a.replicas) == 2
    assert a.pairs() == b.pairs() == {("web", "db"): "allow", ("api", "db"): "deny"}
    assert a.store.snapshot().hash == b.store.snapshot().hash  # the tombstone came along too
    assert await exchange(b.addr, a.catalog, self_origin="a", replicas=a.replicas) == 0


async def test_peers_without_intentions_still_sync_records(peers: Callable[..., Peer]) -> None:
    old_server = await serving(peers("old", lww=False))
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
    await exchange(old_server.addr, new.catalog, self_origin="new", replicas=new.replicas)
    assert new.catalog.record("old") is not None  # the record came; the lww part was ignored

    new_server = await serving(peers("srv"))
    new_server.store.upsert(allow("api", "db"))
    (delta,) = await talk(new_server.addr, digest_request(new.catalog.state, "dc1"))
    assert (
        delta["t"] == "delta" and "lww" not in delta
    )  # an old client's digest: answered as before


async def test_a_malformed_lww_part_is_an_error_and_the_connection_stays(
    peers: Callable[..., Peer],
) -> None:
    b = await serving(peers("b"))
    bad = {**digest_request(b.catalog.state, "dc1"), "lww": ["nope"]}
    push = {"t": "push", "dc": "dc1", "records": [], "lww": {MAP_NAME: {"entries": [{"k": 1}]}}}
    good = digest_request(b.catalog.state, "dc1")
    replies = await talk(b.addr, bad, push, good)
    assert [r["t"] for r in replies] == ["error", "error", "delta"]
    assert "lww" in replies[0]["msg"]


async def test_hand_over_wakes_a_blocking_watcher_on_the_receiver(
    peers: Callable[..., Peer],
) -> None:
    a, b = peers("a"), await serving(peers("b"))
    index = b.catalog.index([INTENTIONS])
    watcher = asyncio.create_task(b.catalog.wait([INTENTIONS], index, 10))
    await eventually_async(lambda: b.catalog.watchers == 1)
    made = a.store.upsert(allow("web", "db", "deny"))
    await hand_over(
        b.addr, "dc1", MAP_NAME, [("web => db", a.store.snapshot().entries.entries["web => db"])]
    )
    await asyncio.wait_for(watcher, 2)
    got = b.store.get("web", "db")
    assert got is not None and got.id == made.id and got.modify_index > index


async def test_news_spreads_to_peers_at_once_and_stops(peers: Callable[..., Peer]) -> None:
    nodes = [await serving(peers(n)) for n in ("a", "b", "c", "d", "e")]
    members = [n.member() for n in nodes]
    replicators = []
    for n in nodes:
        r = Replicator(
            n.catalog,
            self_origin=n.name,
            peers=lambda: members,
            rng=random.Random(n.name),
            interval=3600,
            replicas=n.replicas,
        )
        n.store.announce = lambda entries, r=r: r.spread(MAP_NAME, entries)
        replicators.append(r)
    try:
        nodes[0].store.upsert(allow("web", "db"))
        await eventually_async(lambda: all(n.pairs() == {("web", "db"): "allow"} for n in nodes), 3)
        await eventually_async(lambda: all(not r._handovers for r in replicators), 3)
        assert all(r.rounds == 0 for r in replicators)  # no periodic round was needed
        assert sum(r.failures for r in replicators) == 0
    finally:
        for r in replicators:
            r.stop()
