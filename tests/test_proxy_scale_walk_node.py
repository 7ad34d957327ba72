"""`connect proxy --node` with many sidecars calling one service: one watch of it, not one each.

Eight sidecars of one node proxy, each given an upstream `db`: before,
each kept its own blocking query on db's instances, and every change of
db was answered, fetched, read and applied eight times (walked with 30
sidecars and a 2,000-instance db whose health flapped: the node proxy at
86% of a core, the agent at 67%). Now the process keeps one watch per
service (proxy/shared_watch.py): the agent holds one more blocking query
once all eight have the upstream, and each sidecar still gets db's
instances (a round trip through each). A stand-in agent shows the rules
of sharing: a late subscriber, the order of answers, the last one out.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from gossamer.proxy import shared_watch
from gossamer.proxy.agent_http import AgentHttp
from gossamer.proxy.health_rows import Instance
from gossamer.proxy.shared_watch import Subscription
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.http_app import ServeApp
from tests.harness.poll import eventually, eventually_async
from tests.proxy_support import App, ProxyProc, listening, roundtrip, stop_mesh

SIDECARS = 8


def _register(agent: AgentProc, name: str, app: int, inbound: int,
              upstreams: list[dict[str, Any]]) -> None:  # fmt: skip
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": app, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Upstreams": upstreams}}},
    })  # fmt: skip


def _parked(agent: AgentProc) -> int:
    return int(agent.get("/v1/agent/self")["Gossamer"]["BlockingQueries"])


def test_sidecars_of_a_node_calling_one_service_share_one_watch_of_it(
    cluster: Cluster, tmp_path: Path
) -> None:
    (agent,) = cluster.start(1, prefix="sn")
    app = App("127.0.0.1").start()
    inbound = {f"svc{i}": free_port(agent.ip) for i in range(SIDECARS)}
    ups = {name: free_port("127.0.0.1") for name in inbound}
    _register(agent, "db", app.port, free_port(agent.ip), [])
    for name, port in inbound.items():
        _register(agent, name, app.port, port, [])
    agent.put("/v1/config", {"Kind": "service-intentions", "Name": "db",
                             "Sources": [{"Name": "*", "Action": "allow"}]})  # fmt: skip
    node = ProxyProc(["--node", "--http-addr", agent.http], tmp_path / "node.log").start()
    try:
        eventually(lambda: all(listening(agent.ip, p) for p in inbound.values()), 30,
                   what=f"every sidecar serving; log:\n{node.log()[-2000:]}")  # fmt: skip
        before = eventually(lambda: _steady(agent), 10, what="the parked queries steady")
        for name, port in inbound.items():
            _register(agent, name, app.port, port, [{"DestinationName": "db",
                                                     "LocalBindPort": ups[name]}])  # fmt: skip
        eventually(lambda: all(listening("127.0.0.1", p) for p in ups.values()), 30,
                   what="every sidecar's upstream db listening")  # fmt: skip
        eventually(lambda: _steady(agent) == before + 1, 10,
                   what=f"one more parked query than {before}, not one per sidecar")  # fmt: skip
        for port in ups.values():
            eventually(lambda p=port: roundtrip(("127.0.0.1", p), b"a") == b"a<eof>", 30,
                       what=f"a round trip through 127.0.0.1:{port}")  # fmt: skip
    finally:
        assert not stop_mesh(cluster, [node], [app])


def _steady(agent: AgentProc) -> int:
    """The agent's parked blocking queries, once two reads in a row agree (0: not yet)."""
    first = _parked(agent)
    return first if first and _parked(agent) == first else 0


async def test_a_late_subscriber_gets_the_answer_the_watch_has_and_the_last_stops_it(
    serve_app: ServeApp,
) -> None:
    """Against a stand-in agent: a second subscriber to the same service gets the answer the
    watch already has at once (it asks nothing more), then later answers with the first;
    the watch stops with the last subscriber, and the next one asks afresh."""
    asks: list[str] = []
    version = [1]
    changed = asyncio.Event()

    async def health(request: web.Request) -> web.Response:
        asks.append(request.query.get("index", ""))
        if request.query.get("index", "0") == str(version[0]):
            changed.clear()
            await changed.wait()  # held until the next change
        row = {"Node": {"Address": "10.0.0.1"}, "Service": {"Port": 9000 + version[0]}}
        return web.json_response([row], headers={"X-Consul-Index": str(version[0])})

    app = web.Application()
    app.router.add_get("/v1/health/connect/db", health)
    agent = AgentHttp((await serve_app(app)).base)
    first: list[list[Instance]] = []
    second: list[list[Instance]] = []
    one = Subscription(agent, "db", first.append)
    one.start()
    await eventually_async(lambda: first == [[("10.0.0.1", 9001)]])
    two = Subscription(agent, "db", second.append)
    two.start()
    await eventually_async(lambda: second == [[("10.0.0.1", 9001)]])
    version[0] = 2
    changed.set()
    await eventually_async(lambda: first[-1:] == second[-1:] == [[("10.0.0.1", 9002)]])
    assert len(first) == len(second) == 2
    assert asks.count("") + asks.count("0") == 1  # one watch asked afresh, once
    one.stop()
    two.stop()
    assert not shared_watch._HUBS
    three: list[list[Instance]] = []
    again = Subscription(agent, "db", three.append)
    again.start()
    try:
        await eventually_async(lambda: three == [[("10.0.0.1", 9002)]])
        assert asks.count("") + asks.count("0") == 2
    finally:
        again.stop()
