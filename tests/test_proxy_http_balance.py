"""Which instance an HTTP upstream's requests go to when one instance answers failures fast.

`db` has two instances with `protocol: http` sidecars: a good app that takes 50 ms
per answer, and a failing one: its app is down, so its sidecar answers every
request `503` at once (and closes: the connection goes with the answer), or its
app answers `503` itself (the connection kept). `web`'s upstream is
`protocol: http`. A POST is never retried, so each one the balancer sends to the
failing instance fails; a `503` is a failure, not a fast answer: were it priced
as its latency (about a millisecond, against the good instance's 50 ms),
peak-EWMA would send every request there. Envoy (as
Consul configures it) sets such an instance aside after consecutive 5xx; Linkerd
prices a failure as slow.
"""

from __future__ import annotations

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


@dataclass
class Mesh:
    pooled: int  # web's upstream listener for db
    good: HttpApp


@pytest.fixture(params=["app-down", "app-503"])
def mesh(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[Mesh]:  # fmt: skip
    tmp = tmp_path_factory.mktemp("proxy-balance")
    c = Cluster(tmp)
    good = HttpApp(delay_s=0.05).start()  # slower than a new instance's assumed 30 ms
    apps = [good]
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("pb1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        pooled = free_port("127.0.0.1")
        if request.param == "app-down":
            failing = free_port("127.0.0.1")  # nothing listens there
        else:
            apps.append(app := HttpApp(status=503).start())
            failing = app.port
        for sid, port in (("db-good", good.port), ("db-failing", failing)):
            agent.put("/v1/agent/service/register", {
                "Name": "db", "ID": sid, "Port": port, "Address": "127.0.0.1",
                "Connect": {"SidecarService": {"Port": free_port(agent.ip), "Address": agent.ip,
                            "Proxy": {"Config": {"protocol": "http"}}}},
            })  # fmt: skip
        upstream = {"DestinationName": "db", "LocalBindPort": pooled,
                    "Config": {"protocol": "http"}}  # fmt: skip
        agent.put("/v1/agent/service/register", web_body(agent, free_port(agent.ip), [upstream]))
        set_intention(agent, "web", "db", "allow")
        proxies += [sidecar(agent, tmp, "db-good"), sidecar(agent, tmp, "db-failing")]
        eventually(lambda: len(agent.get("/v1/health/connect/db?passing")) == 2, 30,
                   what="both db sidecars passing")  # fmt: skip
        proxies.append(sidecar(agent, tmp, "web"))  # (its first answer holds both instances)
        eventually(lambda: status_of(pooled, "POST", "/warm") in (404, 503), 20,
                   what="a POST answered by either instance")  # fmt: skip
        yield Mesh(pooled, good)
    finally:
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def test_an_instance_answering_503_at_once_is_not_priced_as_fast(mesh: Mesh) -> None:
    statuses = [status_of(mesh.pooled, "POST", f"/echo/p{i}") for i in range(40)]
    failed = statuses.count(503)
    assert statuses.count(200) + failed == 40
    # the failing instance costs a request now and then (a first pick, or tried again as its
    # price decays), never most of them
    assert failed <= 3, f"{failed} of 40 POSTs went to the failing instance"
    assert len([p for p in mesh.good.seen if p.startswith("POST /echo/p")]) == 40 - failed
