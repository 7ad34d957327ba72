"""An upstream whose instances never stop changing: the sidecar takes its changes in bursts.

A stand-in agent (a real socket, the proxy's real `AgentHttp`, `Watch` and
`warm.open_upstream`) answers every ask about db's instances at once with a
new index and a new set, as an agent does while a large service's health
flaps. Before, the upstream's watch asked again as soon as it had applied
an answer: hundreds of asks a second, each a full answer to fetch, parse
and apply (with 1,000 instances, 0.7 MB), and as many for the agent to
build. Now it waits `INSTANCES_SETTLE_S` after each change it applied, so
a burst comes as one answer; the last set is the one applied once the
churn stops.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiohttp import web

from gossamer.proxy import shared_watch, tally, warm
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.config import Upstream
from gossamer.proxy.outbound import UpstreamListener
from tests.harness.cluster import free_port
from tests.harness.http_app import ServeApp
from tests.harness.poll import eventually_async


def _rows(n: int) -> list[dict[str, Any]]:
    """A health answer of 50 instances, the last one's port telling which answer it is."""
    rows = [{"Node": {"Address": "10.0.0.1"}, "Service": {"Address": f"10.1.0.{i}", "Port": 9000}}
            for i in range(1, 50)]  # fmt: skip
    return [*rows, {"Node": {"Address": "10.0.0.1"}, "Service": {"Address": "10.2.0.1",
                                                                 "Port": 10000 + n}}]  # fmt: skip


async def test_a_churning_upstream_is_asked_in_bursts_and_its_last_set_applied(
    serve_app: ServeApp,
) -> None:
    asks: list[float] = []
    index = itertools.count(1)
    churning = asyncio.Event()
    churning.set()

    async def health(request: web.Request) -> web.Response:
        asks.append(asyncio.get_running_loop().time())
        if not churning.is_set() and request.query.get("index", "0") != "0":
            await asyncio.sleep(30)  # quiet: the query is held
        n = next(index) if churning.is_set() else last[0]
        last[0] = n
        return web.json_response(_rows(n), headers={"X-Consul-Index": str(n)})

    last = [0]
    app = web.Application()
    app.router.add_get("/v1/health/connect/db", health)
    where = await serve_app(app)
    upstream = Upstream(name="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"))
    listener = UpstreamListener(upstream, lambda: None, tally.Tally())
    watch = await warm.open_upstream(AgentHttp(where.base), listener, lambda: True)
    assert watch is not None
    try:
        started = len(asks)
        await asyncio.sleep(1.0)  # a second of churn
        churning.clear()
        asked = len(asks) - started
        assert asked <= 10, f"{asked} asks in a second of churn"
        await eventually_async(lambda: ("10.2.0.1", 10000 + last[0]) in listener.instances)
        assert len(listener.instances) == 50  # the last answer's set, nothing of an older one
    finally:
        watch.stop()
        listener.stop_listening()


async def test_an_upstream_warmed_with_no_instance_hears_of_its_first_at_once(
    serve_app: ServeApp, monkeypatch: Any
) -> None:
    """The settle follows a change, not the first answer: an upstream that warmed on an
    empty answer (its instances not passing yet) asks again at once, so the first instance
    to pass is heard of as soon as the agent knows it. (Settling after the first answer
    too, a client sent as soon as the agent said "passing" found none; walked in
    test_proxy_walk_outbound's fixture.) A settle of 30 s here: only the order matters."""
    monkeypatch.setattr(shared_watch, "INSTANCES_SETTLE_S", 30.0)
    passing = asyncio.Event()

    async def health(request: web.Request) -> web.Response:
        if request.query.get("index", "0") == "0":
            return web.json_response([], headers={"X-Consul-Index": "1"})
        await passing.wait()
        return web.json_response(_rows(2)[-1:], headers={"X-Consul-Index": "2"})

    app = web.Application()
    app.router.add_get("/v1/health/connect/db", health)
    where = await serve_app(app)
    upstream = Upstream(name="db", bind_address="127.0.0.1", bind_port=free_port("127.0.0.1"))
    listener = UpstreamListener(upstream, lambda: None, tally.Tally())
    watch = await warm.open_upstream(AgentHttp(where.base), listener, lambda: True)
    assert watch is not None and listener.instances == []
    try:
        passing.set()
        await eventually_async(lambda: listener.instances == [("10.2.0.1", 10002)], timeout=5)
    finally:
        watch.stop()
        listener.stop_listening()
