"""HTTP sessions are freed by reference counting, never left to the cycle collector.

Compiled (mypyc), the collector never freed a finished HTTP session's
cycles: session <-> answer parser (`Reply`), and the parser <-> its
callbacks, kept alive while the parser served a pooled connection and
after. `bench/proxy_pair.py --http` then left ~48 sessions a round, with
their client connections' transports, in each sidecar. The modules run as
Python here, so the collector is turned off: what a cycle holds stays, as
it did compiled. Both sidecars run in this process over real sockets and
real mTLS; the app is a tiny keep-alive HTTP server.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator

import pytest

from gossamer.proxy.http1 import HttpSession
from gossamer.proxy.http_reply import Reply
from gossamer.proxy.relay import Relay
from tests.harness.poll import eventually_async
from tests.http_pair import http_pair

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


async def _app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Answers every request of a keep-alive connection with `ok`."""
    try:
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(ANSWER)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


@pytest.fixture
async def web_port() -> AsyncIterator[int]:
    """web's HTTP upstream listener, through db's HTTP sidecar to the app; pooled
    connections idle out after 0.2 s."""
    async with http_pair(_app, connect_timeout_s=0.5, pool_idle_s=0.2) as (web, _):
        yield web.upstream.bind_port


async def _get(port: int) -> bytes:
    """One request on a client connection of its own, closed after its answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(b"GET / HTTP/1.1\r\nHost: db\r\n\r\n")
        return await asyncio.wait_for(reader.readexactly(len(ANSWER)), 5)
    finally:
        writer.close()


def _alive(kind: type) -> int:
    return sum(isinstance(o, kind) for o in gc.get_objects())


async def test_sessions_and_answer_parsers_are_freed_once_their_connections_are_over(
    web_port: int,
) -> None:
    gc.collect()
    gc.disable()
    try:
        for _ in range(3):  # concurrent clients: several pooled connections, each idling out
            assert await asyncio.gather(*(_get(web_port) for _ in range(4))) == [ANSWER] * 4
        # sessions on both sides (web's per client, db's per pooled stream) and their parsers
        await eventually_async(lambda: _alive(HttpSession) == 0 and _alive(Reply) == 0, 10)
    finally:
        gc.enable()


async def _upgrading_app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Takes every request as a WebSocket upgrade: 101, then echoes what comes, until EOF."""
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     b"Connection: Upgrade\r\n\r\n")  # fmt: skip
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


async def test_an_upgraded_session_is_freed_once_its_tunnel_is_over() -> None:
    """Found by the soak (bench/soak.py, WebSocket upgrades through api's sidecar): with the
    collector's garbage saved, each count held an inbound HTTP session per upgrade that had
    ended, with its tunnel (a relay and its halves), the mux stream and the app connection."""
    upgrade = (
        b"GET /ws HTTP/1.1\r\nHost: db\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    async with http_pair(_upgrading_app, connect_timeout_s=0.5, pool_idle_s=0.2) as (web, _):
        gc.collect()
        gc.disable()
        try:
            for n in range(3):
                reader, writer = await asyncio.open_connection("127.0.0.1", web.upstream.bind_port)
                writer.write(upgrade)
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
                assert head.startswith(b"HTTP/1.1 101")
                writer.write(b"frame %d" % n)
                assert await asyncio.wait_for(reader.readexactly(7), 5) == b"frame %d" % n
                writer.close()
            await eventually_async(lambda: _alive(HttpSession) == 0 and _alive(Relay) == 0, 10)
        finally:
            gc.enable()
