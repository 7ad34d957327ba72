"""A sidecar opens its ports only once serving on them can succeed (proxy/warm.py).

A real agent, real sidecars and a real echo app. Between `web`'s sidecar
and its agent sits a pass-through HTTP proxy (aiohttp, on a thread) that
forwards every request to the real agent unchanged, except that it holds
the answer to web's leaf certificate until the test lets it go: the only
way to make the start-up window, a few milliseconds otherwise, wide enough
to look at. While the leaf is held, web's upstream port refuses connects
(before the fix it accepted them and then closed them, having no
certificate to reach db with); once the leaf comes, the first connection
goes through.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import (
    App,
    ProxyProc,
    healthy_sidecars,
    listening,
    register_pair,
    roundtrip,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
)

_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding"}


class LeafHolder:
    """An HTTP proxy to `agent_url` that holds web's leaf certificate until `release()`."""

    def __init__(self, agent_url: str) -> None:
        self.agent_url = agent_url
        self.held: list[str] = []  # leaf paths asked for while held
        self.answered: list[str] = []  # paths whose answers went back to the proxy
        self.port = free_port("127.0.0.1")
        self._loop = asyncio.new_event_loop()
        self._released = asyncio.Event()
        self._started = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LeafHolder:
        self._thread.start()
        assert self._started.wait(10), "the leaf holder did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def release(self) -> None:
        self._loop.call_soon_threadsafe(self._released.set)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._serve())
        self._started.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._forward)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", self.port).start()

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if request.path == "/v1/agent/connect/ca/leaf/web":
            self.held.append(request.path)
            await self._released.wait()
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP | {"host"}}
        async with self._session.request(
            request.method,
            self.agent_url + request.path_qs,
            data=await request.read(),
            headers=headers,
        ) as got:
            body = await got.read()
            kept = {k: v for k, v in got.headers.items() if k.lower() not in _HOP}
        self.answered.append(request.path)
        return web.Response(status=got.status, body=body, headers=kept)


@dataclass
class Pair:
    agent: AgentProc
    tmp: Path
    up_port: int  # web's upstream to db
    db_in: int
    web_in: int


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """An agent with `db` (an echo app) and `web` (upstream db) registered, web -> db allowed;
    each test starts the sidecars it needs and stops them."""
    tmp = tmp_path_factory.mktemp("proxy-warm")
    c = Cluster(tmp)
    app = App("127.0.0.1").start()
    try:
        agent = c.new_agent("pw1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        up_port = free_port("127.0.0.1")
        db_in, web_in = register_pair(agent, app.port, up_port)
        set_intention(agent, "web", "db", "allow")
        yield Pair(agent, tmp, up_port, db_in, web_in)
    finally:
        leftovers = stop_mesh(c, [], [app])
    assert not leftovers, f"processes left behind: {leftovers}"


def _through_holder(pair: Pair, holder: LeafHolder, *args: str) -> ProxyProc:
    name = "-".join(a.strip("-") for a in args) or "node"
    return ProxyProc([*args, "--http-addr", f"http://127.0.0.1:{holder.port}"],
                     pair.tmp / f"proxy-{name}.log").start()  # fmt: skip


def _waiting(holder: LeafHolder) -> None:
    """Until the proxy asked for web's leaf and its other first answers went back: a proxy
    that listens at once (as before warm.py) has opened its ports by then, since it opens
    them right after starting its watches."""
    eventually(lambda: holder.held, 20, what="the sidecar to ask for web's leaf")
    eventually(lambda: {"/v1/agent/connect/ca/roots", "/v1/connect/intentions/match"}
               <= set(holder.answered), 20, what="the other answers")  # fmt: skip


def test_no_port_opens_before_the_proxy_has_its_certificate(pair: Pair) -> None:
    proxies: list[ProxyProc] = []
    try:
        proxies.append(db := sidecar(pair.agent, pair.tmp, "db"))
        wait_listening(pair.agent.ip, pair.db_in, db)
        eventually(lambda: healthy_sidecars(pair.agent, "db") == 1, 30, what="db's sidecar")
        with LeafHolder(pair.agent.http) as holder:
            proxies.append(web := _through_holder(pair, holder, "--sidecar-for", "web"))
            _waiting(holder)
            assert not listening("127.0.0.1", pair.up_port), "the upstream port opened early"
            assert not listening(pair.agent.ip, pair.web_in), "the inbound port opened early"
            holder.release()
            wait_listening("127.0.0.1", pair.up_port, web)
            assert roundtrip(("127.0.0.1", pair.up_port), b"first") == b"first<eof>"
    finally:
        assert [proxy.stop() for proxy in proxies] == [0] * len(proxies)


def test_sigterm_while_waiting_for_the_certificate_exits_0(pair: Pair) -> None:
    with LeafHolder(pair.agent.http) as holder:
        web = _through_holder(pair, holder, "--sidecar-for", "web")
        try:
            _waiting(holder)
        finally:
            assert web.stop(timeout=10) == 0
    assert "SIGTERM before the ports opened" in web.log()


def test_one_node_proxy_serves_a_sidecar_while_another_waits(pair: Pair) -> None:
    """`--node`: web's sidecar waiting for its leaf holds up nothing of db's."""
    with LeafHolder(pair.agent.http) as holder:
        node = _through_holder(pair, holder, "--node")
        try:
            wait_listening(pair.agent.ip, pair.db_in, node)
            _waiting(holder)
            assert not listening("127.0.0.1", pair.up_port)
            holder.release()
            wait_listening("127.0.0.1", pair.up_port, node)
            assert roundtrip(("127.0.0.1", pair.up_port), b"one process") == b"one process<eof>"
        finally:
            assert node.stop() == 0
