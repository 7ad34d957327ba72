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
from pathlib import Path

import aiohttp
from aiohttp import web

from tests.harness.cluster import Cluster, free_port
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
    """An HTTP proxy to `agent_url` that holds leaf certificate answers until `release()`."""

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
        if request.path.startswith("/v1/agent/connect/ca/leaf/"):
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


def test_no_port_opens_before_the_proxy_has_its_certificate(tmp_path: Path) -> None:
    c = Cluster(tmp_path)
    app = App("127.0.0.1").start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("pw1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        up_port = free_port("127.0.0.1")
        db_in, web_in = register_pair(agent, app.port, up_port)
        set_intention(agent, "web", "db", "allow")
        proxies.append(db_proxy := sidecar(agent, tmp_path, "db"))
        wait_listening(agent.ip, db_in, db_proxy)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        with LeafHolder(agent.http) as holder:
            web_proxy = ProxyProc(["--sidecar-for", "web", "--http-addr",
                                   f"http://127.0.0.1:{holder.port}"],
                                  tmp_path / "proxy-web.log").start()  # fmt: skip
            proxies.append(web_proxy)
            eventually(lambda: holder.held, 20, what="web's sidecar to ask for its leaf")
            # Its other watches' answers came back: a proxy that listens at once (as before)
            # did so before these, since it opens its ports right after starting its watches.
            eventually(lambda: {"/v1/agent/connect/ca/roots", "/v1/connect/intentions/match"}
                       <= set(holder.answered), 20, what="the other answers")  # fmt: skip
            assert not listening("127.0.0.1", up_port), "the upstream port opened with no leaf"
            assert not listening(agent.ip, web_in), "the inbound port opened with no leaf"
            holder.release()
            wait_listening("127.0.0.1", up_port, web_proxy)
            assert roundtrip(("127.0.0.1", up_port), b"first") == b"first<eof>"
    finally:
        leftovers = stop_mesh(c, proxies, [app])
    assert not leftovers, f"processes left behind: {leftovers}"
