"""Agent RPC behind mutual TLS: real sockets, real TLS 1.3, certificates from proxy/ca.

Every refused peer is refused at the handshake (or right after it, for the
checks OpenSSL cannot make), counted under its reason, and the server goes
on serving a genuine agent afterwards.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import ssl
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gossamer.agent.identity.rpc_identity import _trust_shrank
from gossamer.agent.replicated.intention_entries import MAP_NAME
from gossamer.agent.sync import refusals
from gossamer.agent.sync.client import exchange, fetch_ca_bundle, hand_over
from gossamer.agent.sync.peer_link import PeerError
from gossamer.agent.sync.server import CLOSE_GRACE_S, NO_CERTIFICATE_ERROR
from gossamer.agent.sync.tls import enrolment_context
from gossamer.catalog.hlc import Timestamp
from gossamer.catalog.lww_sync import MAX_CLOCK_OFFSET_MS, push_part
from gossamer.catalog.sync_protocol import FrameDecoder, digest_request, encode
from gossamer.catalog.wire import record_to_wire
from gossamer.intentions import Intention
from tests.harness.identity import Credentials, Mesh
from tests.harness.poll import eventually_async
from tests.harness.replication import SyncPeer, SyncPeers, node_record, talk

WALL = 1_700_000_000_000


@pytest.fixture
async def agents(tmp_path: Path) -> AsyncIterator[SyncPeers]:
    async with SyncPeers(tmp_path) as make:
        yield make


async def pair(agents: SyncPeers) -> tuple[SyncPeer, SyncPeer]:
    """Agent a (client) and agent b (serving), each with a record and b with one intention."""
    a, b = agents("a", intentions=True, wall_ms=WALL), agents("b", intentions=True, wall_ms=WALL)
    await b.start()
    a.catalog.apply([node_record("a", 1, "web")])
    b.catalog.apply([node_record("b", 1, "db")])
    b.store.upsert(Intention("web", "db", action="deny"))
    return a, b


async def still_serves(a: SyncPeer, b: SyncPeer) -> None:
    """A genuine agent still syncs with b, and the refusals did not touch b's state."""
    await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls, replicas=a.replicas)
    assert a.has("b", 1) and b.has("a", 1)
    assert a.pairs() == b.pairs() == {("web", "db"): "deny"}


async def read_all(reader: asyncio.StreamReader) -> bytes:
    out = b""
    while chunk := await asyncio.wait_for(reader.read(65536), 5):
        out += chunk
    return out


# -- a genuine peer ------------------------------------------------------------------------


async def test_verified_agents_sync_and_nothing_is_refused(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    await still_serves(a, b)
    assert b.server.refusals == dict.fromkeys(refusals.REASONS, 0)


# -- the outsider of the issue: no certificate, no TLS ----------------------------------------


async def test_a_plaintext_outsider_reads_nothing_and_changes_nothing(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    entry = b.store.snapshot().entries.entries["web => db"]
    newer = dataclasses.replace(
        entry,
        stamp=Timestamp(entry.stamp.wall_ms + 1, 0, "outsider"),
        value={**entry.value, "Action": "allow"},
    )
    reader, writer = await asyncio.open_connection(*b.addr)
    writer.write(encode(digest_request(b.catalog.state, "dc1")))
    writer.write(
        encode(
            {
                "t": "push",
                "dc": "dc1",
                "records": [],
                "lww": push_part(MAP_NAME, [("web => db", newer)]),
            }
        )
    )
    try:
        assert await read_all(reader) == b""  # not one byte: no record, no intention
    finally:
        writer.close()
    assert b.pairs() == {("web", "db"): "deny"}
    await eventually_async(lambda: b.server.refusals[refusals.NOT_TLS] == 1)
    await still_serves(a, b)


async def test_garbage_is_refused_at_the_handshake(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    reader, writer = await asyncio.open_connection(*b.addr)
    writer.write(b"\x16\x03\x01\x00\x05garbage and more garbage" * 10)
    try:
        assert await read_all(reader) in (
            b"",
            b"\x15\x03\x03\x00\x02\x02\x32",
        )  # nothing or an alert
    finally:
        writer.close()
    await eventually_async(lambda: b.server.refusals[refusals.NOT_TLS] == 1)
    await still_serves(a, b)


async def test_a_silent_connection_does_not_hold_up_the_shutdown(agents: SyncPeers) -> None:
    """A TCP connection that never starts its handshake (and one a verified agent keeps) may
    not keep the server from closing: it waits CLOSE_GRACE_S at most, not the 10 s handshake
    timeout (a real agent took 10.9 s to exit on SIGINT with one such connection open)."""
    a, b = await pair(agents)
    await still_serves(a, b)  # a verified connection, kept by a's pool
    _, silent = await asyncio.open_connection(*b.addr)
    try:
        await eventually_async(lambda: b.server.connections >= 2)
        started = time.monotonic()
        b.server.close()
        await asyncio.wait_for(b.server.wait_closed(), 10)
        assert time.monotonic() - started < CLOSE_GRACE_S + 1
        assert b.server.connections == 0
    finally:
        silent.close()


# -- certificates that are not a verified agent's --------------------------------------------

BAD = {
    "rogue CA": (lambda mesh: Mesh().enrol("x"), refusals.UNKNOWN_ISSUER),
    "expired": (lambda mesh: mesh.expired("x"), refusals.EXPIRED),
    "another trust domain": (lambda mesh: mesh.foreign_domain("x"), refusals.FOREIGN_TRUST_DOMAIN),
    "a service leaf": (lambda mesh: mesh.service_leaf("x"), refusals.NOT_AN_AGENT),
}


@pytest.mark.parametrize("kind", sorted(BAD))
async def test_a_bad_certificate_is_refused_counted_and_the_server_goes_on(
    agents: SyncPeers, kind: str
) -> None:
    a, b = await pair(agents)
    make, reason = BAD[kind]
    credentials: Credentials = make(agents.mesh)
    intruder = agents("x", wall_ms=WALL, credentials=credentials)  # trusts b, presents bad ones
    with pytest.raises(PeerError):
        await exchange(b.addr, intruder.catalog, self_origin="x", tls=intruder.tls)
    assert intruder.catalog.record("b") is None
    await eventually_async(lambda: b.server.refusals[reason] == 1)
    await still_serves(a, b)


async def test_a_revoked_agent_is_refused(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    c = agents("c", wall_ms=WALL)
    identity = b.tls.identity
    identity.revoke("c")  # type: ignore[attr-defined]
    with pytest.raises(PeerError):
        await exchange(b.addr, c.catalog, self_origin="c", tls=c.tls)
    assert c.catalog.record("b") is None and b.catalog.record("c") is None
    assert b.server.refusals[refusals.REVOKED] == 1
    await still_serves(a, b)


async def test_the_client_refuses_a_server_of_another_mesh(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    impostor = await agents("i", wall_ms=WALL, mesh=Mesh()).start()  # another mesh's certificate
    with pytest.raises(PeerError):
        await exchange(impostor.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.catalog.record("i") is None
    await still_serves(a, b)


# -- no certificate at all: only the CA bundle -----------------------------------------------


async def test_without_a_certificate_only_the_ca_bundle_is_answered(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    answer = await fetch_ca_bundle(b.addr)
    assert answer["t"] == "ca-bundle" and answer["roots"]
    reader, writer = await asyncio.open_connection(*b.addr, ssl=enrolment_context())
    try:
        writer.write(encode({"t": "ca-bundle"}) + encode(digest_request(a.catalog.state, "dc1")))
        replies = FrameDecoder().feed(await read_all(reader))
    finally:
        writer.close()
    assert [r["t"] for r in replies] == ["ca-bundle", "error"]
    assert replies[1]["msg"] == NO_CERTIFICATE_ERROR  # and no record, and the connection closed
    assert b.server.refusals[refusals.NO_CERTIFICATE] == 1
    await still_serves(a, b)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl binary")
async def test_openssl_s_client_without_a_certificate_reads_nothing(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    request = encode({"t": "pull", "dc": "dc1", "nodes": ["b"]})
    client = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-connect", f"127.0.0.1:{b.port}", "-tls1_3", "-quiet",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(client.communicate(request), 10)
    replies = FrameDecoder().feed(out)
    assert [r["t"] for r in replies] == ["error"]  # the pull was refused: no record
    assert b"db" not in out
    assert b.server.refusals[refusals.NO_CERTIFICATE] == 1
    await still_serves(a, b)


async def test_a_tls12_client_is_refused(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname, old.verify_mode = False, ssl.CERT_NONE
    old.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(OSError):  # an alert (SSLError) or a reset, as the timing goes
        await asyncio.open_connection(*b.addr, ssl=old)
    await eventually_async(lambda: b.server.refusals[refusals.NOT_TLS] == 1)
    await still_serves(a, b)


# -- what a verified agent may do --------------------------------------------------------------


async def test_a_verified_agent_may_push_only_its_own_records(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    forged = [record_to_wire(node_record("y", 9, "evil")), record_to_wire(node_record("x", 1))]
    (reply,) = await talk(
        b.addr, {"t": "push", "dc": "dc1", "records": forged}, tls=agents.tls_for("x")
    )
    assert reply["t"] == "ok"
    assert b.has("x", 1) and b.catalog.record("y") is None  # x's own taken, y's refused
    assert b.server.refusals[refusals.FOREIGN_RECORD] == 1
    await still_serves(a, b)


async def test_entries_stamped_beyond_the_hlc_bound_are_refused(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    a.store.upsert(Intention("api", "db", action="allow"))
    entry = a.store.snapshot().entries.entries["api => db"]
    now_ms = time.time_ns() // 1_000_000
    ahead = dataclasses.replace(entry, stamp=Timestamp(now_ms + 24 * 3600 * 1000, 0, "a"))
    await hand_over(b.addr, "dc1", MAP_NAME, [("api => db", ahead)], tls=a.tls)
    assert ("api", "db") not in b.pairs()
    assert b.server.refusals[refusals.CLOCK_AHEAD] == 1
    near = dataclasses.replace(entry, stamp=Timestamp(now_ms + MAX_CLOCK_OFFSET_MS // 2, 0, "a"))
    await hand_over(b.addr, "dc1", MAP_NAME, [("api => db", near)], tls=a.tls)
    assert b.pairs()[("api", "db")] == "allow"  # within the bound: taken


# -- accounting ------------------------------------------------------------------------------


async def test_refusals_are_logged_once_per_address_per_minute(
    agents: SyncPeers, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = await pair(agents)
    caplog.set_level(logging.WARNING, logger="gossamer.replication")
    for _ in range(3):
        reader, writer = await asyncio.open_connection(*b.addr)
        writer.write(b"GET / HTTP/1.0\r\n\r\n")
        assert await read_all(reader) == b""
        writer.close()
    await eventually_async(lambda: b.server.refusals[refusals.NOT_TLS] == 3)
    logged = [r for r in caplog.records if "refused 127.0.0.1" in r.getMessage()]
    assert len(logged) == 1 and "not-tls" in logged[0].getMessage()
    await still_serves(a, b)


# -- kept connections ------------------------------------------------------------------------


async def test_rounds_reuse_one_verified_connection(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    for _ in range(3):
        await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls, replicas=a.replicas)
    assert a.tls.pool.idle == 1 and b.server.connections == 1  # one handshake for three rounds
    a.tls.identity.generation += 1  # type: ignore[misc]  # trust shrank here (the epoch moves)
    await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.tls.pool.idle == 1  # the old one was dropped, a new one kept
    await eventually_async(lambda: b.server.connections == 1)


async def test_a_kept_connection_is_checked_again_after_a_revocation(agents: SyncPeers) -> None:
    a, b = await pair(agents)
    await still_serves(a, b)
    assert a.tls.pool.idle == 1
    b.tls.identity.revoke("a")  # type: ignore[attr-defined]
    b.catalog.apply([node_record("b", 2, "db")])
    with pytest.raises(PeerError):
        await exchange(b.addr, a.catalog, self_origin="a", tls=a.tls)
    assert a.has("b", 1)  # nothing more was read after the revocation
    assert b.server.refusals[refusals.REVOKED] == 1
    assert a.tls.pool.idle == 0


@pytest.mark.parametrize(
    ("after", "shrank"),
    [
        ((("r1", "r2", "r3"), ("c2",), frozenset({"n1"}), frozenset(), "td"), False),  # new root
        ((("r2",), ("c1",), frozenset({"n1"}), frozenset(), "td"), True),  # r1 left the bundle
        ((("r1", "r2"), ("c1",), frozenset({"n1", "n2"}), frozenset(), "td"), True),  # revoked
        ((("r1", "r2"), ("c1",), frozenset({"n1"}), frozenset({"k"}), "td"), True),  # revoked key
        ((("r1", "r2"), ("c1",), frozenset(), frozenset(), "td"), False),  # revocation lifted
        ((("r1", "r2"), ("c1",), frozenset({"n1"}), frozenset(), "other"), True),
    ],
)
def test_only_shrinking_trust_moves_the_epoch_that_drops_kept_connections(
    after: tuple[object, ...], shrank: bool
) -> None:
    before = (("r1", "r2"), ("c1",), frozenset({"n1"}), frozenset(), "td")
    assert _trust_shrank(before, after) is shrank
