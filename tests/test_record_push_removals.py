"""Pushed removals (agent/sync/record_push.py): an agent pushes the tombstones of records it
owns (an external node deregistered there) at once, and a pushed removal is checked as a
pulled one is (absorb rules 2 and 5, relay_check.py).

Real agents' sync sides over mutual TLS (tests/harness/replication.py), no anti-entropy.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gossamer.agent.sync import refusals
from gossamer.agent.sync.replicator import Replicator
from gossamer.catalog.model import NodeRecord
from tests.harness.poll import eventually_async
from tests.harness.replication import SyncPeer, SyncPeers, talk
from tests.harness.replication import node_record as record


@pytest.fixture
async def agents(tmp_path: Path) -> AsyncIterator[SyncPeers]:
    async with SyncPeers(tmp_path) as make:
        yield make


def external(node: str, version: int, owner: str) -> NodeRecord:
    """A node registered through the catalog API of agent `owner` (its origin)."""
    return dataclasses.replace(record(node, version, "db"), origin=owner)


def pushing(peers: list[SyncPeer]) -> list[Replicator]:
    members = [p.member() for p in peers]
    return [p.replicator(lambda: members, interval=3600, push=True, seed=p.name) for p in peers]


def tomb_version(peer: SyncPeer, node: str) -> int | None:
    tomb = peer.catalog.state.tombstones.get("dc1", {}).get(node)
    return tomb.version if tomb is not None else None


async def test_an_owner_pushes_the_removal_of_its_external_node(agents: SyncPeers) -> None:
    peers = [await agents(n).start() for n in "abcd"]
    loops = pushing(peers)
    a = peers[0]
    a.catalog.apply([external("ext", 2, "a")])
    await eventually_async(lambda: all(p.has("ext", 2) for p in peers), 10)
    a.catalog.remove("ext", "deregistered", version=3)
    await eventually_async(lambda: all(p.catalog.record("ext") is None for p in peers), 10)
    assert [tomb_version(p, "ext") for p in peers] == [3] * 4
    assert all(r.rounds == 0 and r.records.failures == 0 for r in loops)
    assert loops[0].records.removals_sent == 3  # fanout(3): all three peers, from the owner
    assert sum(r.records.removals_sent for r in loops[1:]) == 0  # nobody relays a removal


async def test_a_node_that_left_is_not_pushed_by_the_agents_that_saw_it_go(
    agents: SyncPeers,
) -> None:
    """Every agent hears Serf's leave itself; a removal of another owner's record stays put."""
    a, b = [await agents(n).start() for n in "ab"]
    loops = pushing([a, b])
    a.catalog.apply([record("gone", 5)], self_origin="a")
    a.catalog.remove("gone", "left", version=5)
    assert a.catalog.record("gone") is None
    assert loops[0].records.idle and loops[0].records.removals_sent == 0


async def test_a_pushed_removal_is_checked_as_a_pulled_one(agents: SyncPeers) -> None:
    """x pushes the removal of a's external node to b: refused while a is alive in b's view
    (rule 5, counted as live-removal); a's own push of it is taken; an older one buries
    nothing newer (rule 2)."""
    b = await agents("b", alive=lambda name: name == "a").start()
    b.catalog.apply([external("ext", 4, "a")], self_origin="b")
    x, a = agents.tls_for("x"), agents.tls_for("a")
    removal = {"t": "push", "dc": "dc1", "records": [], "tombstones": [["ext", 4]]}
    (reply,) = await talk(b.addr, removal, tls=x)
    assert reply["t"] == "ok" and b.has("ext", 4)
    assert b.server.refusals[refusals.LIVE_REMOVAL] == 1
    older = {**removal, "tombstones": [["ext", 3]]}
    (reply,) = await talk(b.addr, older, tls=a)
    assert b.has("ext", 4)  # a record newer than the tombstone stays
    (reply,) = await talk(b.addr, {**removal, "told": ["a", "c"]}, tls=a)
    assert reply["t"] == "ok" and b.catalog.record("ext") is None and tomb_version(b, "ext") == 4
    bad = {**removal, "told": "everyone"}
    (reply,) = await talk(b.addr, bad, tls=a)
    assert reply["t"] == "error" and "told" in str(reply["msg"])
