"""Pooled connections that the far side closes for idleness, raced by new requests.

One agent; `db` (one instance, `protocol: http`) closes a client
connection idle for `idle_timeout_ms` 300 (its sidecar's Proxy.Config);
`web`'s HTTP upstream pools its connections to db for 10 s (the default),
longer than db keeps them, against the README's advice. Requests sent
around the moment db lets a pooled connection go must still be answered:
a POST is not idempotent, so it may only be sent again when it is known
not to have reached the app.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    ProxyProc,
    set_intention,
    sidecar,
    status_of,
    stop_mesh,
    web_body,
)

FAR_IDLE_MS = 300


@dataclass
class Mesh:
    up: int
    app: HttpApp


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("resilience-pool")
    c = Cluster(tmp)
    app = HttpApp().start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("rp1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": app.port, "Address": "127.0.0.1",
            "Connect": {"SidecarService": {"Port": free_port(agent.ip), "Address": agent.ip,
                        "Proxy": {"Config": {"protocol": "http",
                                             "idle_timeout_ms": FAR_IDLE_MS}}}},
        })  # fmt: skip
        up = free_port("127.0.0.1")
        upstream = {"DestinationName": "db", "LocalBindPort": up, "Config": {"protocol": "http"}}
        agent.put("/v1/agent/service/register", web_body(agent, free_port(agent.ip), [upstream]))
        set_intention(agent, "web", "db", "allow")
        proxies += [sidecar(agent, tmp, "db"), sidecar(agent, tmp, "web")]
        eventually(lambda: status_of(up, "POST", "/echo/warm") == 200, 30, what="a first answer")
        yield Mesh(up, app)
    finally:
        leftovers = stop_mesh(c, proxies, [app])
    assert not leftovers, f"processes left behind: {leftovers}"


def test_posts_around_the_far_sides_idle_close_are_all_answered(mesh: Mesh) -> None:
    statuses = []
    for i in range(40):
        statuses.append(status_of(mesh.up, "POST", f"/echo/p{i}"))
        time.sleep(0.25 + (i % 10) * 0.03)  # gaps of 250-520 ms: around db's 300-450 ms close
    print(statuses)
    assert statuses == [200] * 40
    assert all(mesh.app.seen.count(f"POST /echo/p{i}") == 1 for i in range(40))
