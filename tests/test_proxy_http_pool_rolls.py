"""Pooled HTTP connections roll over as the pool's muxes do: to a new leaf, off an aged mux.

A request through an HTTP upstream borrows a parked connection to the
instance when there is one (http_upstream.py). A parked stream used to be
taken whatever its mux: under steady traffic the pool never went idle, so
requests kept going over the mux made with the leaf before the last
renewal, and past the mux's `MAX_AGE_S`, for as long as traffic lasted.
Both sidecars run in this process over real sockets and real mTLS
(tests/http_pair.py).
"""

from __future__ import annotations

import asyncio

from gossamer.proxy import mux_pool
from gossamer.proxy.mux import Mux, StreamSide
from gossamer.proxy.outbound import UpstreamListener
from tests.harness.poll import eventually_async
from tests.http_pair import http_pair
from tests.proxy_pki import Pki


async def _app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request on a keep-alive connection."""
    try:
        while True:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def _get(web: UpstreamListener) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", web.upstream.bind_port)
    writer.write(b"GET / HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n")
    answer = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return answer


async def _parked_mux(web: UpstreamListener) -> Mux:
    """The mux under web's one parked connection, once the last request gave it back."""
    http = web.http
    assert http is not None
    await eventually_async(lambda: not http.in_use and any(http.idle.values()), 5)
    (conn,) = [c for conns in http.idle.values() for c in conns]
    assert isinstance(conn.side, StreamSide)
    return conn.side.mux


async def test_a_new_leaf_moves_the_pooled_requests_to_a_new_connection() -> None:
    pki = Pki()
    async with http_pair(_app, pki=pki) as (web, _):
        assert (await _get(web)).startswith(b"HTTP/1.1 200")
        first = await _parked_mux(web)
        renewed = pki.identity("web")
        web.identity = lambda: renewed
        assert (await _get(web)).startswith(b"HTTP/1.1 200")
        second = await _parked_mux(web)
        assert second is not first, "the request went over the old leaf's connection"
        assert web.tunnels.contexts[second] is renewed.client_tunnel
        await eventually_async(lambda: not first.streams, 5)  # the old one's stream ended


async def test_an_aged_mux_carries_no_more_pooled_requests() -> None:
    async with http_pair(_app) as (web, _):
        assert (await _get(web)).startswith(b"HTTP/1.1 200")
        first = await _parked_mux(web)
        first.born -= mux_pool.MAX_AGE_S  # as if made a minute ago
        assert (await _get(web)).startswith(b"HTTP/1.1 200")
        assert await _parked_mux(web) is not first, "the request went over the aged mux"
        await eventually_async(lambda: not first.streams, 5)


async def test_a_current_mux_keeps_serving_the_pool() -> None:
    """The check passes over nothing it should keep: one connection for many requests."""
    async with http_pair(_app) as (web, _):
        assert (await _get(web)).startswith(b"HTTP/1.1 200")
        first = await _parked_mux(web)
        for _ in range(3):
            assert (await _get(web)).startswith(b"HTTP/1.1 200")
            assert await _parked_mux(web) is first
