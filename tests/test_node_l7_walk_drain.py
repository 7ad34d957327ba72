"""A request sent on a pooled connection just as the far sidecar drains it goes elsewhere.

Found with `connect proxy --node --workers 2` and SIGTERM under keep-alive
POST load: worker 0 drains db's sidecar while worker 1's web sidecar, not
yet told, still lends its idle pooled connections to db. db's draining
inbound closes each one between requests (`wind_down`), and a POST that web
had just sent on one got `502`, though db's app never saw it: web could not
tell that close from an app that took the request and died. The far side
knows it read nothing of a new request, so it now says so (RESET BETWEEN,
taken as UNREACHABLE is, when it cannot reach its app) and web sends the
request on to another instance, whatever its method. The same race happens whenever
one instance of a service drains while its callers go on.

In-process: web's upstream listener over real mTLS to two db instances.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.inbound import Inbound
from gossamer.proxy.outbound import UpstreamListener
from gossamer.proxy.policy import Policy
from tests.harness.cluster import free_port
from tests.proxy_pki import Pki


def _app(name: bytes, seen: list[bytes]) -> object:
    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while head := await reader.readuntil(b"\r\n\r\n"):
                await reader.readexactly(2)  # the body: "hi"
                seen.append(head.split(b" ", 2)[1])
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s"
                             % (len(name), name))  # fmt: skip
                await writer.drain()

    return answer


@contextlib.asynccontextmanager
async def _mesh(
    seen: dict[bytes, list[bytes]],
) -> AsyncIterator[tuple[UpstreamListener, dict[bytes, Inbound]]]:
    pki = Pki()
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    apps, inbounds = [], {}
    for name in (b"db1", b"db2"):
        seen[name] = []
        app = await asyncio.start_server(_app(name, seen[name]), "127.0.0.1", 0)  # type: ignore[arg-type]
        apps.append(app)
        config = ProxyConfig(service="db", bind_address="127.0.0.1",
                             bind_port=free_port("127.0.0.1"), protocol="http",
                             local_port=app.sockets[0].getsockname()[1])  # fmt: skip
        identity = pki.identity("db")
        inbounds[name] = Inbound(config, lambda i=identity: i, policy, tally.Tally())
        await inbounds[name].start()
    web_identity = pki.identity("web")
    web = UpstreamListener(Upstream("db", free_port("127.0.0.1"), protocol="http"),
                           lambda: web_identity, tally.Tally())  # fmt: skip
    web.set_instances([("127.0.0.1", i.config.bind_port) for i in inbounds.values()])
    await web.start()
    try:
        yield web, inbounds
    finally:
        for side in (web, *inbounds.values()):
            side.stop_listening()
            side.terminate_all()
        for app in apps:
            app.close()


async def _answer(reader: asyncio.StreamReader) -> tuple[bytes, bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
    return head.split(b"\r\n")[0], await asyncio.wait_for(reader.readexactly(length), 5)


async def test_a_post_on_a_pooled_connection_the_far_side_drains_goes_to_another() -> None:
    for n in range(3):  # (the race is made, not waited for: three tries of it)
        seen: dict[bytes, list[bytes]] = {}
        async with _mesh(seen) as (web, inbounds):
            reader, writer = await asyncio.open_connection("127.0.0.1", web.upstream.bind_port)
            try:
                post = b"POST /%d/%s HTTP/1.1\r\nHost: db\r\nContent-Length: 2\r\n\r\nhi"
                writer.write(post % (n, b"first"))
                status, first = await _answer(reader)
                assert status == b"HTTP/1.1 200 OK"
                other = b"db2" if first == b"db1" else b"db1"
                # The instance that answered drains: its idle pooled connection is closed
                # just as web sends it the next POST (the client's bytes go first).
                writer.write(post % (n, b"second"))
                await writer.drain()
                inbounds[first].stop_listening()
                status, second = await _answer(reader)
                assert (status, second) == (b"HTTP/1.1 200 OK", other), (n, status, second)
                assert b"/%d/second" % n in seen[other]
                assert b"/%d/second" % n not in seen[first]
            finally:
                writer.close()
