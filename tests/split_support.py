"""The canary mesh of tests/test_proxy_splits.py and bench/split_apply.py: two agents, two apps.

`api` and `api-canary` (each an aiohttp app behind its own sidecar,
`protocol: http`) run on s1; on s2, `web` has an HTTP upstream of `api`
(pooled, split per request) and `web-l4` a TCP one (split per connection).
Each agent's sidecars are served by one `connect proxy --node`. The
canary's sidecar takes `protocol: http` from its `service-defaults` entry
(its registration sets none), and callers reach it through an L7
intention, which only the HTTP inbound path allows. `one()`
sends a request and says which app took it, read from the apps themselves.
"""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import consul

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    set_intention,
    wait_listening,
    web_body,
)


@dataclass
class Mesh:
    writer: consul.Consul  # s1, where the apps run
    client_agent: str  # s2's HTTP address, where web's proxy runs
    api: HttpApp
    canary: HttpApp
    http_up: tuple[str, int]  # web's HTTP upstream of api (split per request)
    tcp_up: tuple[str, int]  # web's TCP upstream of api (split per connection)
    client_proxy: ProxyProc  # s2's `connect proxy --node` (it logs each split it applies)


def _app_service(agent: AgentProc, name: str, app: HttpApp, config: dict[str, str]) -> int:
    inbound = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": app.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": config}}},
    })  # fmt: skip
    return inbound


@contextmanager
def split_mesh(tmp: Path) -> Iterator[Mesh]:
    """The mesh, ready (a first request answered by `api`); everything stopped on exit."""
    c = Cluster(tmp)
    api, canary = HttpApp().start(), HttpApp().start()
    proxies: list[ProxyProc] = []
    try:
        s1 = c.new_agent("s1").start()
        s2 = c.new_agent("s2", "--join", s1.serf_addr).start()
        for agent in (s1, s2):
            eventually(agent.enrolled, 20, what=f"{agent.name}'s certificate")
        # api's sidecar says `protocol: http`; api-canary's says nothing and gets it from its
        # service-defaults, which the L7 intention below needs (at L4 it would be a deny)
        s1.put("/v1/config", {"Kind": "service-defaults", "Name": "api-canary", "Protocol": "http"})
        ins = {"api": _app_service(s1, "api", api, {"protocol": "http"}),
               "api-canary": _app_service(s1, "api-canary", canary, {})}  # fmt: skip
        http_up, tcp_up = free_port("127.0.0.1"), free_port("127.0.0.1")
        up = {"DestinationName": "api", "LocalBindPort": http_up, "Config": {"protocol": "http"}}
        s2.put("/v1/agent/service/register", web_body(s2, free_port(s2.ip), [up]))
        l4 = web_body(s2, free_port(s2.ip), [{"DestinationName": "api", "LocalBindPort": tcp_up}])
        s2.put("/v1/agent/service/register", l4 | {"Name": "web-l4", "ID": "web-l4"})
        for source in ("web", "web-l4"):
            set_intention(s1, source, "api", "allow")
            l7 = {"Permissions": [{"Action": "allow", "HTTP": {"PathPrefix": "/echo"}}]}
            s1.put(f"/v1/connect/intentions/exact?source={source}&destination=api-canary", l7)
        for agent in (s1, s2):
            log = tmp / f"proxy-{agent.name}.log"
            argv = ["--node", "--drain-timeout", "1", "--http-addr", agent.http]
            proxies.append(ProxyProc(argv, log).start())
        for name in ("api", "api-canary"):
            wait_listening(s1.ip, ins[name], proxies[0])
        wait_listening("127.0.0.1", http_up, proxies[1])
        wait_listening("127.0.0.1", tcp_up, proxies[1])
        for name in ("api", "api-canary"):
            eventually(lambda n=name: healthy_sidecars(s2, n) == 1, 30, what=f"{name} on s2")
        writer = consul.Consul(s1.ip, s1.http_port)
        mesh = Mesh(writer, s2.http, api, canary, ("127.0.0.1", http_up), ("127.0.0.1", tcp_up),
                    proxies[1])  # fmt: skip
        eventually(lambda: one(mesh) == "api", 20, what="a first request through web's proxy")
        yield mesh
    finally:
        for proxy in reversed(proxies):  # clients first: their pooled connections close
            proxy.stop()
        api.stop()
        canary.stop()
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def served_by(mesh: Mesh, send: Callable[[], None]) -> str:
    """Which app took the request `send()` makes: the one whose request log grew."""
    before = len(mesh.api.seen), len(mesh.canary.seen)
    send()
    grown = len(mesh.api.seen) - before[0], len(mesh.canary.seen) - before[1]
    assert sum(grown) == 1, f"one request should reach one app, got {grown}"
    return "api" if grown[0] else "api-canary"


def one(mesh: Mesh, conn: http.client.HTTPConnection | None = None) -> str:
    """One GET over `conn` (a new connection when None), answered 200."""
    own = conn is None
    conn = conn or http.client.HTTPConnection(*mesh.http_up, timeout=10)

    def send() -> None:
        conn.request("GET", "/echo/split")
        response = conn.getresponse()
        got = response.status, response.read()
        assert got == (200, b"GET /echo/split "), f"answered {got}"  # (no rewrite here)

    try:
        return served_by(mesh, send)
    finally:
        if own:
            conn.close()
