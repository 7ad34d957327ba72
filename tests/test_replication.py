"""Replication over agent RPC: real mutual TLS on 127.0.0.1 between LiveCatalogs, no serf."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gossamer.agent.sync.client import exchange, pull
from gossamer.agent.sync.peer_link import PeerError
from gossamer.agent.sync.tls import AgentTls
from gossamer.catalog import merge
from gossamer.catalog.live import LiveCatalog
from gossamer.catalog.store import CatalogStore
from gossamer.catalog.sync_protocol import FrameDecoder, encode, push_request
from gossamer.catalog.wire import record_to_wire
from gossamer.gossip.members import Member
from gossamer.gossip.rpc_records import MemberEvent
from tests.harness.identity import Mesh, MeshIdentity
from tests.harness.poll import eventually_async
from tests.harness.replication import SyncPeers, open_tls, owner_signer, talk
from tests.harness.replication import node_record as record


@pytest.fixture
async def agents(tmp_path: Path) -> AsyncIterator[SyncPeers]:
    async with SyncPeers(tmp_path) as make:
        yield make


async def closed_after(addr: tuple[str, int], payload: bytes, tls: AgentTls) -> bool:
    reader, writer = await open_tls(addr, tls)
    try:
        writer.write(payload)
        return await asyncio.wait_for(reader.read(65536), 5) == b""
    finally:
        writer.close()


# -- exchange and relays ----------------------------------------------------------------


async def test_a_record_applied_on_a_reaches_b_in_one_exchange(
    agents: SyncPeers,
) -> None:
    a, b = agents("a"), await agents("b").start()
    a.catalog.apply([record("a", 3, "web")])
    b.catalog.apply([record("b", 5, "db")])
    assert (
        await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls) == 1
    )  # b's record came back
    assert b.has("a", 3) and a.has("b", 5)
    assert await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls) == 0  # nothing left to do
    assert merge.digest(a.catalog.state, "dc1") == merge.digest(b.catalog.state, "dc1")


async def test_three_agents_converge_through_relays(agents: SyncPeers) -> None:
    a, b, c = [await agents(n).start() for n in "abc"]
    for agent, version in ((a, 1), (b, 2), (c, 3)):
        agent.catalog.apply([record(agent.name, version, f"svc-{agent.name}")])
    only_b = [b.member()]
    loops = [x.replicator(lambda: only_b, interval=0.05) for x in (a, c)]
    tasks = [asyncio.create_task(r.run()) for r in loops]
    try:
        await eventually_async(lambda: all(x.has("a", 1) and x.has("c", 3) for x in (a, b, c)))
        c.catalog.apply([record("c", 4, "svc-c", "new")])  # a later change also arrives
        await eventually_async(lambda: a.has("c", 4))
        assert all(r.rounds > 0 and r.failures == 0 for r in loops)
    finally:
        for r in loops:
            r.stop()
        await asyncio.gather(*tasks)
    assert a.has("b", 2) and c.has("b", 2)


async def test_pull_fetches_named_nodes(agents: SyncPeers) -> None:
    a, b = agents("a"), await agents("b").start()
    b.catalog.apply([record("b", 5), record("x", 2)])
    assert await pull(b.addr, a.catalog, ["b", "missing"], self_origin="a", tls=a.tls) == 1
    assert a.has("b", 5) and a.catalog.record("x") is None


# -- a hostile or broken peer -------------------------------------------------------------


async def test_garbage_and_oversized_frames_close_only_that_connection(
    agents: SyncPeers,
) -> None:
    a, b = agents("a"), await agents("b").start()
    b.catalog.apply([record("b", 1)])
    idle_reader, idle_writer = await open_tls(b.addr, a.tls)  # a bystander
    assert await closed_after(b.addr, b"\x00\x00\x00\x01\xc1", a.tls)  # 0xc1 is never msgpack
    assert await closed_after(b.addr, b"\xff\xff\xff\xff", a.tls)  # a 4 GiB frame
    assert await closed_after(b.addr, encode({"no": "type"}), a.tls)
    idle_writer.write(encode({"t": "pull", "dc": "dc1", "nodes": ["b"]}))
    assert FrameDecoder().feed(await asyncio.wait_for(idle_reader.read(65536), 5))[0]["t"] == (
        "records"
    )
    idle_writer.close()
    assert await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls) == 1


async def test_another_datacenter_gets_an_error_and_the_connection_stays(
    agents: SyncPeers,
) -> None:
    b = await agents("b").start()
    b.catalog.apply([record("b", 1)])
    wrong, right = await talk(
        b.addr,
        {"t": "digest", "dc": "dc2", "digest": {}},
        {"t": "pull", "dc": "dc1", "nodes": ["b"]},
        tls=agents.tls_for("t"),
    )
    assert wrong["t"] == "error" and "dc2" in wrong["msg"]
    assert right["t"] == "records" and len(right["records"]) == 1


async def test_the_client_hears_a_datacenter_mismatch(agents: SyncPeers, tmp_path: Path) -> None:
    b = await agents("b").start()
    elsewhere = LiveCatalog("dc2", CatalogStore.open(tmp_path / "z.db"), wall_ms=lambda: 1_000)
    with pytest.raises(PeerError, match="dc2"):
        await exchange(b.addr, elsewhere, self_origin="z", tls=agents.tls_for("z"))


async def test_a_peer_cannot_overwrite_our_own_record(agents: SyncPeers) -> None:
    b = await agents("b").start()
    b.catalog.apply([record("b", 1, "real")])
    forged = merge.apply_many(merge.CatalogState(), [record("b", 99, "forged"), record("x", 1)])[0]
    (reply,) = await talk(b.addr, push_request(forged, "dc1", ["b", "x"]), tls=agents.tls_for("x"))
    assert reply["t"] == "ok"
    assert b.catalog.record("b") == record("b", 1, "real")
    assert b.has("x", 1)  # other records of the same push are taken


async def test_bad_records_in_a_push_get_an_error(agents: SyncPeers) -> None:
    b = await agents("b").start()
    bad = {**record_to_wire(record("x", 1)), "v": 2}
    (reply,) = await talk(
        b.addr, {"t": "push", "dc": "dc1", "records": [bad]}, tls=agents.tls_for("x")
    )
    assert reply["t"] == "error"
    assert b.catalog.record("x") is None


async def test_idle_connections_are_dropped_and_the_cap_holds(agents: SyncPeers) -> None:
    a, b = agents("a"), await agents("b", idle_timeout=0.3, max_connections=2).start()
    b.catalog.apply([record("b", 1)])
    held = [await asyncio.open_connection(*b.addr) for _ in range(2)]
    await eventually_async(lambda: b.server.connections == 2)
    with pytest.raises(PeerError):
        await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls, timeout=2)
    assert b.server.refused >= 1
    for reader, writer in held:  # the idle timeout closes them
        assert await asyncio.wait_for(reader.read(65536), 5) == b""
        writer.close()
    await eventually_async(lambda: b.server.connections == 0)
    assert await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls) == 1


async def test_an_unreachable_peer_is_counted_not_fatal(agents: SyncPeers) -> None:
    a, b = agents("a"), agents("b")  # b never serves
    b.sock.close()
    loop = a.replicator(lambda: [b.member()])
    assert await loop.round() is False
    assert loop.failures == 1


# -- following serf ----------------------------------------------------------------------


async def test_peer_choice_skips_ourselves_others_and_the_unreachable(
    agents: SyncPeers,
) -> None:
    a = agents("a")
    good = Member("good", "127.0.0.1", 7946, {"dc": "dc1", "port": "8300"}, "alive")
    members = [
        a.member(),
        good,
        Member("failed", "127.0.0.1", 7946, {"dc": "dc1", "port": "8300"}, "failed"),
        Member("other-dc", "127.0.0.1", 7946, {"dc": "dc2", "port": "8300"}, "alive"),
        Member("no-port", "127.0.0.1", 7946, {"dc": "dc1"}, "alive"),
    ]
    loop = a.replicator(lambda: members)
    assert {getattr(loop.pick_peer(), "name", None) for _ in range(20)} == {"good"}
    assert a.replicator(lambda: [a.member()]).pick_peer() is None


async def test_failed_member_turns_critical_and_a_leave_removes_it(
    agents: SyncPeers,
) -> None:
    a, b = agents("a"), agents("b")
    a.catalog.apply([record("b", 4, "db")])
    loop = a.replicator(lambda: [])

    def health() -> str | None:
        held = a.catalog.record("b")
        check = merge.serf_health(a.catalog.state, held) if held else None
        return check.status if check else None

    loop.on_member_event(MemberEvent("member-failed", (b.member("failed"),)))
    assert health() == "critical"
    loop.on_member_event(MemberEvent("member-join", (b.member(cv="4"),)))
    assert health() == "passing"
    assert loop.pulls_in_flight == 0  # cv 4 is what we hold: nothing to pull
    loop.on_member_event(MemberEvent("member-leave", (b.member("left", cv="4"),)))
    assert a.catalog.record("b") is None
    a.catalog.apply([record("b", 4, "db")])  # a late relay cannot bring it back
    assert a.catalog.record("b") is None


async def test_a_newer_cv_tag_pulls_from_the_owner(agents: SyncPeers) -> None:
    a, b = agents("a"), await agents("b").start()
    a.catalog.apply([record("b", 1)])
    b.catalog.apply([record("b", 7, "web")])
    loop = a.replicator(lambda: [])  # no anti-entropy: only the event can bring it
    loop.on_member_event(MemberEvent("member-update", (b.member(cv="7"),)))
    await eventually_async(lambda: a.has("b", 7))
    await eventually_async(lambda: loop.pulls_in_flight == 0)
    assert loop.failures == 0


async def test_reconcile_catches_up_from_a_member_list(agents: SyncPeers) -> None:
    a, b, c = agents("a"), await agents("b").start(), agents("c")
    a.catalog.apply([record("c", 2)])
    b.catalog.apply([record("b", 3)])
    loop = a.replicator(lambda: [])
    loop.reconcile([b.member(cv="3"), c.member("failed")])
    assert a.catalog.state.failed == frozenset({("dc1", "c")})
    await eventually_async(lambda: a.has("b", 3))
    loop.reconcile([c.member("left")])
    assert a.catalog.record("c") is None


def test_news_fanout_grows_with_the_cluster_and_never_exceeds_it() -> None:
    from gossamer.agent.sync.replicator import fanout

    assert [fanout(n) for n in (0, 1, 2, 3, 9, 30, 1000)] == [0, 1, 2, 3, 8, 10, 20]


# -- what a peer relays for others (agent/sync/relay_check.py) ----------------------------


async def test_a_relayed_record_needs_its_owners_signature(agents: SyncPeers) -> None:
    """b relays x's record: taken when x signed it, refused unsigned or signed by another."""
    a, b = agents("a"), await agents("b", signed=False).start()
    b.catalog.apply([record("b", 1), record("x", 2, "web")])  # unsigned, as an old agent's
    assert await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls) == 1
    assert a.has("b", 1)  # the peer's own record needs no signature: TLS names its owner
    assert a.catalog.record("x") is None
    assert a.tls.refusals.counts()["unsigned-relay"] == 1
    forged = owner_signer(agents.mesh)(record("y", 2, "web"))
    assert forged.signed is not None
    b.catalog.apply([dataclasses.replace(record("x", 3, "evil"), signed=forged.signed)])
    await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.catalog.record("x") is None  # y's signature does not make x's record
    assert a.tls.refusals.counts()["unsigned-relay"] == 2
    b.catalog.apply([owner_signer(agents.mesh)(record("x", 4, "web"))])
    await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.has("x", 4)


async def test_a_signature_from_another_mesh_or_a_revoked_agent_is_refused(
    agents: SyncPeers,
) -> None:
    a, b = agents("a"), await agents("b", signed=False).start()
    b.catalog.apply([owner_signer(Mesh())(record("x", 2))])
    await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.catalog.record("x") is None and a.tls.refusals.counts()["unsigned-relay"] == 1
    b.catalog.apply([owner_signer(agents.mesh)(record("x", 3))])
    a_identity = a.tls.identity
    assert isinstance(a_identity, MeshIdentity)
    a_identity.revoke("x")
    await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.catalog.record("x") is None and a.tls.refusals.counts()["unsigned-relay"] == 2
    a_identity.revoked.clear()
    a_identity.generation += 1  # the cached refusal of x's chain is dropped with it
    await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.has("x", 3)


async def test_a_relayed_removal_of_a_node_whose_owner_is_alive_is_refused(
    agents: SyncPeers,
) -> None:
    alive = {"x"}
    a = agents("a", alive=lambda node: node in alive)
    b = await agents("b").start()
    a.catalog.apply([record("x", 2), record("z", 2)])
    b.catalog.apply([record("b", 1)])
    b.catalog.remove("x", "forged by b", version=5)
    b.catalog.remove("z", "z left", version=5)
    await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.has("x", 2)  # x is alive: only x speaks for its record
    assert a.catalog.record("z") is None  # z is gone from Serf: anyone may relay its removal
    assert a.tls.refusals.counts()["live-removal"] == 1
    alive.clear()
    await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.catalog.record("x") is None


async def test_the_client_refuses_an_agent_that_is_not_the_member_it_dialled(
    agents: SyncPeers,
) -> None:
    a, b = agents("a"), await agents("b").start()
    b.catalog.apply([record("b", 1)])
    with pytest.raises(PeerError, match="dialled member 'c', but agent 'b' answered"):
        await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls, peer_name="c")
    assert a.catalog.record("b") is None
    assert a.tls.refusals.counts()["wrong-agent"] == 1
    assert await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls, peer_name="b") == 1
