"""The connection figures of an HTTP upstream's outbound edge, with a real agent and proxies.

`web` reaches `db` (`protocol: http`) through an HTTP upstream: its client
connections are served over pooled mTLS connections, each request on its
own. The edge still counts each client connection as an L4 upstream's:
open, closed, bytes each way (they stayed at 0, found by a walkthrough:
`gossamer stat` showed OPEN 0 with a client connection held open).
"""

from __future__ import annotations

import re
import socket
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.harness.cluster import Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import (
    ProxyProc,
    healthy_sidecars,
    series,
    set_intention,
    sidecar,
    stop_mesh,
    wait_listening,
    web_body,
)

OUT = {"direction": "outbound", "source": "web", "destination": "db"}
BODY = b"b" * 5000


@dataclass
class Mesh:
    upstream: int  # web's HTTP upstream port
    web_metrics: str
    app: HttpApp


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mesh]:
    tmp: Path = tmp_path_factory.mktemp("metrics-http-edges")
    c = Cluster(tmp)
    app = HttpApp().start()
    proxies: list[ProxyProc] = []
    try:
        agent = c.new_agent("me1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        upstream, db_in = free_port("127.0.0.1"), free_port(agent.ip)
        web_metrics = f"127.0.0.1:{free_port('127.0.0.1')}"
        agent.put("/v1/agent/service/register", {
            "Name": "db", "ID": "db", "Port": app.port, "Address": agent.ip,
            "Connect": {"SidecarService": {"Port": db_in, "Address": agent.ip,
                                           "Proxy": {"Config": {"protocol": "http"}}}},
        })  # fmt: skip
        pooled = {"DestinationName": "db", "LocalBindPort": upstream,
                  "Config": {"protocol": "http"}}  # fmt: skip
        web = web_body(agent, free_port(agent.ip), [pooled])
        web["Connect"]["SidecarService"]["Proxy"]["Config"] = {  # type: ignore[index]
            "gossamer_metrics_bind_addr": web_metrics
        }
        agent.put("/v1/agent/service/register", web)
        set_intention(agent, "web", "db", "allow")
        proxies += [db := sidecar(agent, tmp, "db"), web_proxy := sidecar(agent, tmp, "web")]
        wait_listening(agent.ip, db_in, db)
        wait_listening("127.0.0.1", upstream, web_proxy)
        eventually(lambda: healthy_sidecars(agent, "db") == 1, 30, what="db's sidecar passing")
        yield Mesh(upstream, web_metrics, app)
    finally:
        leftovers = stop_mesh(c, proxies, [app])
    assert not leftovers, f"processes left behind: {leftovers}"


def _answer(s: socket.socket) -> bytes:
    """One whole answer of the test app (it sends a Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))  # type: ignore[union-attr]
    while len(body) < length:
        body += s.recv(65536)
    return data


def test_an_http_upstream_counts_its_client_connections_and_their_bytes(mesh: Mesh) -> None:
    def figure(name: str) -> float:
        return series(mesh.web_metrics, f"gossamer_proxy_{name}", **OUT)

    def first_through() -> bool:
        with socket.create_connection(("127.0.0.1", mesh.upstream), timeout=10) as s:
            s.sendall(b"GET /echo/warm HTTP/1.1\r\nHost: db\r\nConnection: close\r\n\r\n")
            return s.recv(100).startswith(b"HTTP/1.1 200")

    eventually(first_through, 20, what="a first request through")
    eventually(lambda: figure("tcp_open_connections") == 0, 10, what="the first one closed")
    opened, closed = figure("tcp_open_total"), figure("tcp_close_total")
    sent, received = figure("tcp_sent_bytes_total"), figure("tcp_received_bytes_total")
    request = b"POST /echo/edge HTTP/1.1\r\nHost: db\r\nContent-Length: %d\r\n\r\n" % len(BODY)
    with socket.create_connection(("127.0.0.1", mesh.upstream), timeout=10) as s:
        s.sendall(request + BODY)
        answer = _answer(s)
        assert answer.startswith(b"HTTP/1.1 200")
        # held open: counted as open now, its bytes so far with it
        assert figure("tcp_open_connections") == 1
        assert figure("tcp_open_total") == opened + 1
        assert figure("tcp_sent_bytes_total") == sent + len(request) + len(BODY)
        assert figure("tcp_received_bytes_total") == received + len(answer)
    eventually(lambda: figure("tcp_open_connections") == 0, 10, what="its close counted")
    assert figure("tcp_close_total") == closed + 1
    assert figure("tcp_sent_bytes_total") == sent + len(request) + len(BODY)


@pytest.mark.parametrize(("path", "began", "counted"), [
    ("/sleep/20000", b"", "none"),  # gone before any answer: no status
    ("/drip/20000", b"HTTP/1.1 200", "2xx"),  # gone mid-answer: the status that went out
])  # fmt: skip
def test_a_request_whose_client_goes_away_still_counts(
    mesh: Mesh, path: str, began: bytes, counted: str
) -> None:
    """A client that leaves before its answer ends: its request is counted, with the status
    of the answer under way or none. It was dropped uncounted (found by a walkthrough)."""

    def figure(name: str, **labels: str) -> float:
        return series(mesh.web_metrics, f"gossamer_proxy_{name}", **OUT, **labels)

    requests, answers = figure("request_total"), figure("response_total", status_class=counted)
    seen = len(mesh.app.seen)
    with socket.create_connection(("127.0.0.1", mesh.upstream), timeout=10) as s:
        s.sendall(b"GET %s HTTP/1.1\r\nHost: db\r\n\r\n" % path.encode())
        eventually(lambda: len(mesh.app.seen) > seen, 10, what="the request at the app")
        if began:
            assert s.recv(100).startswith(began)
        # gone, not half-closed (a FIN alone may wait for the answer): a reset
        s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    eventually(lambda: figure("request_total") == requests + 1, 10, what="the request counted")
    assert figure("response_total", status_class=counted) == answers + 1
