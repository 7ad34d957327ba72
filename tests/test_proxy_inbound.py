"""The inbound port in-process: real sockets, real TLS, a real echo app; every bad input refused.

Each bad client (plaintext, garbage, no certificate, a rogue CA, another
trust domain, an expired leaf, a non-SPIFFE or non-service SAN, an agent's
certificate, a denied service) is refused, counted under its reason, and a
good client keeps working between and after them. Live policy: an allowed
connection is cut when a deny arrives; another pair stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import ssl
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from gossamer.intentions.decide import IntentionSet
from gossamer.intentions.model import Intention
from gossamer.proxy import runtime as runtime_module
from gossamer.proxy import tally, warm
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.ca.keys import key_id
from gossamer.proxy.config import ProxyConfig, Timeouts, Upstream
from gossamer.proxy.edge_metrics import EdgeMetrics
from gossamer.proxy.identity import with_revoked
from gossamer.proxy.inbound import Inbound, Policy
from gossamer.proxy.relay import Relay
from gossamer.proxy.runtime import ProxyRuntime
from gossamer.proxy.tls_pipe import TlsPipe
from gossamer.proxy.upstream_set import UpstreamSet
from tests.harness.binaries import find_binary, require
from tests.harness.cluster import free_port
from tests.harness.poll import eventually_async
from tests.inbound_served import Served, served_db
from tests.proxy_pki import CLUSTER_B, Pki, client_context
from tests.proxy_support import echo_until_end


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with served_db(Timeouts(handshake_s=0.5)) as serving:
        yield serving


async def tls_roundtrip(s: Served, context: ssl.SSLContext, payload: bytes = b"hi") -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", s.port, ssl=context)
    try:
        writer.write(payload)
        await writer.drain()
        return await asyncio.wait_for(reader.readexactly(len(payload)), 5)
    finally:
        writer.close()


async def refused_count(s: Served, reason: str) -> int:
    return s.inbound.tally.snapshot()[f"inbound.refused.{reason}"]


async def expect_refused(s: Served, reason: str, attempt: object) -> None:
    async def counted() -> bool:
        return await refused_count(s, reason) == 1

    with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
        await attempt  # type: ignore[misc]
    await eventually_async(counted, 5)
    assert await tls_roundtrip(s, client_context(s.pki, s.pki.leaf_json("web"))) == b"hi"


async def raw(s: Served, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
    writer.write(data)
    await writer.drain()
    got = await asyncio.wait_for(reader.read(100), 5)
    writer.close()
    return got


async def test_an_allowed_service_gets_through(served: Served) -> None:
    web = client_context(served.pki, served.pki.leaf_json("web"))
    assert await tls_roundtrip(served, web, b"x" * 100_000) == b"x" * 100_000
    assert served.inbound.tally.snapshot()["inbound.allowed"] == 1


async def test_a_finished_connection_is_freed_without_the_cycle_collector(
    served: Served,
) -> None:
    """Its relay, sides and SSLObject go when the last reference does: OpenSSL's buffers
    (unseen by the collector) must not wait for a rare full collection to be freed."""
    web = client_context(served.pki, served.pki.leaf_json("web"))
    gc.collect()
    before = {id(o) for o in gc.get_objects() if isinstance(o, Relay | TlsPipe)}  # other tests'
    gc.disable()
    try:
        for _ in range(3):
            assert await tls_roundtrip(served, web, b"x" * 1000) == b"x" * 1000
        await eventually_async(lambda: not served.inbound.open, 5)

        def left() -> list[str]:  # freed as the loop runs the closed transports' callbacks
            return [type(o).__name__ for o in gc.get_objects()
                    if isinstance(o, Relay | TlsPipe) and id(o) not in before]  # fmt: skip

        await eventually_async(lambda: left() == [], 5)  # with the collector off all along
    finally:
        gc.enable()


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", tally.NOT_TLS),
        (b"\x16\x03\x01\xff\xffgarbage", tally.NOT_TLS),
    ],
)
async def test_plaintext_and_garbage_are_refused(served: Served, data: bytes, reason: str) -> None:
    await expect_refused(served, reason, raw(served, data))


async def test_no_client_certificate_is_refused(served: Served) -> None:
    await expect_refused(served, tally.NO_CERTIFICATE,
                         tls_roundtrip(served, client_context(served.pki, None)))  # fmt: skip


def _rogue(p: Pki) -> ssl.SSLContext:
    rogue = Pki(CLUSTER_B)
    return client_context(rogue, rogue.leaf_json("web"))


def _non_service(p: Pki) -> ssl.SSLContext:
    return client_context(p, p.odd_uri_json(f"spiffe://{p.trust_domain}/not/a/service"))


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (_rogue, tally.UNKNOWN_ISSUER),
        (lambda p: client_context(p, p.expired_json("web")), tally.EXPIRED),
        (_non_service, tally.NOT_SPIFFE),
        (lambda p: client_context(p, p.agent_json()), tally.NOT_A_SERVICE),
        (lambda p: client_context(p, p.leaf_json("intruder")), tally.DENIED),
    ],
    ids=["rogue-ca", "expired", "non-service-spiffe", "agent-cert", "denied"],
)
async def test_bad_certificates_are_refused_by_reason(
    served: Served, make: object, reason: str
) -> None:
    context = make(served.pki)  # type: ignore[operator]
    await expect_refused(served, reason, tls_roundtrip(served, context))


async def test_a_non_spiffe_uri_is_refused(served: Served) -> None:
    context = client_context(served.pki, served.pki.odd_uri_json("https://example.com/web"))
    with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError, TimeoutError):
        await tls_roundtrip(served, context)
    snapshot = served.inbound.tally.snapshot()
    refused = {k: v for k, v in snapshot.items() if k.startswith("inbound.refused.") and v}
    assert refused == {"inbound.refused.foreign-trust-domain": 1}, refused  # name constraints


async def test_a_deny_cuts_open_connections_it_denies_and_only_those(served: Served) -> None:
    served.inbound.policy.intentions = IntentionSet(
        [Intention("web", "db", action="allow"), Intention("api", "db", action="allow")]
    )
    conns = {}
    for name in ("web", "api"):
        context = client_context(served.pki, served.pki.leaf_json(name))
        conns[name] = await asyncio.open_connection("127.0.0.1", served.port, ssl=context)
        conns[name][1].write(b"one")
        assert await asyncio.wait_for(conns[name][0].readexactly(3), 5) == b"one"
    served.inbound.policy.intentions = IntentionSet(
        [Intention("web", "db", action="deny"), Intention("api", "db", action="allow")]
    )
    served.inbound.recheck()
    with contextlib.suppress(OSError, ssl.SSLError):
        assert await asyncio.wait_for(conns["web"][0].read(10), 2) == b""
    reader, writer = conns["api"]
    writer.write(b"two")
    assert await asyncio.wait_for(reader.readexactly(3), 5) == b"two"
    assert served.inbound.tally.snapshot()["inbound.terminated"] == 1
    for _, w in conns.values():
        w.close()


async def test_a_client_stalling_mid_handshake_is_cut_and_others_flow(served: Served) -> None:
    stalled = []
    for _ in range(200):  # many connections that send half a ClientHello and stall
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")
        stalled.append((reader, writer))
    web = client_context(served.pki, served.pki.leaf_json("web"))
    assert await tls_roundtrip(served, web) == b"hi"  # served while 200 stall

    async def all_cut() -> bool:
        return await refused_count(served, tally.HANDSHAKE_TIMEOUT) == 200

    await eventually_async(all_cut, 10)
    reader, _ = stalled[0]
    assert await asyncio.wait_for(reader.read(10), 2) == b""  # the stalled one was closed
    for _, writer in stalled:
        writer.close()


async def test_a_handshake_cut_at_its_timeout_leaves_no_error_for_the_loop(served: Served) -> None:
    """A client that stalls mid-handshake is cut at `handshake_s`, after the inbound port
    stopped waiting: the handshake's failure, set as its connection went, was never read,
    and asyncio logged "Future exception was never retrieved" at ERROR for each one (the
    refusal itself is counted and logged once a minute). Found by a review."""
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _, context: reported.append(context))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
        writer.write(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")  # half a ClientHello

        async def cut() -> bool:
            return await refused_count(served, tally.HANDSHAKE_TIMEOUT) == 1

        await eventually_async(cut, 5)
        assert await asyncio.wait_for(reader.read(), 5) == b""  # the proxy closed it
        for _ in range(3):  # (its connection_lost, which sets the handshake's failure, runs)
            await asyncio.sleep(0)
        gc.collect()
        writer.close()
        assert [context["message"] for context in reported] == []
    finally:
        loop.set_exception_handler(None)


async def test_a_slow_reader_never_makes_the_proxy_buffer_without_bound(served: Served) -> None:
    """The app stops reading: the proxy stops reading the client, and its buffers stay small."""
    held = asyncio.Event()

    async def never_reads(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await held.wait()
        writer.close()

    app = await asyncio.start_server(never_reads, "127.0.0.1", 0)
    served.inbound.config = replace(served.inbound.config,
                                    local_port=app.sockets[0].getsockname()[1])  # fmt: skip
    web = client_context(served.pki, served.pki.leaf_json("web"))
    _, writer = await asyncio.open_connection("127.0.0.1", served.port, ssl=web)
    chunk = b"z" * (1 << 20)
    sent = 0
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(3):
            while sent < 512 << 20:  # far more than any buffer on the way could hold
                writer.write(chunk)
                await writer.drain()  # blocks once the proxy stops reading
                sent += len(chunk)
    assert sent < 64 << 20, "the proxy kept reading from a client whose app does not read"
    (relay,) = served.inbound.open
    buffered = sum(s.transport.get_write_buffer_size() for s in relay.sides if s.transport)
    assert buffered < 4 << 20, buffered
    held.set()
    writer.close()
    app.close()


async def test_openssl_s_client_without_a_certificate_is_refused(served: Served) -> None:
    require("openssl")
    openssl = find_binary("openssl")
    assert openssl is not None
    proc = await asyncio.create_subprocess_exec(
        openssl, "s_client", "-connect", f"127.0.0.1:{served.port}", "-tls1_3", "-quiet",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, err = await asyncio.wait_for(proc.communicate(b"GET / HTTP/1.0\r\n\r\n"), 10)
    assert b"certificate required" in err.lower() or proc.returncode != 0, err

    async def counted() -> bool:
        return await refused_count(served, tally.NO_CERTIFICATE) == 1

    await eventually_async(counted, 5)


async def _ok(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """An HTTP/1.1 app answering `ok` to every request head, keep-alive."""
    with contextlib.suppress(OSError, asyncio.IncompleteReadError):
        while await reader.readuntil(b"\r\n\r\n"):
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
    writer.close()


async def test_a_revoked_client_is_cut_mid_http_session_and_refused_after() -> None:
    app = await asyncio.start_server(_ok, "127.0.0.1", 0)
    pki = Pki()
    current = {"identity": pki.identity("db")}
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    port = free_port("127.0.0.1")
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=port, protocol="http",
                         local_port=app.sockets[0].getsockname()[1])  # fmt: skip
    inbound = Inbound(config, lambda: current["identity"], policy, tally.Tally())
    await inbound.start()
    web = client_context(pki, pki.leaf_json("web"))
    request = b"GET / HTTP/1.1\r\nHost: db\r\n\r\n"
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=web)
        writer.write(request)
        head = await asyncio.wait_for(reader.readuntil(b"ok"), 5)
        assert head.startswith(b"HTTP/1.1 200")
        assert inbound.recheck_peers() == 0  # nothing revoked: the session stays
        issuer = key_id(pki.mesh.intermediate.certificate.public_key())
        current["identity"] = with_revoked(current["identity"], frozenset({issuer}))
        assert inbound.recheck_peers() == 1
        with contextlib.suppress(OSError, ssl.SSLError):
            assert await asyncio.wait_for(reader.read(10), 2) == b""
        writer.close()
        assert inbound.tally.snapshot()["inbound.terminated"] == 1
        with contextlib.suppress(OSError, ssl.SSLError, asyncio.IncompleteReadError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=web)
            writer.write(request)
            assert await asyncio.wait_for(reader.read(10), 5) == b""
        assert inbound.tally.snapshot()["inbound.refused.revoked"] == 1
    finally:
        inbound.stop_listening()
        inbound.terminate_all()
        app.close()


def _db_runtime(pki: Pki, app_port: int) -> tuple[ProxyRuntime, ProxyConfig]:
    """db's sidecar in this process, its inbound on a free port to `app_port`, with the
    agent's answers handed in as its watches would: db's leaf, web -> db allowed."""
    config = ProxyConfig(service="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"),
                         local_port=app_port)  # fmt: skip
    runtime = ProxyRuntime(config, AgentHttp("http://127.0.0.1:1"))
    runtime.trust.identity = pki.identity("db")
    runtime.policy.intentions = IntentionSet([Intention("web", "db", action="allow")])
    runtime.policy.known = True
    return runtime, config


@pytest.mark.parametrize("change", ["revoked", "denied"])
async def test_a_retired_listeners_connections_are_still_judged(change: str) -> None:
    """The inbound port moved (a registration change): the old listener's connection goes
    on, and a revocation or a deny that comes later reaches it as it reaches the current
    listener's (ProxyRuntime, the agent's answers handed in as its watches would)."""

    async def echo(pair: tuple[asyncio.StreamReader, asyncio.StreamWriter], data: bytes) -> bytes:
        pair[1].write(data)
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            return await asyncio.wait_for(pair[0].readexactly(len(data)), 3)
        return b""

    app = await asyncio.start_server(echo_until_end, "127.0.0.1", 0)
    pki = Pki()
    runtime, config = _db_runtime(pki, app.sockets[0].getsockname()[1])
    try:
        await runtime._apply(config, first=True)
        web = client_context(pki, pki.leaf_json("web"))
        kept = await asyncio.open_connection("127.0.0.1", config.bind_port, ssl=web)
        assert await echo(kept, b"one") == b"one"
        await runtime._apply(replace(config, bind_port=free_port("127.0.0.1")))
        assert len(runtime.retired) == 1 and await echo(kept, b"two") == b"two"
        if change == "revoked":
            issuer = key_id(pki.mesh.intermediate.certificate.public_key()).hex()
            runtime.trust.on_revoked([{"IntermediateKeyID": issuer}])
        else:
            await runtime._on_intentions(b'{"db": []}')  # no intention left, default deny
        assert await echo(kept, b"three") == b""
        assert runtime.open_connections() == 0
    finally:
        for listener in runtime._listeners():
            listener.stop_listening()
            listener.terminate_all()
        app.close()


async def test_a_connection_in_its_handshake_is_counted_and_never_joins_after_the_end() -> None:
    """A drain waits for a connection still in its handshake (it is open: `open_count`), and
    once the listener ends (`terminate_all`, a drain's last step, or a --node sidecar
    removed) that connection is closed: it used to finish its handshake afterwards and be
    joined to the app with nothing left to enforce policy on it."""
    reached: list[bytes] = []

    async def app_side(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        reached.append(await reader.read(100))
        writer.close()

    app = await asyncio.start_server(app_side, "127.0.0.1", 0)
    pki = Pki()
    runtime, config = _db_runtime(pki, app.sockets[0].getsockname()[1])
    try:
        await runtime._apply(config, first=True)
        pipe = TlsPipe(client_context(pki, pki.leaf_json("web")), server_side=False)
        reader, writer = await asyncio.open_connection("127.0.0.1", config.bind_port)
        writer.write(pipe.start())
        while not pipe.handshaken:  # the server's flight read; the client's last one held
            pipe.feed(await asyncio.wait_for(reader.read(65536), 5))
        await eventually_async(lambda: runtime.open_connections() == 1, 5)
        assert runtime.inbound is not None
        runtime.inbound.stop_listening()
        runtime.inbound.terminate_all()
        writer.write(pipe.pending() + pipe.encrypt(b"after the end"))
        with contextlib.suppress(ConnectionError):
            assert await asyncio.wait_for(reader.read(65536), 5) == b""
        await eventually_async(lambda: runtime.open_connections() == 0, 5)
        assert reached == []
    finally:
        for listener in runtime._listeners():
            listener.stop_listening()
            listener.terminate_all()
        app.close()


async def test_a_metrics_port_that_is_taken_is_tried_again(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:  # fmt: skip
    """The metrics port still held (by the sidecar this one replaces under --node, until its
    drain ends) is tried again every RETRY_S, as the inbound port is; it used to be given up
    for good after one error."""
    monkeypatch.setattr(runtime_module, "RETRY_S", 0.05)
    pki = Pki()
    holder = socket.create_server(("127.0.0.1", 0))
    port = holder.getsockname()[1]
    config = ProxyConfig(service="db", metrics_addr=f"127.0.0.1:{port}")
    runtime = ProxyRuntime(config, AgentHttp("http://127.0.0.1:1"))
    runtime.trust.identity = pki.identity("db")
    runtime.policy.known = True
    try:
        await runtime._apply(config, first=True)
        assert runtime.metrics_server is None
        holder.close()
        await eventually_async(lambda: runtime.metrics_server is not None, 5)
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        assert (await asyncio.wait_for(reader.read(100), 5)).startswith(b"HTTP/1.1 200")
        writer.close()
    finally:
        holder.close()
        if runtime.metrics_server is not None:
            runtime.metrics_server.close()


async def test_an_upstream_port_that_is_taken_is_tried_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An upstream whose local port another program holds at start (or a sidecar still
    draining, under --node) is tried again every RETRY_S while the registration wants it,
    as the inbound and metrics ports are; it used to be logged once and never served."""
    monkeypatch.setattr(warm, "RETRY_S", 0.05)
    monkeypatch.setattr(warm, "WARM_S", 0.05)  # no agent answers here: listen at once
    identity = Pki().identity("web")
    holder = socket.create_server(("127.0.0.1", 0))
    upstream = Upstream("db", holder.getsockname()[1])
    upstreams = UpstreamSet(AgentHttp("http://127.0.0.1:1"), lambda: identity, tally.Tally(),
                            EdgeMetrics(""), lambda: None, [])  # fmt: skip
    try:
        await upstreams.change([upstream])
        assert upstream not in upstreams.current
        holder.close()
        await eventually_async(lambda: upstream in upstreams.current, 5)
        _, writer = await asyncio.open_connection("127.0.0.1", upstream.bind_port)
        writer.close()
        await upstreams.change([])  # no longer wanted: nothing more is tried
    finally:
        holder.close()
        upstreams.stop()
        upstreams.stop_watches()


async def test_a_deny_that_comes_while_the_app_connection_is_made_cuts_it() -> None:
    """An allowed connection is in `open` (and so reached by a policy change) only once its
    app connection is made. A deny that comes in between (here: the app's listen queue is
    full, so the connection waits for a slot) must still cut it when it joins."""
    pki = Pki()
    identity = pki.identity("db")
    policy = Policy()
    policy.intentions, policy.known = IntentionSet([Intention("web", "db", action="allow")]), True
    with socket.socket() as app:
        app.bind(("127.0.0.1", 0))
        app.listen(0)
        fillers, taken = [socket.socket() for _ in range(3)], []
        for filler in fillers:
            filler.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                filler.connect(app.getsockname())
        config = ProxyConfig(service="db", bind_address="127.0.0.1",
                             bind_port=free_port("127.0.0.1"), local_port=app.getsockname()[1],
                             timeouts=Timeouts(local_connect_s=8.0))  # fmt: skip
        inbound = Inbound(config, lambda: identity, policy, tally.Tally())
        await inbound.start()
        try:
            web = client_context(pki, pki.leaf_json("web"))
            reader, writer = await asyncio.open_connection("127.0.0.1", config.bind_port, ssl=web)
            allowed = inbound.metrics.inbound("web")
            await eventually_async(lambda: allowed.allowed == 1)  # its app connection waits
            assert inbound._tasks and not inbound.open
            policy.intentions = IntentionSet([Intention("web", "db", action="deny")])
            inbound.recheck()
            app.setblocking(False)
            # room: the app takes its connections (and keeps them), the waiting one is made
            await eventually_async(lambda: _take(app, taken) and not inbound._tasks, 10)
            got = await asyncio.wait_for(reader.read(), 5)
            assert got == b"" and not inbound.open  # cut once joined
            writer.close()
        finally:
            inbound.stop_listening()
            inbound.terminate_all()
            for conn in [*fillers, *taken]:
                conn.close()


def _take(listener: socket.socket, taken: list[socket.socket]) -> bool:
    """Take every connection waiting on `listener`'s queue; True (for a poll to go on)."""
    with contextlib.suppress(BlockingIOError):
        while True:
            taken.append(listener.accept()[0])
    return True
