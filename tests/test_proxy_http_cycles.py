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

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.http1 import HttpSession
from gossamer.proxy.http_reply import Reply
from gossamer.proxy.inbound import Inbound, Policy
from gossamer.proxy.outbound import UpstreamListener
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.proxy_pki import Pki

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
    app = await asyncio.start_server(_app, "127.0.0.1", 0)
    pki = Pki()
    db_identity, web_identity = pki.identity("db"), pki.identity("web")
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    port = free_port("127.0.0.1")
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=port, protocol="http",
                         local_port=app.sockets[0].getsockname()[1])  # fmt: skip
    db = Inbound(config, lambda: db_identity, policy, tally.Tally())
    await db.start()
    up = free_port("127.0.0.1")
    upstream = Upstream("db", up, connect_timeout_s=0.5, protocol="http", pool_idle_s=0.2)
    web = UpstreamListener(upstream, lambda: web_identity, tally.Tally())
    web.set_instances([("127.0.0.1", port)])
    await web.start()
    try:
        yield up
    finally:
        for side in (web, db):
            side.stop_listening()
            side.terminate_all()
        app.close()


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
