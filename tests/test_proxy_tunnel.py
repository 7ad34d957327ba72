"""Tunnels: L4 streams over reused sidecar-to-sidecar connections (proxy/tunnel*.py).

The frame codec as a table; then a real upstream listener (web) and a real
inbound port (db) in one loop, over sockets, with an echo app and a
greeter (a server-first app).
"""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.identity import Identity
from gossamer.proxy.inbound import Inbound, Policy
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.tunnel_frames import (
    DATA,
    END,
    END_FRAME,
    OPEN,
    OPEN_FRAME,
    RESET,
    RESET_FRAME,
    Deframer,
    FrameError,
    data_frame,
)
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.proxy_pki import Pki
from tests.proxy_support import echo_until_end

STREAM = OPEN_FRAME + data_frame(b"hello") + data_frame(b"") + END_FRAME + RESET_FRAME
FRAMES = [(OPEN, b""), (DATA, b"hello"), (DATA, b""), (END, b""), (RESET, b"")]


@pytest.mark.parametrize("cut", [1, 3, 7, 12, 17, 22, len(STREAM) - 1])
def test_frames_come_out_whole_wherever_the_stream_is_cut(cut: int) -> None:
    frames = Deframer()
    got = frames.feed(STREAM[:cut])
    assert frames.partial
    assert got + frames.feed(STREAM[cut:]) == FRAMES and not frames.partial


@pytest.mark.parametrize("bad", [b"\x09\x00\x00\x00\x00", END_FRAME[:4] + b"\x01x",
                                 b"\x00\xff\xff\xff\xff"])  # fmt: skip
def test_anything_else_is_a_frame_error(bad: bytes) -> None:
    with pytest.raises(FrameError):
        Deframer().feed(bad)


async def _greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(b"hi, ")
    with contextlib.suppress(OSError):
        writer.write(await reader.read(100))
        await writer.drain()
    writer.close()


@dataclass
class Pair:
    web: UpstreamListener
    db: Inbound
    port: int  # web's upstream listener
    policy: Policy
    pki: Pki
    client: dict[str, Identity]
    echo: bool  # the app echoes until the end; else it greets first, answers once, closes

    def count(self, name: str) -> int:
        return (self.web.tally.snapshot() | self.db.tally.snapshot()).get(name, 0)


@pytest.fixture(params=["echo", "greeter"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[Pair]:
    app = await asyncio.start_server(
        echo_until_end if request.param == "echo" else _greet, "127.0.0.1", 0
    )
    pki = Pki()
    db_identity, client = pki.identity("db"), {"web": pki.identity("web")}
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    port = free_port("127.0.0.1")
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=port,
                         local_port=app.sockets[0].getsockname()[1])  # fmt: skip
    db = Inbound(config, lambda: db_identity, policy, tally.Tally())
    await db.start()
    up = free_port("127.0.0.1")
    upstream = Upstream("db", up, connect_timeout_s=0.5)
    web = UpstreamListener(upstream, lambda: client["web"], tally.Tally())
    web.set_instances([("127.0.0.1", port)])
    await web.start()
    try:
        yield Pair(web, db, up, policy, pki, client, request.param == "echo")
    finally:
        for side in (web, db):
            side.stop_listening()
            side.terminate_all()
        app.close()


async def exchange(pair: Pair, payload: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", pair.port)
    try:
        writer.write(payload)
        writer.write_eof()
        return await asyncio.wait_for(reader.read(), 5)
    finally:
        writer.close()


def expected(pair: Pair, payload: bytes) -> bytes:
    return payload + b"<eof>" if pair.echo else b"hi, " + payload


async def test_one_handshake_serves_stream_after_stream_with_half_close(pair: Pair) -> None:
    for n in range(5):
        payload = b"x" * (n * 40_000) + b"!" if pair.echo else b"%d" % n
        assert await exchange(pair, payload) == expected(pair, payload)
    assert pair.count("outbound.reused") == 4 and pair.count("outbound.connections") == 5
    assert pair.count("inbound.allowed") == 5  # each stream decided
    assert sum(len(idle) for idle in pair.web.tunnels.idle.values()) == 1


async def test_a_client_that_resets_costs_its_tunnel_not_the_next_stream(pair: Pair) -> None:
    assert await exchange(pair, b"a") == expected(pair, b"a")
    _, writer = await asyncio.open_connection("127.0.0.1", pair.port)
    writer.write(b"half")
    await eventually_async(lambda: len(pair.web.open) == 1, 5)
    linger = struct.pack("ii", 1, 0)  # close with an RST, not a FIN
    writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
    writer.transport.abort()  # the stream is cut: its wire closed, not reused
    await eventually_async(lambda: not pair.web.open and not pair.db.open, 5)
    assert await exchange(pair, b"b") == expected(pair, b"b")
    assert pair.count("outbound.reused") == 1


async def test_a_deny_cuts_the_open_stream_and_refuses_the_next_one(pair: Pair) -> None:
    assert await exchange(pair, b"a") == expected(pair, b"a")
    reader, writer = await asyncio.open_connection("127.0.0.1", pair.port)
    writer.write(b"open ")
    await eventually_async(lambda: len(pair.db.open) == 1, 5)
    pair.policy.intentions = IntentionSet([Intention("web", "db", action="deny")])
    pair.db.recheck()  # what the runtime does when the intentions change
    with contextlib.suppress(OSError):
        got = await asyncio.wait_for(reader.read(), 1)
        assert b"<eof>" not in got
    writer.close()
    assert pair.count("inbound.terminated") == 1
    assert await exchange(pair, b"b") == b""  # over a new or an idle wire: decided, refused
    assert pair.count("inbound.refused.denied") == 1


async def test_a_new_client_identity_never_takes_an_older_wire(pair: Pair) -> None:
    assert await exchange(pair, b"a") == expected(pair, b"a")
    pair.client["web"] = pair.pki.identity("web")  # a renewed leaf: new contexts
    assert await exchange(pair, b"b") == expected(pair, b"b")
    assert pair.count("outbound.reused") == 0
    assert await exchange(pair, b"c") == expected(pair, b"c")
    assert pair.count("outbound.reused") == 1


async def test_an_idle_wire_that_never_answers_is_followed_by_a_new_connection(pair: Pair) -> None:
    assert await exchange(pair, b"a") == expected(pair, b"a")
    (wire,) = pair.db.tunnels.parked  # a host cut off: what reaches it is never read
    assert wire.transport is not None
    wire.transport.pause_reading()
    assert await exchange(pair, b"b") == expected(pair, b"b")  # after 0.5 s, over a new wire
    assert pair.count("outbound.reused") == 0
    assert pair.count("outbound.attempt_failed.connect-failed") == 1


async def test_a_draining_inbound_port_closes_its_idle_wires(pair: Pair) -> None:
    assert await exchange(pair, b"a") == expected(pair, b"a")
    pair.db.stop_listening()
    await eventually_async(lambda: not pair.web.tunnels.idle, 5)  # the client side saw it


def _arrived(transport: asyncio.BaseTransport) -> bool:
    """Something (here the peer's end) waits unread on a transport whose reading is paused."""
    return bool(select.select([transport.get_extra_info("socket")], [], [], 0)[0])


async def test_an_idle_wire_whose_peer_died_unseen_is_followed_by_a_new_one(pair: Pair) -> None:
    assert await exchange(pair, b"a") == expected(pair, b"a")
    ((kept,),) = pair.web.tunnels.idle.values()
    ours = kept.parked.wire.transport
    assert ours is not None
    ours.pause_reading()  # its end is not seen until it is taken
    (theirs,) = pair.db.tunnels.parked
    assert theirs.transport is not None
    theirs.transport.close()  # a bare TCP end, no close_notify: the peer died, it did not refuse
    await eventually_async(lambda: _arrived(ours), 5)
    assert await exchange(pair, b"b") == expected(pair, b"b")  # over a new connection
    assert pair.count("outbound.reused") == 0
    assert pair.count("outbound.attempt_failed.connect-failed") == 1


async def test_an_idle_wire_closed_cleanly_as_it_is_taken_is_followed_by_a_new_one(
    pair: Pair,
) -> None:
    """db closes its idle wires on purpose (its sweep, a drain) just as web takes one: the
    close_notify is no answer to the OPEN, and without a RESET it is not a refusal either,
    so web opens a new connection and the client never sees it."""
    assert await exchange(pair, b"a") == expected(pair, b"a")
    ((kept,),) = pair.web.tunnels.idle.values()
    ours = kept.parked.wire.transport
    assert ours is not None
    ours.pause_reading()  # the close below is not seen until the wire is taken
    pair.db.tunnels.close_all()  # what a drain does to idle wires: close_notify, then FIN
    await eventually_async(lambda: _arrived(ours), 5)
    assert await exchange(pair, b"b") == expected(pair, b"b")  # over a new connection
    assert pair.count("outbound.reused") == 0
    assert not any(name.startswith("outbound.attempt_failed") for name in
                   pair.web.tally.snapshot())  # fmt: skip


async def test_a_refusal_over_a_reused_wire_is_final_and_counted_once(pair: Pair) -> None:
    """A RESET answers the OPEN: the inbound side said no; web does not ask again."""
    assert await exchange(pair, b"a") == expected(pair, b"a")
    pair.policy.intentions = IntentionSet([Intention("web", "db", action="deny")])
    assert await exchange(pair, b"b") == b""
    assert pair.count("outbound.reused") == 0  # taken, refused: not counted as reused
    assert pair.count("inbound.refused.denied") == 1  # decided once, not again on a new wire
