"""Traffic splitting (service-splitter) through real agents, real proxies and two real apps.

Two agents: `api` and `api-canary` (each an aiohttp app behind its own
sidecar, `protocol: http`) run on s1; on s2, `web` has an HTTP upstream of
`api` (pooled, split per request) and `web-l4` a TCP one (split per
connection). Each agent's sidecars are served by one `connect proxy --node`.
The splitter is written on s1 with py-consul (and with the CLI on s2) and
reaches web's proxy on s2 by replication and a blocking watch; which app
served is read from the apps themselves.

Tolerance: a request goes to the canary with p = 0.1, independently, so
over n = 1,000 requests the count is Binomial(n, p): mean 100, sd
sqrt(n p (1-p)) = 9.5. The test allows 4 sd (62-138): a correct proxy
fails it about once in 16,000 runs, while a proxy that ignored the split
(0), split per connection on the pooled path (0 or 1,000), or weighted it
wrongly by 5 points or more (50 / 150) fails it.
"""

from __future__ import annotations

import http.client
import json
import math
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import consul
import pytest

from tests.harness.cli import expect
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

N, P, SIGMAS = 1000, 0.10, 4.0


@dataclass
class Mesh:
    writer: consul.Consul  # s1, where the apps run
    client_agent: str  # s2's HTTP address, where web's proxy runs
    api: HttpApp
    canary: HttpApp
    http_up: tuple[str, int]  # web's HTTP upstream of api (split per request)
    tcp_up: tuple[str, int]  # web's TCP upstream of api (split per connection)


def _app_service(agent: AgentProc, name: str, app: HttpApp) -> int:
    inbound = free_port(agent.ip)
    agent.put("/v1/agent/service/register", {
        "Name": name, "ID": name, "Port": app.port, "Address": agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Address": agent.ip,
                                       "Proxy": {"Config": {"protocol": "http"}}}},
    })  # fmt: skip
    return inbound


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp: Path = tmp_path_factory.mktemp("splits")
    c = Cluster(tmp)
    api, canary = HttpApp().start(), HttpApp().start()
    proxies: list[ProxyProc] = []
    try:
        s1 = c.new_agent("s1").start()
        s2 = c.new_agent("s2", "--join", s1.serf_addr).start()
        for agent in (s1, s2):
            eventually(agent.enrolled, 20, what=f"{agent.name}'s certificate")
        apps = (("api", api), ("api-canary", canary))
        ins = {name: _app_service(s1, name, app) for name, app in apps}
        http_up, tcp_up = free_port("127.0.0.1"), free_port("127.0.0.1")
        up = {"DestinationName": "api", "LocalBindPort": http_up, "Config": {"protocol": "http"}}
        s2.put("/v1/agent/service/register", web_body(s2, free_port(s2.ip), [up]))
        l4 = web_body(s2, free_port(s2.ip), [{"DestinationName": "api", "LocalBindPort": tcp_up}])
        s2.put("/v1/agent/service/register", l4 | {"Name": "web-l4", "ID": "web-l4"})
        for source in ("web", "web-l4"):
            for target in ("api", "api-canary"):
                set_intention(s1, source, target, "allow")
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
        mesh = Mesh(writer, s2.http, api, canary, ("127.0.0.1", http_up), ("127.0.0.1", tcp_up))
        eventually(lambda: _one(mesh) == "api", 20, what="a first request through web's proxy")
        yield mesh
    finally:
        for proxy in reversed(proxies):  # clients first: their pooled connections close
            proxy.stop()
        api.stop()
        canary.stop()
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def _served(mesh: Mesh, send: object) -> str:
    """Which app took the request `send()` makes: the one whose request log grew."""
    before = len(mesh.api.seen), len(mesh.canary.seen)
    assert callable(send)
    send()
    grown = len(mesh.api.seen) - before[0], len(mesh.canary.seen) - before[1]
    assert sum(grown) == 1, f"one request should reach one app, got {grown}"
    return "api" if grown[0] else "api-canary"


def _one(mesh: Mesh, conn: http.client.HTTPConnection | None = None) -> str:
    """One GET over `conn` (a new connection when None), answered 200."""
    own = conn is None
    conn = conn or http.client.HTTPConnection(*mesh.http_up, timeout=10)

    def send() -> None:
        conn.request("GET", "/echo/split")
        response = conn.getresponse()
        assert (response.status, response.read()) == (200, b"GET /echo/split ")

    try:
        return _served(mesh, send)
    finally:
        if own:
            conn.close()


def _tcp(mesh: Mesh) -> str:
    """One request on its own connection through the TCP upstream (decided per connection)."""

    def send() -> None:
        with socket.create_connection(mesh.tcp_up, timeout=10) as s:
            s.sendall(b"GET /echo/l4 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200")

    return _served(mesh, send)


def _splits(api: float, canary: float) -> list[dict[str, object]]:
    return [{"Weight": api, "Service": "api"}, {"Weight": canary, "Service": "api-canary"}]


def _split(mesh: Mesh, api: float, canary: float) -> None:
    assert mesh.writer.config.set("service-splitter", "api", {"Splits": _splits(api, canary)})


def _all_canary(mesh: Mesh, conn: http.client.HTTPConnection, n: int) -> bool:
    return all(_one(mesh, conn) == "api-canary" for _ in range(n))


def test_a_90_10_split_over_1000_requests_then_0_100_moves_every_request(
    mesh: Mesh, tmp_path: Path
) -> None:
    conn = http.client.HTTPConnection(*mesh.http_up, timeout=10)
    _split(mesh, 90, 10)
    # Applied once a run of 30 requests is not all api (probability 0.9**30 = 4 % per try).
    eventually(lambda: any(_one(mesh, conn) == "api-canary" for _ in range(30)), 20,
               what="the 90/10 split to reach web's proxy")  # fmt: skip
    to_canary = sum(_one(mesh, conn) == "api-canary" for _ in range(N))  # one keep-alive conn
    sd = math.sqrt(N * P * (1 - P))
    low, high = N * P - SIGMAS * sd, N * P + SIGMAS * sd
    print(f"\n90/10 split: {to_canary} of {N} requests to api-canary "
          f"(expected {N * P:.0f} ± {SIGMAS:g} sd = {low:.0f}-{high:.0f})")  # fmt: skip
    assert low <= to_canary <= high

    entry = {"Kind": "service-splitter", "Name": "api", "Splits": _splits(0, 100)}
    (tmp_path / "all-canary.json").write_text(json.dumps(entry))
    said = expect(
        "config", "write", str(tmp_path / "all-canary.json"), "--http-addr", mesh.client_agent
    )
    assert "Config entry written: service-splitter/api" in said
    # 20 in a row to the canary under the old split: 1e-20; then every following one must go.
    eventually(lambda: _all_canary(mesh, conn, 20), 20, what="0/100 to reach web's proxy")
    assert _all_canary(mesh, conn, 200)
    conn.close()


def test_l4_upstream_splits_per_connection(mesh: Mesh) -> None:
    _split(mesh, 0, 100)
    eventually(lambda: _tcp(mesh) == "api-canary", 20, what="0/100 at L4")
    assert all(_tcp(mesh) == "api-canary" for _ in range(20))
    _split(mesh, 100, 0)
    eventually(lambda: _tcp(mesh) == "api", 20, what="100/0 at L4")
    assert all(_tcp(mesh) == "api" for _ in range(20))


def test_cli_reads_lists_and_deletes_an_entry_written_on_the_other_agent(mesh: Mesh) -> None:
    s2 = mesh.client_agent
    assert mesh.writer.config.set("service-defaults", "api-canary", {"Protocol": "http"})

    def replicated() -> dict[str, object]:
        text = expect("config", "read", "-kind", "service-defaults", "-name", "api-canary",
                      "--http-addr", s2)  # fmt: skip
        return dict(json.loads(text))

    got = eventually(replicated, 15, what="the entry written on s1 to be read on s2")
    assert got["Protocol"] == "http" and isinstance(got["ModifyIndex"], int)
    assert expect("config", "list", "-kind", "service-defaults", "--http-addr", s2).split() == [
        "api-canary"
    ]
    stale = str(int(str(got["ModifyIndex"])) + 1000)
    said = expect("config", "delete", "-kind", "service-defaults", "-name", "api-canary", "-cas",
                  "-modify-index", stale, "--http-addr", s2, code=1)  # fmt: skip
    assert "not deleted" in said
    expect("config", "delete", "-kind", "service-defaults", "-name", "api-canary",
           "--http-addr", s2)  # fmt: skip
    eventually(lambda: mesh.writer.config.list("service-defaults") == [], 15,
               what="the delete on s2 to reach s1")  # fmt: skip
