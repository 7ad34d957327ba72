"""The caller's X-Forwarded-Client-Cert reaches the app from a new mux's first request on.

db's inbound side computes the header once per shared connection (inbound_mux.py). It used
to store it after making the mux, and making it opens the streams whose OPEN came in the
same read as the end of the handshake, as a client sidecar's first stream does: those were
served with no header, and web's pool then reused that stream for later requests, so the
app saw no caller on them either (in process below, every first request; with real sidecars
2 of 3 after a restart). Both sidecars run in this process over real sockets and real mTLS
(tests/http_pair.py), with leaves that carry their SPIFFE IDs as the agent's do.
"""

from __future__ import annotations

import asyncio

from tests.http_pair import http_pair

REQUEST = b"GET / HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n"


async def test_every_request_of_a_new_connection_names_its_caller() -> None:
    heads: list[bytes] = []

    async def app(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                heads.append(await reader.readuntil(b"\r\n\r\n"))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    for _ in range(3):  # a new pair, so a new shared connection, each time
        heads.clear()
        async with http_pair(app) as (web, _):
            for _ in range(2):  # the first request, then one on the pooled stream
                reader, writer = await asyncio.open_connection("127.0.0.1", web.upstream.bind_port)
                writer.write(REQUEST)
                assert (await asyncio.wait_for(reader.read(), 5)).startswith(b"HTTP/1.1 200")
                writer.close()
        callers = [line.split(b";")[-1] for head in heads for line in head.split(b"\r\n")
                   if line.lower().startswith(b"x-forwarded-client-cert:")]  # fmt: skip
        assert len(callers) == 2, heads  # one per request, the first one's too
        assert all(c.startswith(b"URI=spiffe://") and c.endswith(b"/svc/web") for c in callers)
