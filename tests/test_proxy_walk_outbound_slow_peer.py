"""A peer without frames whose far end stops reading is waited for, not taken for dead.

An upstream's connection to a peer that takes no frames (another proxy, an
older gossamer) carries one client, and that peer stops reading it when
its app does: the window to it closes and stays closed as long as the app
is slow, which is flow control doing its job. The dead-peer bound
(dial.py `keep_alive`) must not cut it: the kernel's user timeout counts a
closed window as unacknowledged data, so it goes on the shared connections
(muxes) only, whose far side never stops reading (flow control is per
stream there). In-process: a real upstream listener, real TLS, and a TLS
server that agrees to no frames and never reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from gossamer.proxy import tally
from gossamer.proxy.config import Upstream
from gossamer.proxy.dial import dead_after_s
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.tls_side import TlsSide
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.inbound_served import served_db
from tests.proxy_pki import Pki


async def test_a_frameless_peer_that_stops_reading_is_not_cut_as_dead() -> None:
    pki = Pki()
    db, web = pki.identity("db"), pki.identity("web")
    peers: list[asyncio.StreamWriter] = []

    async def never_reads(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peers.append(writer)  # (held: its socket's window closes once its buffer is full)

    server = await asyncio.start_server(never_reads, "127.0.0.1", 0, ssl=db.server)
    port = server.sockets[0].getsockname()[1]
    up = free_port("127.0.0.1")
    listener = UpstreamListener(Upstream("db", up, connect_timeout_s=1), lambda: web,
                                tally.Tally())  # fmt: skip
    listener.set_instances([("127.0.0.1", port)])
    await listener.start()
    reader, writer = await asyncio.open_connection("127.0.0.1", up)
    try:
        writer.write(b"x" * (1 << 16))

        async def relayed() -> bool:
            return bool(listener.open)

        await eventually_async(relayed, 5)
        (relay,) = listener.open
        wire = relay.sides[1]
        assert isinstance(wire, TlsSide) and wire.transport is not None
        # the client writes on: the peer's window closes, the proxy pauses the client
        loop = asyncio.get_running_loop()
        until = loop.time() + dead_after_s(1) + 4  # past the bound and its probes
        while loop.time() < until:
            writer.write(b"x" * (1 << 16))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer.drain(), 0.2)
            assert not reader.at_eof() and not writer.is_closing()
            assert listener.open, "the proxy cut a connection whose peer only reads slowly"
        sock = wire.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
    finally:
        writer.close()
        listener.stop_listening()
        listener.terminate_all()
        for peer in peers:
            peer.close()
        server.close()


async def test_a_shared_connection_gets_the_dead_peer_bound() -> None:
    async with served_db() as served:
        up = free_port("127.0.0.1")
        web = served.pki.identity("web")
        listener = UpstreamListener(Upstream("db", up, connect_timeout_s=2), lambda: web,
                                    tally.Tally())  # fmt: skip
        listener.set_instances([("127.0.0.1", served.port)])
        await listener.start()
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", up)
            writer.write(b"hi")
            assert await asyncio.wait_for(reader.readexactly(2), 5) == b"hi"
            (muxes,) = listener.tunnels.muxes.values()
            sock = muxes[0].wire.transport.get_extra_info("socket")  # type: ignore[union-attr]
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 6000
            writer.close()
        finally:
            listener.stop_listening()
            listener.terminate_all()
