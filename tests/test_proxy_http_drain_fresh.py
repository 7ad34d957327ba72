"""A client connection accepted just before its HTTP listener drains is served, not dropped.

A listener replaced on its port (a changed upstream), or a sidecar draining,
tells its keep-alive clients to go between their requests (`wind_down`). A
connection it had just accepted, whose first request was still on the way,
looked like one between requests and was closed without an answer: its client
(a new connection, which no HTTP client retries) saw "Remote end closed
connection without response" (tests/test_proxy_split_start.py, once in a
loaded run). Now such a connection is served once, its answer saying
`Connection: close`. In-process, two sidecars over real sockets and mTLS.
"""

from __future__ import annotations

import asyncio

from tests.harness.poll import eventually_async
from tests.http_pair import http_pair


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    while await reader.readuntil(b"\r\n\r\n"):
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        await writer.drain()


async def test_a_connection_accepted_before_the_drain_gets_its_answer() -> None:
    async with http_pair(_answer) as (web, _db):
        reader, writer = await asyncio.open_connection("127.0.0.1", web.upstream.bind_port)
        try:
            assert web.http is not None
            pool = web.http
            await eventually_async(lambda: len(pool.sessions) == 1, timeout=5)
            web.stop_listening()  # as a replaced listener does; the request is on its way
            writer.write(b"GET / HTTP/1.1\r\nHost: db\r\n\r\n")
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), answer
            assert b"onnection: close\r\n" in answer and answer.endswith(b"\r\n\r\nok")
        finally:
            writer.close()


async def test_a_keep_alive_client_between_requests_is_still_told_to_go() -> None:
    async with http_pair(_answer) as (web, _db):
        reader, writer = await asyncio.open_connection("127.0.0.1", web.upstream.bind_port)
        try:
            writer.write(b"GET / HTTP/1.1\r\nHost: db\r\n\r\n")
            assert (await reader.readuntil(b"ok")).startswith(b"HTTP/1.1 200 OK")
            web.stop_listening()
            assert await asyncio.wait_for(reader.read(), 5) == b""  # closed at once
        finally:
            writer.close()
