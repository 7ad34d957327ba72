"""The mesh on hosts whose only addresses are IPv6 (`-m netns`): two agents, each in its own
namespace, join by IPv6 address; `db` (TCP) and `api` (HTTP) on host 2 are called from `web`
on host 1 through the mTLS pair, their sidecars registered with no address (so peers dial the
node's IPv6 address) and web's upstreams bound on ::1.

Before the IPv6 walk's fixes the call failed: the inbound listeners bound 0.0.0.0, which on
such a host serves 127.0.0.1 alone.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness.cluster import AgentProc
from tests.harness.poll import eventually
from tests.ipv6_support import agent_on, ipv6_only_hosts

pytestmark = pytest.mark.netns

PORTS = {"http": 8500, "dns": 8600, "serf": 8301, "rpc": 8300}  # (each host its own stack)
ECHO = """
import socket, threading
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", 8080)); s.listen(16)
def serve(c):
    with c:
        while d := c.recv(65536): c.sendall(d)
        c.sendall(b"<eof>")
while True:
    c, _ = s.accept(); threading.Thread(target=serve, args=(c,), daemon=True).start()
"""
HTTP = """
import http.server, socket
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = f"api saw {self.path} for {self.headers['Host']}".encode()
        self.send_response(200); self.send_header("Content-Length", str(len(body)))
        self.end_headers(); self.wfile.write(body)
class S(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6
S(("::1", 8081), H).serve_forever()
"""
CLIENT = """
import socket, urllib.request
with socket.create_connection(("::1", 9191), timeout=5) as s:
    s.sendall(b"ping"); s.shutdown(socket.SHUT_WR)
    got = b""
    while d := s.recv(100): got += d
print(got.decode())
print(urllib.request.urlopen("http://[::1]:9192/x", timeout=5).read().decode())
"""


def start(prefix: list[str], argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen([*prefix, *argv], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip


def sidecar(prefix: list[str], agent: AgentProc, service: str, log: Path
            ) -> subprocess.Popen[bytes]:  # fmt: skip
    argv = [sys.executable, "-m", "gossamer.agent", "connect", "proxy", "--sidecar-for",
            service, "--http-addr", agent.http]  # fmt: skip
    return start(prefix, argv, log)


def test_tcp_and_http_calls_cross_the_mesh_between_ipv6_only_hosts(tmp_path: Path) -> None:
    with ipv6_only_hosts(2) as hosts:
        (one, ip1), (two, ip2) = hosts
        first = agent_on(ip1, tmp_path, "h1", prefix=one, ports=PORTS).start()
        second = agent_on(ip2, tmp_path, "h2", "--retry-join", f"[{ip1}]", prefix=two,
                          ports=PORTS).start()  # fmt: skip
        try:
            eventually(lambda: first.members() == {"h1": 1, "h2": 1}, 20,
                       what="h1 and h2 to be members")  # fmt: skip
            start(two, [sys.executable, "-c", ECHO], tmp_path / "echo.log")
            start(two, [sys.executable, "-c", HTTP], tmp_path / "http.log")
            second.put(
                "/v1/agent/service/register",
                {"Name": "db", "Port": 8080, "Connect": {"SidecarService": {"Port": 21000}}},
            )
            second.put(
                "/v1/agent/service/register",
                {
                    "Name": "api",
                    "Port": 8081,
                    "Connect": {
                        "SidecarService": {
                            "Port": 21001,
                            "Proxy": {"LocalServiceAddress": "::1", "Config": {"protocol": "http"}},
                        }
                    },
                },
            )
            first.put("/v1/agent/service/register", {
                "Name": "web", "Port": 8080, "Connect": {"SidecarService": {"Port": 21000,
                "Proxy": {"Upstreams": [
                    {"DestinationName": "db", "LocalBindAddress": "::1", "LocalBindPort": 9191},
                    {"DestinationName": "api", "LocalBindAddress": "::1", "LocalBindPort": 9192,
                     "Config": {"protocol": "http"}}]}}}})  # fmt: skip
            for destination in ("db", "api"):
                first.put(f"/v1/connect/intentions/exact?source=web&destination={destination}",
                          {"Action": "allow"})  # fmt: skip
            for prefix, agent, service in ((two, second, "db"), (two, second, "api"),
                                           (one, first, "web")):  # fmt: skip
                sidecar(prefix, agent, service, tmp_path / f"proxy-{service}.log")
            for service in ("db", "api"):
                eventually(lambda s=service: first.get(f"/v1/health/connect/{s}?passing"), 30,
                           what=f"h1 to see {service}'s sidecar passing")  # fmt: skip

            said: list[str] = []

            def called() -> bool:
                # (polled until both answer: web's sidecar hears of the instances in its own
                # time, after h1's catalog does, and a call before that is closed at once)
                run = subprocess.run([*one, sys.executable, "-c", CLIENT], capture_output=True,
                                     text=True, timeout=20)  # fmt: skip
                assert run.returncode == 0, run.stderr[-400:]
                said[:] = run.stdout.splitlines()
                return said == ["ping<eof>", "api saw /x for [::1]:9192"]

            eventually(called, 20, what="web's calls to db and api through the mesh")
        finally:
            second.stop()
            first.stop()
