"""`Proxy.Expose.Paths`: plain HTTP to chosen paths of an app that listens on 127.0.0.1 only.

Real agent, real sidecar, a real HTTP app (http_app.py) bound to 127.0.0.1.
The sidecar listens for each exposed path on its own address (here the
agent's, 127.0.0.x), and a client from another address reaches that path,
and only that path (another gets Envoy's `404` and never reaches the app);
a malformed request gets `400` and the listener serves on; a path added to
or removed from the registration opens or closes its listener without a
restart of the sidecar, also under `--node`; bad `Expose` blocks are 400s
naming the field.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cluster import AgentProc, Cluster, free_port
from tests.harness.poll import eventually
from tests.http_app import HttpApp
from tests.proxy_support import ProxyProc, listening, sidecar, wait_listening


@dataclass
class Site:
    agent: AgentProc
    app: HttpApp
    tmp: Path


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("expose")
    c = Cluster(tmp)
    app = HttpApp().start()  # 127.0.0.1 only
    try:
        agent = c.new_agent("ex1").start()
        eventually(agent.enrolled, 20, what="the agent's certificate")
        yield Site(agent, app, tmp)
    finally:
        app.stop()
        c.close()


def body(site: Site, name: str, inbound: int, paths: list[dict[str, Any]]) -> dict[str, Any]:
    proxy: dict[str, Any] = {"Expose": {"Paths": paths}} if paths else {}
    return {
        "Name": name, "ID": name, "Port": site.app.port, "Address": site.agent.ip,
        "Connect": {"SidecarService": {"Port": inbound, "Proxy": proxy}},
    }  # fmt: skip


def get(ip: str, port: int, path: str, conn: http.client.HTTPConnection | None = None
        ) -> tuple[int, bytes]:  # fmt: skip
    """GET `path` from a client bound to 127.0.0.1: another address than the listener's."""
    c = conn or http.client.HTTPConnection(ip, port, timeout=10, source_address=("127.0.0.1", 0))
    c.request("GET", path)
    resp = c.getresponse()
    return resp.status, resp.read()


def put_status(agent: AgentProc, path: str, payload: Any) -> tuple[int, str]:
    req = urllib.request.Request(agent.http + path, json.dumps(payload).encode(), method="PUT")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def test_exposed_path_reached_plain_others_404(site: Site) -> None:
    agent, app = site.agent, site.app
    inbound, port = free_port(agent.ip), free_port(agent.ip)
    paths = [{"Path": "/echo/health", "LocalPathPort": app.port, "ListenerPort": port}]
    agent.put("/v1/agent/service/register", body(site, "web", inbound, paths))
    shown = agent.get("/v1/agent/service/web-sidecar-proxy")["Proxy"]["Expose"]
    assert shown == {"Paths": [{**paths[0], "Protocol": "http"}]}
    proxy = sidecar(agent, site.tmp, "web")
    try:
        wait_listening(agent.ip, port, proxy)
        before = len(app.seen)
        assert get(agent.ip, port, "/echo/health") == (200, b"GET /echo/health ")
        assert get(agent.ip, port, "/echo/health?verbose=1")[0] == 200  # the query aside
        # Another path, on the same keep-alive connection: 404, the app never asked.
        conn = http.client.HTTPConnection(agent.ip, port, timeout=10)
        assert get(agent.ip, port, "/echo/secret", conn) == (404, b"Not Found")
        assert get(agent.ip, port, "/echo/health/more", conn)[0] == 404
        assert get(agent.ip, port, "/echo/health", conn)[0] == 200
        conn.close()
        assert app.seen[before:] == ["GET /echo/health", "GET /echo/health?verbose=1",
                                     "GET /echo/health"]  # fmt: skip
        # Malformed HTTP: 400, and the listener serves the next client.
        with socket.create_connection((agent.ip, port), timeout=10) as s:
            s.sendall(b"GET /echo/health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n")
            answer = s.recv(4096)
        assert answer.startswith(b"HTTP/1.1 400 "), answer
        assert get(agent.ip, port, "/echo/health")[0] == 200
        # The exposed listener is plain HTTP only for its path: the inbound port stays mTLS.
        with pytest.raises((http.client.HTTPException, OSError)):
            get(agent.ip, inbound, "/echo/health")
    finally:
        proxy.stop()
        agent.put("/v1/agent/service/deregister/web")


def test_live_add_and_remove(site: Site) -> None:
    agent, app = site.agent, site.app
    inbound, port = free_port(agent.ip), free_port(agent.ip)
    agent.put("/v1/agent/service/register", body(site, "api", inbound, []))
    proxy = sidecar(agent, site.tmp, "api")
    try:
        wait_listening(agent.ip, inbound, proxy)
        assert not listening(agent.ip, port)
        paths = [{"Path": "/echo/ready", "LocalPathPort": app.port, "ListenerPort": port}]
        agent.put("/v1/agent/service/register", body(site, "api", inbound, paths))
        wait_listening(agent.ip, port, proxy)
        assert get(agent.ip, port, "/echo/ready")[0] == 200
        agent.put("/v1/agent/service/register", body(site, "api", inbound, []))
        eventually(lambda: not listening(agent.ip, port), 10, what="the exposed port to close")
        assert proxy.proc is not None and proxy.proc.poll() is None  # never restarted
    finally:
        proxy.stop()
        agent.put("/v1/agent/service/deregister/api")


def test_node_proxy_serves_exposed_paths(site: Site) -> None:
    agent, app = site.agent, site.app
    inbound, port = free_port(agent.ip), free_port(agent.ip)
    paths = [{"Path": "/echo/m", "LocalPathPort": app.port, "ListenerPort": port}]
    agent.put("/v1/agent/service/register", body(site, "job", inbound, paths))
    proxy = ProxyProc(["--node", "--http-addr", agent.http], site.tmp / "node.log").start()
    try:
        wait_listening(agent.ip, port, proxy)
        assert get(agent.ip, port, "/echo/m")[0] == 200
        assert get(agent.ip, port, "/")[0] == 404
    finally:
        proxy.stop()
        agent.put("/v1/agent/service/deregister/job")


def test_worker_processes_share_the_exposed_port(site: Site) -> None:
    """With --workers each worker listens on the exposed port too (SO_REUSEPORT): every
    connection, whichever worker the kernel gives it to, is served the same way."""
    agent, app = site.agent, site.app
    inbound, port = free_port(agent.ip), free_port(agent.ip)
    paths = [{"Path": "/echo/w", "LocalPathPort": app.port, "ListenerPort": port}]
    agent.put("/v1/agent/service/register", body(site, "wk", inbound, paths))
    args = ["--sidecar-for", "wk", "--workers", "2", "--http-addr", agent.http]
    proxy = ProxyProc(args, site.tmp / "workers.log").start()
    try:
        wait_listening(agent.ip, port, proxy)
        for _ in range(8):  # new connections: spread over both workers
            assert get(agent.ip, port, "/echo/w")[0] == 200
            assert get(agent.ip, port, "/echo/x")[0] == 404
    finally:
        assert proxy.stop() == 0
        agent.put("/v1/agent/service/deregister/wk")


_OK = {"Path": "/h", "LocalPathPort": 1, "ListenerPort": 2}
_RANGE = "must be an integer 1-65535"
BAD = [
    ({**_OK, "Path": "health"}, ".Paths[0].Path: must start with '/'"),
    ({**_OK, "LocalPathPort": 0}, f".Paths[0].LocalPathPort: {_RANGE}"),
    ({**_OK, "ListenerPort": 70000}, f".Paths[0].ListenerPort: {_RANGE}"),
    ({**_OK, "Protocol": "grpc"}, '.Paths[0].Protocol: must be "http" or "http2"'),
    ({**_OK, "Bogus": 1}, ".Paths[0].Bogus: unknown field"),
]


@pytest.mark.parametrize(("path", "said"), BAD)
def test_bad_path_is_400_naming_the_field(site: Site, path: dict[str, Any], said: str) -> None:
    status, text = put_status(site.agent, "/v1/agent/service/register",
                              body(site, "bad", 21990, [path]))  # fmt: skip
    assert status == 400
    assert text.startswith(f"Connect.SidecarService.Proxy.Expose{said}"), text


def test_port_clashes_are_400(site: Site) -> None:
    agent = site.agent
    ok = {"Path": "/a", "LocalPathPort": 1}
    twice = body(site, "bad", 21990, [{**ok, "ListenerPort": 21600}, {**ok, "ListenerPort": 21600}])
    status, text = put_status(agent, "/v1/agent/service/register", twice)
    assert (status, text.split(":")[0]) == (
        400,
        "Connect.SidecarService.Proxy.Expose.Paths[1].ListenerPort",
    )
    own = body(site, "bad", 21990, [{**ok, "ListenerPort": 21990}])
    status, text = put_status(agent, "/v1/agent/service/register", own)
    assert status == 400 and "the proxy's own port" in text, text
    upstream = body(site, "bad", 21990, [{**ok, "ListenerPort": 9191}])
    upstream["Connect"]["SidecarService"]["Proxy"]["Upstreams"] = [
        {"DestinationName": "db", "LocalBindPort": 9191}]  # fmt: skip
    status, text = put_status(agent, "/v1/agent/service/register", upstream)
    assert status == 400 and "upstream 'db'" in text, text
    direct = {
        "Name": "p",
        "Kind": "connect-proxy",
        "Port": 21991,
        "Proxy": {
            "DestinationServiceName": "x",
            "Expose": {"Paths": [{**ok, "ListenerPort": 21991}]},
        },
    }
    status, text = put_status(agent, "/v1/agent/service/register", direct)
    assert (status, text.split(":")[0]) == (400, "Proxy.Expose.Paths[0].ListenerPort"), text
    metrics = body(site, "bad", 21990, [{**ok, "ListenerPort": 9102}])
    options = metrics["Connect"]["SidecarService"]["Proxy"]["Config"] = {
        "envoy_prometheus_bind_addr": "0.0.0.0:9102"  # (every address: the sidecar's too)
    }
    status, text = put_status(agent, "/v1/agent/service/register", metrics)
    assert status == 400, text
    assert text.startswith("Connect.SidecarService.Proxy.Expose.Paths[0].ListenerPort: 9102 is "
                           "the metrics listener's port"), text  # fmt: skip
    options["envoy_prometheus_bind_addr"] = "127.0.0.1:9102"  # another address: no clash
    assert put_status(agent, "/v1/agent/service/register", metrics)[0] == 200
    agent.put("/v1/agent/service/deregister/bad")
    gateway = {
        "Name": "g",
        "Kind": "mesh-gateway",
        "Port": 21992,
        "Proxy": {"Expose": {"Checks": True}},
    }
    assert put_status(agent, "/v1/agent/service/register", gateway)[0] == 400


def test_sidecar_without_expose_imports_none_of_it() -> None:
    """RSS: a sidecar that exposes nothing never imports the expose modules."""
    code = (
        "import sys\n"
        "from gossamer.proxy import runtime, node\n"
        "from gossamer.proxy.config_registration import config_from_registration\n"
        "body = {'Kind': 'connect-proxy', 'Port': 21000, 'Proxy': {'DestinationServiceName': 'web',"
        " 'LocalServicePort': 80, 'Expose': {}}}\n"
        "config_from_registration(body, 'web-sidecar-proxy')\n"
        "print(sorted(m for m in sys.modules if 'expose' in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={"GOSSAMER_NATIVE": "0", "PATH": "/usr/bin"})  # fmt: skip
    assert out.stdout.strip() == "[]"
