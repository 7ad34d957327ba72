"""A request that crosses the far sidecar's idle close of a pooled connection is answered.

db's sidecar closes a client connection idle for its `idle_timeout_ms`; web's
sidecar pools its connections to db for longer. A request web lends such a
connection to just as db closes it reaches no app: db says so (RESET
BETWEEN, as a draining listener does too), and web sends it on another
connection, POST or not. It closed with a plain reset, and a POST crossing it
got a 502 (tests/test_resilience_walk_pool.py, once in a loaded CI run).
In-process, two sidecars over real sockets and mTLS; web's reading of the
shared connection is held so that the crossing happens every time.
"""

from __future__ import annotations

import asyncio
import contextlib

from tests.harness.poll import eventually_async
from tests.http_pair import http_pair


async def test_a_post_crossing_the_far_sides_idle_close_goes_on_a_new_stream() -> None:
    seen: list[bytes] = []

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError):  # (the sidecar's close)
            while head := await reader.readuntil(b"\r\n\r\n"):
                seen.append(head.split(b" ", 2)[1])
                length = int(head.lower().split(b"content-length: ")[1].split()[0])
                await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    async with http_pair(app, db_fields={"client_idle_s": 0.2}) as (web, db):
        reader, writer = await asyncio.open_connection("127.0.0.1", web.upstream.bind_port)
        post = b"POST /%s HTTP/1.1\r\nHost: db\r\nContent-Length: 1\r\n\r\nx"
        try:
            writer.write(post % b"a")
            assert (await asyncio.wait_for(reader.readuntil(b"ok"), 5)).startswith(b"HTTP/1.1 200")
            ((mux,),) = web.tunnels.muxes.values()
            assert mux.wire.transport is not None
            mux.wire.transport.pause_reading()  # web does not see db's close coming
            await eventually_async(lambda: db.tally.snapshot().get("http.client_idle") == 1, 5)
            writer.write(post % b"b")  # web lends it the pooled stream db has just closed
            assert web.http is not None
            sessions = web.http.sessions
            await eventually_async(lambda: any(s.queue and s.queue[0].sent for s in sessions), 5)
            mux.wire.transport.resume_reading()
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert answer.startswith(b"HTTP/1.1 200 OK"), answer
            assert seen == [b"/a", b"/b"]
        finally:
            writer.close()
