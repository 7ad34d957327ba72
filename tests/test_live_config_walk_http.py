"""An HTTP upstream's registration changed live under keep-alive clients.

Real agent, real sidecars, a real HTTP app (http_app.py); `db` is `http` by its
service-defaults, so web's upstream listener parses each request and sends it over pooled
connections. Each change of the upstream (here its `request_timeout_ms`) replaces that
listener; the clients on the old one must not lose a request to it. They did: the old
listener closed every idle keep-alive connection at once, and a client that sends on a
kept connection without looking first (Python's http.client) had its next request fail
with a broken pipe, never sent, at every change.
"""

from __future__ import annotations

import http.client
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    register_pair,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
    web_body,
)


@dataclass
class Mesh:
    agent: AgentProc
    web_proxy: ProxyProc
    port: int  # web's upstream listener for db
    web_in: int


@pytest.fixture
def mesh(tmp_path: Path) -> Iterator[Mesh]:
    c = Cluster(tmp_path)
    apps: list[HttpApp] = []
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("lh1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        agent.put("/v1/config", {"Kind": "service-defaults", "Name": "db", "Protocol": "http"})
        apps.append(app := HttpApp().start())
        port = free_port("127.0.0.1")
        db_in, web_in = register_pair(agent, app.port, port)
        set_intention(agent, "web", "db", "allow")
        proxies += [db := sidecar(agent, tmp_path, "db"), web := sidecar(agent, tmp_path, "web")]
        wait_listening(agent.ip, db_in, db)
        wait_listening("127.0.0.1", port, web)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        yield Mesh(agent, web, port, web_in)
    finally:
        leftovers = stop_mesh(c, proxies, apps)
    assert not leftovers, f"processes left behind: {leftovers}"


def change(mesh: Mesh, timeout_ms: int) -> None:
    """The upstream's `request_timeout_ms` changed: its listener is replaced."""
    said = mesh.web_proxy.log().count("upstream db listening")
    up = {"DestinationName": "db", "LocalBindPort": mesh.port,
          "Config": {"request_timeout_ms": timeout_ms}}  # fmt: skip
    mesh.agent.put("/v1/agent/service/register", web_body(mesh.agent, mesh.web_in, [up]))
    eventually(lambda: mesh.web_proxy.log().count("upstream db listening") > said, 10,
               what="its successor listening")  # fmt: skip


def post(conn: http.client.HTTPConnection) -> http.client.HTTPResponse:
    conn.request("POST", "/echo", body=b"x")
    answer = conn.getresponse()
    answer.read()
    return answer


def test_keep_alive_clients_lose_no_request_to_a_replaced_listener(mesh: Mesh) -> None:
    eventually(lambda: post(http.client.HTTPConnection("127.0.0.1", mesh.port, timeout=5))
               .status == 200, 20, what="web -> db")  # fmt: skip
    stop, seen = threading.Event(), Counter[object]()

    def client() -> None:  # POSTs (not safe to send again) on one kept connection at a time
        conn = http.client.HTTPConnection("127.0.0.1", mesh.port, timeout=5)
        while not stop.wait(0.01):
            try:
                seen[post(conn).status] += 1
            except (OSError, http.client.HTTPException) as exc:
                seen[type(exc).__name__] += 1
                conn.close()  # (http.client opens a new one on the next request)

    clients = [threading.Thread(target=client, daemon=True) for _ in range(2)]
    for each in clients:
        each.start()
    try:
        for timeout_ms in (11000, 12000, 13000, 14000):
            change(mesh, timeout_ms)
            time.sleep(0.3)  # (requests between changes: the load itself)
    finally:
        stop.set()
        for each in clients:
            each.join(10)
    assert set(seen) == {200} and seen[200] > 20, seen


def test_an_idle_kept_connection_is_answered_once_more_then_told_to_go(mesh: Mesh) -> None:
    """Across a change a quiet keep-alive connection stays; its next request is answered
    with `Connection: close`; the one after goes to the new listener. Then SIGTERM closes
    an idle one on a replaced listener at once, as it does on the current one."""
    kept = http.client.HTTPConnection("127.0.0.1", mesh.port, timeout=5)
    eventually(lambda: post(kept).status == 200, 20, what="web -> db")
    change(mesh, 11000)
    answer = post(kept)  # sent on the old connection: it was not closed under it
    assert answer.status == 200 and answer.getheader("Connection") == "close"
    assert post(kept).status == 200  # (a new connection, to the new listener)
    idle = http.client.HTTPConnection("127.0.0.1", mesh.port, timeout=5)
    assert post(idle).status == 200
    change(mesh, 12000)  # `idle` is now on a replaced listener
    started = time.monotonic()
    mesh.web_proxy.signal(signal.SIGTERM)
    proc = mesh.web_proxy.proc
    assert proc is not None and proc.wait(10) == 0
    assert time.monotonic() - started < 5  # (the drain did not wait out its 15 s for it)
