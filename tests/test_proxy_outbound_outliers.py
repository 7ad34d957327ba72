"""Outlier detection on an L4 upstream counts consecutive failures: a success in between
starts the count again, also over a connection shared between the sidecars.

A real upstream listener (web) and two real inbound ports (db instances) in one loop,
over sockets, with echo apps. A client connection held open to the live instance makes
power of two choices send each new one to the other, `flaky`, whose app goes away and
comes back: each time it is away, one connection fails there (UNREACHABLE on the shared
connection's stream) and is carried to the live instance; each time it is back, one
connection is served there, over the same shared connection (no new TLS connection: no
`dial`). Three failures with successes between them are not three in a row: `flaky` must
not be set aside (Envoy's consecutive-failure rule, outlier.py).
"""

from __future__ import annotations

import asyncio
import socket
import time

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import tally
from gossamer.proxy.config import ProxyConfig, Upstream
from gossamer.proxy.inbound import Inbound, Policy
from gossamer.proxy.outbound import UpstreamListener
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.proxy_pki import Pki
from tests.proxy_support import echo_until_end, exchange


async def _app(port: int) -> asyncio.Server:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    return await asyncio.start_server(echo_until_end, sock=sock)


async def test_a_success_between_failures_over_a_shared_connection_resets_the_count() -> None:
    pki = Pki()
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    web_identity = pki.identity("web")
    live_app = await asyncio.start_server(echo_until_end, "127.0.0.1", 0)
    flaky_port = free_port("127.0.0.1")
    flaky_app: asyncio.Server | None = await _app(flaky_port)
    inbounds = []
    for app_port in (live_app.sockets[0].getsockname()[1], flaky_port):
        config = ProxyConfig(service="db", bind_address="127.0.0.1",
                             bind_port=free_port("127.0.0.1"), local_port=app_port)  # fmt: skip
        inbound = Inbound(config, lambda: pki.identity("db"), policy, tally.Tally())
        await inbound.start()
        inbounds.append(inbound)
    live, flaky = [("127.0.0.1", i.config.bind_port) for i in inbounds]
    up = free_port("127.0.0.1")
    web = UpstreamListener(Upstream("db", up, connect_timeout_s=2.0), lambda: web_identity,
                           tally.Tally())  # fmt: skip
    held: asyncio.StreamWriter | None = None
    try:
        web.set_instances([live])
        await web.start()
        _, held = await asyncio.open_connection("127.0.0.1", up)  # one open to `live`...
        await eventually_async(lambda: web.outstanding.get(live) == 1)
        web.set_instances([flaky, live])  # ...so every new connection goes to `flaky`
        unreachable = inbounds[1].tally
        for n in range(3):
            assert flaky_app is not None
            flaky_app.close()
            await flaky_app.wait_closed()
            flaky_app = None
            assert await exchange(up, b"away%d" % n) == b"away%d<eof>" % n  # on `live`
            failed = unreachable.snapshot().get("inbound.refused.local-unreachable", 0)
            assert failed == n + 1  # tried at `flaky` first
            flaky_app = await _app(flaky_port)
            assert await exchange(up, b"back%d" % n) == b"back%d<eof>" % n  # at `flaky`
            assert web.tally.snapshot().get("outbound.reused", 0) >= n + 1  # (shared)
        now_ms = time.monotonic_ns() // 1_000_000
        assert web.outliers.ejected(now_ms) == set()
        assert web.tally.snapshot().get("outbound.ejected", 0) == 0
    finally:
        if held is not None:
            held.close()
        web.stop_listening()
        web.terminate_all()
        for inbound in inbounds:
            inbound.stop_listening()
            inbound.terminate_all()
        for server in (live_app, flaky_app):
            if server is not None:
                server.close()
