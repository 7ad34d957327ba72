"""An exposed path reaches the app where `LocalServiceAddress` says it listens.

The README tells a user whose app listens on ::1 only to register
`"LocalServiceAddress": "::1"`; Consul's exposed-path clusters go to that
address (127.0.0.1 only when it is unset). Before, the sidecar dialled
127.0.0.1 for every exposed path, so such an app's exposed path answered
`503` and a check run through the sidecar (`Expose.Checks`) turned critical.
Real agent, real sidecar, a real HTTP server bound to ::1 only.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.proxy_support import sidecar, wait_listening


class _V6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = f"v6 app {self.path}".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AgentProc, Path]]:
    tmp = tmp_path_factory.mktemp("expose6")
    c = Cluster(tmp)
    try:
        a = c.new_agent("exa1").start()
        eventually(a.enrolled, 20, what="the agent's certificate")
        yield a, tmp
    finally:
        c.close()


def get(ip: str, port: int, path: str) -> tuple[int, bytes]:
    c = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        c.request("GET", path)
        resp = c.getresponse()
        return resp.status, resp.read()
    finally:
        c.close()


def test_exposed_path_goes_to_local_service_address(agent: tuple[AgentProc, Path]) -> None:
    a, tmp = agent
    server = _V6Server(("::1", free_port("::1")), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app_port = server.server_address[1]
    inbound, port = free_port(a.ip), free_port(a.ip)
    paths = [{"Path": "/health", "LocalPathPort": app_port, "ListenerPort": port}]
    a.put("/v1/agent/service/register", {
        "Name": "v6app", "Port": app_port, "Address": a.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Proxy": {
            "LocalServiceAddress": "::1", "Expose": {"Paths": paths}}}},
    })  # fmt: skip
    proxy = sidecar(a, tmp, "v6app")
    try:
        wait_listening(a.ip, port, proxy)
        assert get(a.ip, port, "/health") == (200, b"v6 app /health"), proxy.log()[-2000:]
        assert get(a.ip, port, "/other")[0] == 404
        assert "(to [::1]:" in proxy.log()
    finally:
        proxy.stop()
        server.shutdown()
        server.server_close()
        a.put("/v1/agent/service/deregister/v6app")
