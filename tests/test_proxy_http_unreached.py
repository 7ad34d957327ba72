"""A request that reached no app is sent elsewhere, whatever its method (real agent and proxies).

`db` has two instances with `protocol: http` sidecars: one whose app is
down (nothing listens on its port: the sidecar's connect is refused) and a
good one. The dead instance's sidecar cannot answer 503 for a request it
could not deliver (web's sidecar could not tell that from the app's own 503,
and must not send a POST twice): it resets the stream with UNREACHABLE,
which only a sidecar can send, and web's sidecar sends the request, body
and all, to the other instance. With every app down the client gets `503`.
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import ProxyProc, series, set_intention, sidecar, wait_listening, web_body

FRAMINGS = ("length", "chunked", "expect")


def post(port: int, path: str, body: bytes, framing: str = "length") -> tuple[int, bytes]:
    """A POST with its body framed by Content-Length, as chunks, or after `Expect:
    100-continue` (http.client sends the body without waiting for the 100)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        if framing == "chunked":
            conn.request("POST", path, body=iter((body[:100], body[100:])), encode_chunked=True)
        else:
            headers = {"Expect": "100-continue"} if framing == "expect" else {}
            conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@dataclass
class Mesh:
    pooled: int  # web's upstream listener for db
    good: HttpApp
    metrics: str  # web's sidecar's metrics address


def retries(mesh: Mesh) -> float:
    return series(mesh.metrics, "gossamer_proxy_events_total", event="outbound.http.retries")


@pytest.fixture
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp = tmp_path_factory.mktemp("proxy-unreached")
    c = Cluster(tmp)
    # slower than an unmeasured instance's assumed 30 ms (peak_ewma.py): once it has answered,
    # the balancer prefers the dead instance until a request fails there
    good = HttpApp(delay_s=0.05).start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("un1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        pooled, metrics = free_port("127.0.0.1"), f"127.0.0.1:{free_port('127.0.0.1')}"
        for sid, port in (("db-dead", free_port("127.0.0.1")), ("db-good", good.port)):
            agent.put("/v1/agent/service/register", {
                "Name": "db", "ID": sid, "Port": port, "Address": agent.ip,
                "Connect": {"SidecarService": {"Port": free_port(agent.ip), "Address": agent.ip,
                            "Proxy": {"Config": {"protocol": "http"}}}},
            })  # fmt: skip
        upstream = {
            "DestinationName": "db",
            "LocalBindPort": pooled,
            "Config": {"protocol": "http"},
        }
        body = web_body(agent, free_port(agent.ip), [upstream])
        body["Connect"]["SidecarService"]["Proxy"]["Config"] = {  # type: ignore[index]
            "gossamer_metrics_bind_addr": metrics
        }
        agent.put("/v1/agent/service/register", body)
        set_intention(agent, "web", "db", "allow")
        proxies += [sidecar(agent, tmp, "db-dead"), sidecar(agent, tmp, "db-good")]
        eventually(lambda: len(agent.get("/v1/health/connect/db?passing")) == 2, 30,
                   what="both db sidecars passing")  # fmt: skip
        # web's sidecar starts now, so its first answer holds both instances (it hears of a
        # change up to 200 ms after its agent: a POST's retry found no other instance)
        proxies.append(web := sidecar(agent, tmp, "web"))
        wait_listening("127.0.0.1", pooled, web)
        yield Mesh(pooled, good, metrics)
    finally:
        for proxy in proxies:
            proxy.stop()
        good.stop()
        leftovers = c.close()
    assert not leftovers, f"processes left behind: {leftovers}"


def test_a_post_whose_instance_has_no_app_is_sent_to_the_other_one(mesh: Mesh) -> None:
    """Until one POST's first attempt lands on the dead instance: each is answered by the
    good app, once, with its body whole. Before, the dead instance's 503 reached the client."""
    before, sent = retries(mesh), 0
    while retries(mesh) == before and sent < 60:
        path, body = f"/echo/p{sent}", bytes(range(256)) * (4 + sent)
        framing = FRAMINGS[sent % len(FRAMINGS)]
        assert post(mesh.pooled, path, body, framing) == (200, f"POST {path} ".encode() + body)
        assert mesh.good.seen.count(f"POST {path}") == 1
        sent += 1
    assert retries(mesh) > before, f"no POST of {sent} went to the dead instance first"


def test_with_every_app_down_a_post_gets_503_after_its_retries(mesh: Mesh) -> None:
    mesh.good.stop()
    for framing in FRAMINGS:
        before = retries(mesh)
        assert post(mesh.pooled, "/echo/down", b"x" * 1000, framing)[0] == 503
        assert retries(mesh) - before == 2  # three attempts in all, none reached an app
    # a body past what is kept for a retry (64 KiB) gets its 503 too, without a hang
    assert post(mesh.pooled, "/echo/big", b"y" * (1 << 20))[0] == 503
    assert mesh.good.seen.count("POST /echo/down") == 0
