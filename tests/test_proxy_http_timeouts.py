"""Request and idle timeouts of the HTTP path, with a real agent, real proxies and a slow app.

`db` (`protocol: http`) gives a request to its app 1 s (`local_request_timeout_ms`)
and closes client connections idle for 600 ms (`idle_timeout_ms`). `web`
reaches it through an L4 upstream (so db's sidecar is the one timing), `web2`
through an HTTP upstream whose requests may be silent 250 ms
(`request_idle_timeout_ms`) and last 700 ms (`request_timeout_ms`). The app
answers `/sleep/MS` after MS of silence and `/drip/MS` a chunk every 100 ms.
Counts are read from the proxies' Prometheus listeners.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gossamer.proxy.config_error import ConfigError
from gossamer.proxy.config_registration import config_from_registration
from gossamer.proxy.http_deadlines import Deadlines
from gossamer.proxy.http_limits import Limits
from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually, eventually_async
from tests.http_app import HttpApp
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    series,
    set_intention,
    sidecar,
    status_of,
    stop_mesh,
    timed_request,
    wait_listening,
    web_body,
)


@dataclass
class Mesh:
    agent: AgentProc
    app: HttpApp
    l4: int  # web's upstream port: plain TCP to db's sidecar, which times the requests
    pooled: int  # web2's HTTP upstream port: web2's sidecar times the requests
    db_metrics: str
    web2_metrics: str


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp: Path = tmp_path_factory.mktemp("proxy-timeouts")
    c = Cluster(tmp)
    app = HttpApp().start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("pt1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        l4, pooled, db_in = free_port("127.0.0.1"), free_port("127.0.0.1"), free_port(agent.ip)
        db_metrics, web2_metrics = (f"127.0.0.1:{free_port('127.0.0.1')}" for _ in range(2))
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": app.port, "Address": agent.ip,
            "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip, "Proxy": {
                "Config": {"protocol": "http", "local_request_timeout_ms": 1000,
                           "idle_timeout_ms": 600,
                           "gossamer_metrics_bind_addr": db_metrics}}}},
        })  # fmt: skip
        agent.put("/v1/agent/service/register",
                  web_body(agent, free_port(agent.ip), [{"DestinationName": "db",
                                                         "LocalBindPort": l4}]))  # fmt: skip
        upstream = {
            "DestinationName": "db",
            "LocalBindPort": pooled,
            "Config": {
                "protocol": "http",
                "request_timeout_ms": 700,
                "request_idle_timeout_ms": 250,
                "idle_timeout_ms": 300,
            },
        }  # its pool lets go (300 ms) before db closes an idle client (600 ms)
        web2 = web_body(agent, free_port(agent.ip), [upstream])
        web2["Connect"]["SidecarService"]["Proxy"]["Config"] = {  # type: ignore[index]
            "gossamer_metrics_bind_addr": web2_metrics
        }
        agent.put("/v1/agent/service/register", web2 | {"Name": "web2", "ID": "web2"})
        set_intention(agent, "web", "db", "allow")
        set_intention(agent, "web2", "db", "allow")
        proxies += [db := sidecar(agent, tmp, "db"), web := sidecar(agent, tmp, "web"),
                    web2p := sidecar(agent, tmp, "web2")]  # fmt: skip
        wait_listening(agent.ip, db_in, db)
        wait_listening("127.0.0.1", l4, web)
        wait_listening("127.0.0.1", pooled, web2p)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        mesh = Mesh(agent, app, l4, pooled, db_metrics, web2_metrics)
        for port in (l4, pooled):
            eventually(lambda p=port: status_of(p, "GET", "/echo/warm") == 200, 20,  # type: ignore[misc]
                       what="a first request through")  # fmt: skip
        yield mesh
    finally:
        leftovers = stop_mesh(c, proxies, [app])
    assert not leftovers, f"processes left behind: {leftovers}"


def put_status(agent: AgentProc, body: object) -> tuple[int, str]:
    """A registration's HTTP status and body text (an error status is an answer here)."""
    req = urllib.request.Request(agent.http + "/v1/agent/service/register",
                                 json.dumps(body).encode(), method="PUT")  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def event(addr: str, name: str) -> float:
    return series(addr, "gossamer_proxy_events_total", event=name)


def test_a_slow_app_gets_the_client_a_504_from_the_local_request_timeout(mesh: Mesh) -> None:
    before = series(mesh.db_metrics, "gossamer_proxy_response_total", direction="inbound",
                    source="web", status_class="5xx")  # fmt: skip
    assert status_of(mesh.l4, "GET", "/sleep/0") == 200
    status, took = timed_request(mesh.l4, "GET", "/sleep/4000")
    assert status == 504 and 0.9 < took < 3.0, (status, took)
    assert event(mesh.db_metrics, "http.request_timeout") >= 1
    after = series(mesh.db_metrics, "gossamer_proxy_response_total", direction="inbound",
                   source="web", status_class="5xx")  # fmt: skip
    assert after == before + 1


def test_a_slow_upload_is_not_cut_the_request_timeout_runs_once_it_is_whole(mesh: Mesh) -> None:
    with socket.create_connection(("127.0.0.1", mesh.l4), timeout=10) as s:
        s.sendall(b"POST /echo/up HTTP/1.1\r\nHost: db\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(8):  # 1.6 s of body, longer than db's 1 s request timeout
            s.sendall(b"2\r\nab\r\n")
            time.sleep(0.2)  # the client's pace is what this test is about
        s.sendall(b"0\r\n\r\n")
        answer = b""
        while not answer.endswith(b"ab" * 8):
            chunk = s.recv(1000)
            assert chunk, answer
            answer += chunk
    assert answer.startswith(b"HTTP/1.1 200"), answer


def test_a_silent_upstream_times_out_idle_and_only_the_idempotent_request_is_retried(
    mesh: Mesh,
) -> None:
    seen = mesh.app.seen
    status, took = timed_request(mesh.pooled, "POST", "/sleep/900")
    assert status == 504 and took < 0.85, (status, took)  # web2's 250 ms idle, not db's 1 s
    assert seen.count("POST /sleep/900") == 1  # it reached the app: never sent twice
    retries = event(mesh.web2_metrics, "outbound.http.retries")
    status, _ = timed_request(mesh.pooled, "GET", "/sleep/901")
    assert status == 504
    assert seen.count("GET /sleep/901") >= 2  # a timed-out GET goes again, within the budget
    assert event(mesh.web2_metrics, "outbound.http.retries") > retries
    assert event(mesh.web2_metrics, "outbound.http.idle_timeout") >= 3


def test_the_request_timeout_cuts_an_answer_that_has_begun(mesh: Mesh) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", mesh.pooled, timeout=10)
    started = time.monotonic()
    conn.request("GET", "/drip/5000")  # a chunk each 100 ms: never idle, but never done
    response = conn.getresponse()
    assert response.status == 200  # the head went out before the deadline
    with pytest.raises(http.client.IncompleteRead):
        response.read()
    assert time.monotonic() - started < 3.0
    conn.close()
    assert event(mesh.web2_metrics, "outbound.http.request_timeout") >= 1


def test_a_client_connection_idle_between_requests_is_closed(mesh: Mesh) -> None:
    with socket.create_connection(("127.0.0.1", mesh.l4), timeout=10) as s:
        s.sendall(b"GET /echo/idle HTTP/1.1\r\nHost: db\r\n\r\n")
        answer = b""
        while not answer.endswith(b"GET /echo/idle "):
            answer += s.recv(1000)
        started = time.monotonic()
        assert s.recv(1000) == b""  # db's sidecar closes it after 600 ms of nothing
        # from the answer's end, not from the request's 1 s deadline the timer was set for
        # (1.6-1.9 s: the client-idle limit used to wait for it)
        assert 0.5 < time.monotonic() - started < 1.4
    assert event(mesh.db_metrics, "http.client_idle") >= 1


@pytest.mark.parametrize(("config", "where"), [
    ({"local_request_timeout_ms": -1}, "local_request_timeout_ms"),
    ({"local_idle_timeout_ms": "5s"}, "local_idle_timeout_ms"),
    ({"idle_timeout_ms": True}, "idle_timeout_ms"),
    # the keys the sidecar reads beside the HTTP path's: refused here too, not only by it
    ({"handshake_timeout_ms": "1 s"}, "handshake_timeout_ms"),
    ({"local_connect_timeout_ms": 0}, "local_connect_timeout_ms"),
    ({"drain_timeout_s": "30s"}, "drain_timeout_s"),
    ({"bind_address": "not an address"}, "bind_address"),
    ({"bind_port": 70000}, "bind_port"),
    ({"gossamer_metrics_bind_addr": "127.0.0.1"}, "gossamer_metrics_bind_addr"),
    ({"gossamer_metrics": "yes"}, "gossamer_metrics"),
])  # fmt: skip
def test_a_bad_timeout_is_a_400_naming_the_key(mesh: Mesh, config: dict[str, Any],
                                               where: str) -> None:  # fmt: skip
    body = {"Name": "bad", "ID": "bad", "Port": 1, "Connect": {"SidecarService": {
        "Proxy": {"Config": config}}}}  # fmt: skip
    status, text = put_status(mesh.agent, body)
    assert status == 400 and f"Connect.SidecarService.Proxy.Config.{where}" in text, text
    upstream = {"DestinationName": "db", "LocalBindPort": free_port("127.0.0.1"),
                "Config": {"request_timeout_ms": 1.5}}  # fmt: skip
    status, text = put_status(
        mesh.agent, web_body(mesh.agent, free_port(mesh.agent.ip), [upstream])
    )
    assert status == 400, (status, text)
    assert "Connect.SidecarService.Proxy.Upstreams[0].Config.request_timeout_ms" in text
    upstream["Config"] = {"connect_timeout_ms": "5 s"}
    status, text = put_status(
        mesh.agent, web_body(mesh.agent, free_port(mesh.agent.ip), [upstream])
    )
    assert status == 400, (status, text)
    assert "Connect.SidecarService.Proxy.Upstreams[0].Config.connect_timeout_ms" in text


def test_a_changed_timeout_applies_without_a_restart(mesh: Mesh) -> None:
    assert status_of(mesh.l4, "GET", "/sleep/600") == 200  # within db's 1 s
    db = mesh.agent.get("/v1/agent/service/db-sidecar-proxy")

    def register(config: dict[str, Any]) -> None:
        mesh.agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": mesh.app.port, "Address": mesh.agent.ip,
            "Connect": {"SidecarService": {"Port": db["Port"], "Address": mesh.agent.ip,
                                           "Proxy": {"Config": config}}},
        })  # fmt: skip

    register(db["Proxy"]["Config"] | {"local_request_timeout_ms": 300})
    try:
        eventually(lambda: status_of(mesh.l4, "GET", "/sleep/600") == 504, 20,
                   what="db's sidecar to apply the 300 ms timeout")  # fmt: skip
    finally:  # the other tests expect db's 1 s, whatever order they run in
        register(db["Proxy"]["Config"])
        eventually(lambda: status_of(mesh.l4, "GET", "/sleep/600") == 200, 20,
                   what="db's 1 s timeout back")  # fmt: skip


def test_the_proxy_reads_the_timeouts_and_refuses_bad_ones() -> None:
    body: dict[str, Any] = {"Kind": "connect-proxy", "Port": 21000, "Proxy": {
        "DestinationServiceName": "db", "LocalServicePort": 80,
        "Config": {"local_request_timeout_ms": 0, "local_idle_timeout_ms": 2000,
                   "idle_timeout_ms": 60000},
        "Upstreams": [{"DestinationName": "api", "LocalBindPort": 9000,
                       "Config": {"request_timeout_ms": 1500}}]}}  # fmt: skip
    config = config_from_registration(body, "db-sidecar-proxy")
    assert (config.request_timeout_s, config.request_idle_s, config.client_idle_s) == (
        0.0,
        2.0,
        60.0,
    )
    up = config.upstreams[0]
    assert (up.request_timeout_s, up.request_idle_s, up.client_idle_s) == (1.5, 300.0, 60.0)
    body["Proxy"]["Upstreams"][0]["Config"] = {"request_idle_timeout_ms": -5}
    with pytest.raises(ConfigError, match=r"Proxy.Upstreams\[0\].Config.request_idle_timeout_ms"):
        config_from_registration(body, "db-sidecar-proxy")


class _Session:
    """A stand-in for an `HttpSession`: only what its `Deadlines` timer reads of one, with a
    request in flight; `closed_event` is set when the timer closes it."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        exchange = SimpleNamespace(sent=True, request_s=0.0, rules=None)  # (no route's limits)
        self.closed, self.tunnel, self.queue = False, None, [exchange]
        self.host = SimpleNamespace(http_event=lambda name: None)
        self.closed_event = asyncio.Event()

    def moved_total(self) -> int:
        return 0

    def close_between(self) -> None:  # (what the client-idle limit closes with)
        self.closed_event.set()


async def test_the_client_idle_timer_outlives_a_request_with_no_limits_of_its_own() -> None:
    """With the request and idle limits off (0, as for long polls), the one timer ticks at
    the client-idle cadence; a request still in flight when it fires must not stop it, or
    the client connection, once idle, is never closed."""
    session = _Session()
    deadlines = Deadlines(session, Limits(request_s=0.0, idle_s=0.0, client_idle_s=0.2))  # type: ignore[arg-type]
    deadlines.sent(complete=True)
    assert deadlines.handle is not None
    first = deadlines.handle.when()  # half the client-idle limit from now

    def looks_again() -> bool:
        """The timer fired, the request in flight, and is armed again."""
        return deadlines.handle is not None and deadlines.handle.when() > first

    await eventually_async(looks_again, timeout=2)
    session.queue.clear()  # then it is answered: the client is idle from here
    await asyncio.wait_for(session.closed_event.wait(), 2)
    deadlines.stop()


async def test_the_client_idle_limit_runs_from_the_answer_not_the_requests_deadline() -> None:
    """The timer is armed for a request's deadline (here 10 s); once the answer has ended,
    the client-idle limit (0.2 s) is due from there. It used to wait for the deadline's
    wake-up first: a 1 s `idle_timeout_ms` closed an idle client after 15.7 s with the
    default 15 s request timeout."""
    session = _Session()
    deadlines = Deadlines(session, Limits(request_s=10.0, idle_s=0.0, client_idle_s=0.2))  # type: ignore[arg-type]
    deadlines.sent(complete=True)
    session.queue.clear()
    deadlines.answered()
    started = session.loop.time()
    await asyncio.wait_for(session.closed_event.wait(), 2)
    assert session.loop.time() - started < 1.0
    deadlines.stop()
