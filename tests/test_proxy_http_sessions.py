"""HTTP sessions at their edges: upgrades (WebSocket tunnels) and drains.

Both sidecars run in this process over real sockets and real mTLS (as in
test_proxy_http_cycles.py): web's upstream listener -> mTLS -> db's HTTP
inbound -> a small app written for each test.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from gossamer.proxy.outbound import UpstreamListener
from tests.harness.poll import eventually_async
from tests.http_pair import Handler, http_pair

SWITCHED = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"
UPGRADE = (b"GET /ws HTTP/1.1\r\nHost: db\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Version: 13\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")  # fmt: skip


async def _app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(SWITCHED)
        await reader.read()  # until the client's end
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    writer.close()


@pytest.fixture
async def web() -> AsyncIterator[UpstreamListener]:
    async with http_pair(_app) as (listener, _):
        yield listener


async def test_a_websockets_life_is_not_priced_as_its_instances_latency(
    web: UpstreamListener,
) -> None:
    """The tunnel's app connection goes back to the host when the WebSocket ends; its whole
    life used to be recorded as one request's latency (peak-EWMA takes a peak at once), so
    an instance that had served an hour-long WebSocket was priced at an hour and plain
    requests avoided it for minutes."""
    assert web.http is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", web.upstream.bind_port)
    writer.write(UPGRADE)
    assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).startswith(b"HTTP/1.1 101")
    await asyncio.sleep(0.5)  # the WebSocket's life: deliberately long, not a wait for a state
    writer.write_eof()
    await asyncio.wait_for(reader.read(), 5)
    writer.close()
    await eventually_async(lambda: not web.http.in_use, 5)  # type: ignore[union-attr]
    (instance,) = web.instances
    cost = web.http.latency.costs([instance], {}, time.monotonic())[instance]
    assert cost < 0.25, f"priced at {cost:.2f} s"


async def test_a_client_that_ends_its_side_before_the_101_still_gets_its_tunnel() -> None:
    """Through an L4 upstream (web's sidecar relays bytes; db's reads HTTP), the client sends
    its upgrade and a first frame, then ends its side before the app's `101` comes (the app
    answers once the end reached db's sidecar). The frame reaches the app, the end follows
    it, and the app's reply reaches the client, as over any TCP connection. db's session
    used to close at the 101 instead, losing both. (Through an HTTP upstream, web's sidecar
    does not read the client while its request waits for an answer, so the end comes after
    the 101 there.)"""
    seen: list[bytes] = []
    ended = asyncio.Event()

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        await ended.wait()
        writer.write(SWITCHED)
        seen.append(await reader.read())  # to the client's end
        writer.write(b"reply-to:" + seen[-1])
        writer.close()

    async with http_pair(app, "tcp") as (listener, db):
        reader, writer = await asyncio.open_connection("127.0.0.1", listener.upstream.bind_port)
        writer.write(UPGRADE + b"FRAME1")
        writer.write_eof()
        await eventually_async(lambda: any(s._client_ended for s in db.http_open), 5)
        ended.set()
        got = await asyncio.wait_for(reader.read(), 5)
        writer.close()
    assert got == SWITCHED + b"reply-to:FRAME1" and seen == [b"FRAME1"]


async def _keep_alive_app(release: asyncio.Event, asked: asyncio.Event) -> Handler:
    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while head := await reader.readuntil(b"\r\n\r\n"):
                if b" /slow " in head:
                    asked.set()
                    await release.wait()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    return app


async def _ask(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> bytes:
    writer.write(b"GET %s HTTP/1.1\r\nHost: db\r\n\r\n" % path.encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return head + await asyncio.wait_for(reader.readexactly(2), 5)


async def test_a_draining_sidecar_lets_its_keep_alive_clients_go_between_requests() -> None:
    """A drain used to leave keep-alive HTTP sessions open until the drain timeout and
    then cut them, mid-request or not. Now an idle one is closed at once, and one with a
    request under way gets its answer, with `Connection: close`, then is closed: at the
    inbound (the pooled streams from web's sidecar) and at an upstream listener (the app's
    own keep-alive connections)."""
    release, asked = asyncio.Event(), asyncio.Event()
    async with http_pair(await _keep_alive_app(release, asked), "http") as (web, db):
        port = web.upstream.bind_port
        busy = await asyncio.open_connection("127.0.0.1", port)
        busy[1].write(b"GET /slow HTTP/1.1\r\nHost: db\r\n\r\n")
        await asyncio.wait_for(asked.wait(), 5)
        idle = await asyncio.open_connection("127.0.0.1", port)
        assert (await _ask(*idle, "/fast")).endswith(b"ok")
        assert len(db.http_open) == 2  # web's two pooled streams, each a session at db
        db.stop_listening()
        await eventually_async(lambda: len(db.http_open) == 1, 5)  # the idle one, at once
        release.set()
        head = await asyncio.wait_for(busy[0].readuntil(b"\r\n\r\n"), 5)
        assert head.startswith(b"HTTP/1.1 200 ") and await busy[0].readexactly(2) == b"ok"
        await eventually_async(lambda: not db.http_open, 5)  # after its answer
        web.stop_listening()  # the app's keep-alive connections to web's upstream port
        for reader, writer in (idle, busy):
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()
